"""Replicas on this broker: acting on the cluster's partition state.

Opens and closes the local logs of the partitions this broker hosts as the watched
state changes, and copies a partition's log from its leader with Kafka's own Fetch
(the replica fetcher).
"""
