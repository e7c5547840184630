"""The watched cache: everything under the cluster prefix that brokers act on, in
memory, kept current by one etcd watch (:class:`broker.cluster.service.ClusterService`).

Handlers read it on every request (Metadata, Produce's leader check, FindCoordinator)
and never wait for etcd. ``version`` grows with every applied change and
:meth:`MetadataCache.wait_changed` wakes whoever acts on changes (the replica
manager opening and closing local logs). :meth:`MetadataCache.memo` keeps what a
handler derives from the cache (Metadata's topic entries) until the next change, so
a full Metadata of a thousand partitions is not rebuilt on every request. A value
that does not decode is logged once and skipped: a bad key never crashes a broker.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar, cast
from urllib.parse import unquote

import anyio
import structlog

from broker.cluster.acl_records import decode_acls
from broker.cluster.keys import Keys
from broker.cluster.model import (
    NO_LEADER,
    BadRecord,
    BrokerInfo,
    ControllerInfo,
    PartitionRecord,
    TopicRecord,
    decode_configs,
)
from broker.cluster.scram_records import decode_user_config, scram_of
from broker.cluster.store import Event, KeyValue, Snapshot
from broker.cluster.view import OFFSETS_TOPIC, TRANSACTION_TOPIC, offsets_partition
from broker.security.acl_binding import AclBinding
from broker.security.credentials import ScramCredential

log = structlog.get_logger("broker.cluster.cache")

MEMO_MAX = 1024  # values kept per version of the cache

T = TypeVar("T")


class MetadataCache:
    """The cluster as last seen: brokers, controller, topics, partition states."""

    def __init__(self, keys: Keys, node_id: int, cluster_id: str) -> None:
        self.keys = keys
        self._node_id = node_id
        self._cluster_id = cluster_id
        self._brokers: dict[int, BrokerInfo] = {}
        self._controller: ControllerInfo | None = None
        self._topics: dict[str, TopicRecord] = {}
        self._partitions: dict[tuple[str, int], PartitionRecord] = {}
        # dynamic broker configs by scope (a node id or "<default>")
        self._broker_configs: dict[str, dict[str, str]] = {}
        # (pattern, type, quoted name) -> that resource pattern's ACLs
        self._acls: dict[tuple[str, str, str], tuple[AclBinding, ...]] = {}
        self.acl_version = 0  # grows with every change of the ACLs
        # user name -> its SCRAM credentials by mechanism (users with at least one)
        self._scram: dict[str, dict[str, ScramCredential]] = {}
        self.revision = 0  # the etcd revision the cache reflects
        self.version = 0  # grows with every applied change
        self._changed = anyio.Event()
        self._memo: dict[Hashable, object] = {}  # derived values of ``_memo_version``
        self._memo_version = 0
        # called when a group needs a coordinator and the offsets topic does not
        # exist yet (the cluster service then asks the controller to create it)
        self.on_offsets_topic_missing: Callable[[], None] | None = None
        # the same for a transactional id and the transaction state topic
        self.on_txn_topic_missing: Callable[[], None] | None = None

    # -- ClusterView ------------------------------------------------------------

    @property
    def clustered(self) -> bool:
        return True

    @property
    def node_id(self) -> int:
        return self._node_id

    @property
    def cluster_id(self) -> str:
        return self._cluster_id

    @cluster_id.setter
    def cluster_id(self, value: str) -> None:
        self._cluster_id = value

    @property
    def controller_id(self) -> int:
        return NO_LEADER if self._controller is None else self._controller.node_id

    @property
    def controller(self) -> ControllerInfo | None:
        return self._controller

    def brokers(self) -> Sequence[BrokerInfo]:
        return [self._brokers[i] for i in sorted(self._brokers)]

    def broker(self, node_id: int) -> BrokerInfo | None:
        return self._brokers.get(node_id)

    def group_coordinator(self, group_id: str) -> int:
        offsets = self._topics.get(OFFSETS_TOPIC)
        if offsets is None or offsets.partitions <= 0:
            if offsets is None and self.on_offsets_topic_missing is not None:
                self.on_offsets_topic_missing()
            return NO_LEADER
        p = self._partitions.get(
            (OFFSETS_TOPIC, offsets_partition(group_id, offsets.partitions))
        )
        if p is None or p.leader not in self._brokers:
            return NO_LEADER
        return p.leader

    def txn_coordinator(self, transactional_id: str) -> int:
        txns = self._topics.get(TRANSACTION_TOPIC)
        if txns is None or txns.partitions <= 0:
            if txns is None and self.on_txn_topic_missing is not None:
                self.on_txn_topic_missing()
            return NO_LEADER
        p = self._partitions.get(
            (TRANSACTION_TOPIC, offsets_partition(transactional_id, txns.partitions))
        )
        if p is None or p.leader not in self._brokers:
            return NO_LEADER
        return p.leader

    # -- topics and partitions ---------------------------------------------------

    def topics(self) -> Sequence[TopicRecord]:
        return [self._topics[n] for n in sorted(self._topics)]

    def topic(self, name: str) -> TopicRecord | None:
        return self._topics.get(name)

    def partition(self, topic: str, index: int) -> PartitionRecord | None:
        return self._partitions.get((topic, index))

    def partitions_of(self, topic: str) -> list[tuple[int, PartitionRecord]]:
        """Every known partition of ``topic``, by index."""
        return sorted((i, p) for (t, i), p in self._partitions.items() if t == topic)

    def broker_configs(self, scope: str) -> dict[str, str]:
        """The dynamic broker configs of ``scope`` (a node id or ``<default>``)."""
        return dict(self._broker_configs.get(scope, {}))

    def broker_config_scopes(self) -> dict[str, dict[str, str]]:
        """Every scope with dynamic broker configs, and its configs."""
        return {k: dict(v) for k, v in self._broker_configs.items()}

    def acl_bindings(self) -> list[AclBinding]:
        """Every ACL of the cluster (:mod:`broker.cluster.acls`)."""
        return [b for k in sorted(self._acls) for b in self._acls[k]]

    def scram_credentials(self, user: str) -> dict[str, ScramCredential] | None:
        """The user's SCRAM credentials by mechanism; None when the cluster has
        none for it (:mod:`broker.cluster.scram`)."""
        return self._scram.get(user)

    def scram_users(self) -> dict[str, dict[str, ScramCredential]]:
        """Every user with SCRAM credentials in the cluster."""
        return dict(self._scram)

    def memo(self, key: Hashable, build: Callable[[], T]) -> T:
        """``build()``, computed once per version of the cache: what ``build``
        derives must depend on the cache alone, and ``key`` must say which value
        (and so its type) it is."""
        if self._memo_version != self.version:
            self._memo.clear()
            self._memo_version = self.version
        try:
            return cast(T, self._memo[key])
        except KeyError:
            value = build()
            if len(self._memo) < MEMO_MAX:  # many distinct keys: build each time
                self._memo[key] = value
            return value

    # -- applying what the watch sees --------------------------------------------

    def load(self, snapshot: Snapshot) -> None:
        """Replace everything with a full read of the prefix."""
        self._brokers.clear()
        self._controller = None
        self._topics.clear()
        self._partitions.clear()
        self._broker_configs.clear()
        self._acls.clear()
        self.acl_version += 1
        self._scram.clear()
        for kv in snapshot.items:
            self._apply(kv.key, kv.value, kv.create_revision)
        self.revision = snapshot.revision
        self._bump()

    def apply(self, events: Sequence[Event]) -> None:
        """Apply a batch of watched changes (one notification for the batch)."""
        for e in events:
            self._apply(e.key, e.value, e.create_revision)
            self.revision = max(self.revision, e.mod_revision)
        if events:
            self._bump()

    async def wait_changed(self, seen: int) -> int:
        """Wait until ``version`` is past ``seen``; the new version."""
        while self.version <= seen:
            await self._changed.wait()
        return self.version

    def _bump(self) -> None:
        self.version += 1
        self._changed.set()
        self._changed = anyio.Event()

    def _apply(self, key: str, value: bytes | None, create_revision: int) -> None:
        parts = self.keys.relative(key)
        try:
            match parts:
                case ["cluster_id"]:
                    if value is not None:
                        self._cluster_id = value.decode()
                case ["brokers", node]:
                    if value is None:
                        self._brokers.pop(int(node), None)
                    else:
                        info = BrokerInfo.decode(value)
                        self._brokers[info.node_id] = info
                case ["controller"]:
                    self._controller = (
                        None
                        if value is None
                        else ControllerInfo.decode(
                            value, create_revision=create_revision
                        )
                    )
                case ["topics", name]:
                    if value is None:
                        self._topics.pop(name, None)
                    else:
                        self._topics[name] = TopicRecord.decode(value)
                case ["config", "brokers", scope]:
                    if value is None:
                        self._broker_configs.pop(scope, None)
                    else:
                        self._broker_configs[scope] = decode_configs(value)
                case ["config", "users", name]:
                    # dropped first: a damaged value authenticates nobody
                    user = unquote(name)
                    self._scram.pop(user, None)
                    if value is not None:
                        creds = scram_of(decode_user_config(value))
                        if creds:
                            self._scram[user] = creds
                case ["partitions", name, index]:
                    if value is None:
                        self._partitions.pop((name, int(index)), None)
                    else:
                        self._partitions[(name, int(index))] = PartitionRecord.decode(
                            value
                        )
                case ["acls", pattern, rtype, name]:
                    self.acl_version += 1
                    if value is None:
                        self._acls.pop((pattern, rtype, name), None)
                    else:
                        self._acls[(pattern, rtype, name)] = decode_acls(
                            pattern, rtype, unquote(name), value
                        )
                case _:
                    pass  # admin requests and keys of later versions
        except (BadRecord, ValueError, UnicodeDecodeError) as e:
            log.warning("cluster_key_invalid", key=key, error=str(e))


def items_as_events(items: Sequence[KeyValue]) -> list[Event]:
    """Read key-values as the events that would have created them."""
    return [
        Event(
            key=kv.key,
            value=kv.value,
            create_revision=kv.create_revision,
            mod_revision=kv.mod_revision,
        )
        for kv in items
    ]
