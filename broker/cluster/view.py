"""The broker's read-only view of the cluster, served from memory.

Handlers and the topic service ask a :class:`ClusterView` who the brokers are, who
the controller is and who leads a partition; they never call etcd on a request's
path. In cluster mode the view is the cache a watch keeps current
(:mod:`broker.cluster.cache`); on a single node it is this broker alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from broker.cluster.model import BrokerInfo, Endpoint

OFFSETS_TOPIC = "__consumer_offsets"
TRANSACTION_TOPIC = "__transaction_state"
# Kafka's internal topics: Metadata marks them is_internal (clients hide them)
INTERNAL_TOPICS = frozenset({OFFSETS_TOPIC, TRANSACTION_TOPIC})


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
    """Who is in the cluster, who controls it and who coordinates a group, as this
    broker currently knows it. Topics and partitions are the topic service's
    (:meth:`broker.topics.service.TopicService.state`), which in cluster mode reads
    them from the same watched cache."""

    @property
    def clustered(self) -> bool:
        """False on a single node (no etcd)."""
        ...

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

    def group_coordinator(self, group_id: str) -> int:
        """The node that coordinates a group (the leader of its offsets-topic
        partition), or -1 while that partition has no leader."""
        ...

    def txn_coordinator(self, transactional_id: str) -> int:
        """The node that coordinates a transactional id (the leader of its
        ``__transaction_state`` partition), or -1 while that has no leader."""
        ...


class LocalView:
    """A single node's view: this broker is the cluster, its controller and every
    group's coordinator. Its endpoints are its bound listeners (``listeners`` is the
    runtime's dict, filled as they bind)."""

    def __init__(
        self,
        node_id: int,
        cluster_id: str,
        listeners: Mapping[str, Endpoint] | Callable[[], Sequence[Endpoint]],
        rack: str | None = None,
    ) -> None:
        self._node_id = node_id
        self._cluster_id = cluster_id
        self._listeners = listeners
        self._rack = rack

    @property
    def clustered(self) -> bool:
        return False

    @property
    def node_id(self) -> int:
        return self._node_id

    @property
    def cluster_id(self) -> str:
        return self._cluster_id

    @property
    def controller_id(self) -> int:
        return self._node_id

    def brokers(self) -> Sequence[BrokerInfo]:
        return (self._me(),)

    def broker(self, node_id: int) -> BrokerInfo | None:
        return self._me() if node_id == self._node_id else None

    def group_coordinator(self, group_id: str) -> int:
        return self._node_id

    def txn_coordinator(self, transactional_id: str) -> int:
        return self._node_id

    def _me(self) -> BrokerInfo:
        src = self._listeners
        endpoints = tuple(src()) if callable(src) else tuple(src.values())
        return BrokerInfo(node_id=self._node_id, endpoints=endpoints, rack=self._rack)
