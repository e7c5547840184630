"""The controller's mirror of everything under the cluster prefix: fed by its
watch and by its own writes, read by its decisions.

A write the controller made is in the mirror before its watch event arrives; that
event (and any older one for the key) is then skipped by revision, and a key the
controller deleted keeps a tombstone until the watch has passed the deletion, so a
late event cannot bring it back.
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog

from broker.cluster.keys import Keys
from broker.cluster.model import BadRecord, BrokerInfo, PartitionRecord, TopicRecord
from broker.cluster.store import Compare, Event, KeyValue, Op, Put, Snapshot

log = structlog.get_logger("broker.cluster.controller")


class Mirror:
    """Every key under the prefix as the controller last saw or wrote it."""

    def __init__(self, keys: Keys) -> None:
        self.keys = keys
        self.kv: dict[str, KeyValue] = {}
        self._tombstones: dict[str, int] = {}  # key -> revision of our delete

    def load(self, snapshot: Snapshot) -> None:
        self.kv = {kv.key: kv for kv in snapshot.items}
        self._tombstones.clear()

    def get(self, key: str) -> KeyValue | None:
        return self.kv.get(key)

    def refreshed(self, key: str, kv: KeyValue | None, revision: int) -> None:
        """A key re-read at ``revision`` (after a failed compare)."""
        if kv is None:
            self.kv.pop(key, None)
            self._tombstones[key] = revision
        else:
            self.kv[key] = kv

    def requests(self) -> list[KeyValue]:
        """The admin requests, oldest change first."""
        return sorted(
            (kv for kv in self.kv.values() if kv.key.startswith(self.keys.admin)),
            key=lambda kv: kv.mod_revision,
        )

    def topic_names(self) -> list[str]:
        return [
            k[len(self.keys.topics) :]
            for k in self.kv
            if k.startswith(self.keys.topics)
        ]

    def observe(self, ev: Event) -> bool:
        """Apply a watched change to the mirror; False when it is one we already
        hold (our own write, or older than it)."""
        cur = self.kv.get(ev.key)
        stale = (cur is not None and cur.mod_revision >= ev.mod_revision) or (
            self._tombstones.get(ev.key, 0) >= ev.mod_revision
        )
        if self._tombstones:
            self._tombstones = {
                k: r for k, r in self._tombstones.items() if r > ev.mod_revision
            }
        if stale:
            return False
        if ev.value is None:
            return self.kv.pop(ev.key, None) is not None
        self.kv[ev.key] = KeyValue(
            ev.key, ev.value, ev.create_revision, ev.mod_revision
        )
        return True

    def wrote(self, ops: Sequence[Op], revision: int) -> None:
        for op in ops:
            if isinstance(op, Put):
                old = self.kv.get(op.key)
                created = old.create_revision if old is not None else revision
                self.kv[op.key] = KeyValue(
                    op.key, op.value, created, revision, op.lease
                )
            else:
                gone = (
                    [k for k in self.kv if k.startswith(op.key)]
                    if op.prefix
                    else [op.key]
                )
                for k in gone:
                    self.kv.pop(k, None)
                    self._tombstones[k] = revision

    def live(self) -> dict[int, str | None]:
        live: dict[int, str | None] = {}
        for kv in self.kv.values():
            if kv.key.startswith(self.keys.brokers):
                try:
                    info = BrokerInfo.decode(kv.value)
                except BadRecord as e:
                    log.warning("bad_record", key=kv.key, error=str(e))
                    continue
                live[info.node_id] = info.rack
        return live

    def fenced(self) -> set[int]:
        """Brokers shutting down (a shutdown request is pending or done)."""
        prefix = self.keys.admin + "shutdown/"
        return {
            int(k[len(prefix) :])
            for k in self.kv
            if k.startswith(prefix) and k[len(prefix) :].isdigit()
        }

    def topic(self, name: str) -> TopicRecord | None:
        kv = self.kv.get(self.keys.topic(name))
        if kv is None:
            return None
        try:
            return TopicRecord.decode(kv.value)
        except BadRecord as e:
            log.warning("bad_record", key=kv.key, error=str(e))
            return None

    def partition(self, topic: str, index: int) -> tuple[PartitionRecord, int] | None:
        kv = self.kv.get(self.keys.partition(topic, index))
        if kv is None:
            return None
        try:
            return PartitionRecord.decode(kv.value), kv.mod_revision
        except BadRecord as e:
            log.warning("bad_record", key=kv.key, error=str(e))
            return None

    def partition_ids(self) -> list[tuple[str, int]]:
        out = []
        for k in self.kv:
            parts = self.keys.relative(k)
            if len(parts) == 3 and parts[0] == "partitions" and parts[2].isdigit():
                out.append((parts[1], int(parts[2])))
        return sorted(out)

    def cas(self, key: str) -> Compare:
        kv = self.kv.get(key)
        return (
            Compare(key, absent=True)
            if kv is None
            else Compare(key, mod_revision=kv.mod_revision)
        )
