"""Cluster mode: several brokers coordinated through etcd.

Kafka's ZooKeeper-era design with etcd in ZooKeeper's place (see docs/cluster.md):
liveness is a lease, the controller is an election, each partition's state is one
key written with compare-and-set, and every broker acts on what it watches. This
package knows nothing of storage: it holds the model (:mod:`.model`), the key layout
(:mod:`.keys`), the store seam (:mod:`.store`, with :mod:`.etcd` over etcd and
:mod:`.fake` in memory for unit tests of the controller), the controller's decisions
and the broker's view of the cluster (:mod:`.view`).
"""
