"""The broker's read-only view of the cluster, served from memory.

Handlers and the topic service ask a :class:`ClusterView` who the brokers are, who
the controller is and who leads a partition; they never call etcd on a request's
path. In cluster mode the view is the cache a watch keeps current
(:mod:`broker.cluster.cache`); on a single node it is this broker alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from broker.cluster.model import BrokerInfo, PartitionRecord, TopicRecord

OFFSETS_TOPIC = "__consumer_offsets"


def java_string_hash(s: str) -> int:
    """Java's ``String.hashCode`` (UTF-16 code units), as Kafka hashes group ids."""
    h = 0
    data = s.encode("utf-16-be")
    for i in range(0, len(data), 2):
        h = (31 * h + ((data[i] << 8) | data[i + 1])) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def offsets_partition(group_id: str, partitions: int) -> int:
    """The offsets-topic partition that owns a group (Kafka's
    ``Utils.abs(groupId.hashCode) % groupMetadataTopicPartitionCount``)."""
    h = java_string_hash(group_id)
    return (h & 0x7FFFFFFF) % partitions


class ClusterView(Protocol):
    """Who is in the cluster and who leads what, as this broker currently knows it."""

    @property
    def node_id(self) -> int: ...

    @property
    def cluster_id(self) -> str: ...

    @property
    def controller_id(self) -> int:
        """The controller's node id, or -1 while there is none."""
        ...

    def brokers(self) -> Sequence[BrokerInfo]:
        """The live brokers, by node id."""
        ...

    def broker(self, node_id: int) -> BrokerInfo | None: ...

    def topics(self) -> Sequence[TopicRecord]: ...

    def topic(self, name: str) -> TopicRecord | None: ...

    def partition(self, topic: str, index: int) -> PartitionRecord | None: ...
