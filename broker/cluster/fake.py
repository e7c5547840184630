"""``MemoryStore``: the :class:`broker.cluster.store.Store` protocol in memory, with
etcd's semantics, for unit tests of the controller's decisions (nothing else uses
it; every integration test runs real etcd).

What it keeps of etcd: one global revision that every write bumps once (a
transaction is one revision however many keys it touches; a write that changes
nothing does not bump it); each key's create and mod revisions; transactions whose
compares (absent, mod_revision, create_revision) all hold or nothing is applied;
leases whose keys vanish when they expire, on a manual clock (:meth:`advance`,
:meth:`expire`); watches from a revision that deliver every later change in order
(:meth:`compact` makes an older start revision fail as etcd's does). Tests can
also cut the store off (:attr:`unavailable`): every call then raises
:class:`~broker.cluster.store.StoreUnavailable`.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio

from broker.cluster.store import (
    Compare,
    Delete,
    Event,
    KeyValue,
    LeaseExpired,
    Op,
    Put,
    Snapshot,
    Store,
    StoreUnavailable,
)


@dataclass(slots=True)
class _Lease:
    ttl_s: int
    deadline: float
    keys: set[str] = field(default_factory=set)


class MemoryStore:
    """An in-memory etcd (one member, no auth) for controller unit tests."""

    def __init__(self) -> None:
        self.revision = 1  # an empty etcd is at revision 1
        self.now = 0.0  # the lease clock, in seconds; moved by advance()
        self.unavailable = False
        self.compacted = 0  # watches must start after this revision
        self._kv: dict[str, KeyValue] = {}
        self._history: list[Event] = []
        self._dropped = 0  # events compacted away from the front of the history
        self.max_txn_ops = 128  # etcd's --max-txn-ops default
        self._leases: dict[int, _Lease] = {}
        self._lease_ids = itertools.count(0x1000)
        self._changed: anyio.Event | None = None
        self.writes = 0  # successful write transactions (for tests)

    # -- helpers ----------------------------------------------------------------

    def _check(self) -> None:
        if self.unavailable:
            raise StoreUnavailable("memory store cut off")

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    def _holds(self, c: Compare) -> bool:
        kv = self._kv.get(c.key)
        if c.absent:
            return kv is None
        if c.mod_revision is not None:
            return kv is not None and kv.mod_revision == c.mod_revision
        if c.create_revision is not None:
            return kv is not None and kv.create_revision == c.create_revision
        raise ValueError(f"a compare with no condition: {c!r}")

    def _apply(self, ops: Sequence[Op]) -> int:
        """Apply ``ops`` at the next revision (if any changes anything)."""
        rev = self.revision + 1
        events: list[Event] = []
        for op in ops:
            if isinstance(op, Put):
                if op.lease and op.lease not in self._leases:
                    raise LeaseExpired(f"lease {op.lease:x} not found")
                old = self._kv.get(op.key)
                if old is not None and old.lease and old.lease in self._leases:
                    self._leases[old.lease].keys.discard(op.key)
                created = old.create_revision if old is not None else rev
                kv = KeyValue(op.key, op.value, created, rev, op.lease)
                self._kv[op.key] = kv
                if op.lease:
                    self._leases[op.lease].keys.add(op.key)
                events.append(Event(op.key, op.value, created, rev))
            else:
                doomed = (
                    [k for k in self._kv if k.startswith(op.key)]
                    if op.prefix
                    else [op.key]
                    if op.key in self._kv
                    else []
                )
                for k in sorted(doomed):
                    events.extend(self._remove(k, rev))
        if events:
            self.revision = rev
            self._history.extend(events)
            self.writes += 1
            self._notify()
        return self.revision

    def _remove(self, key: str, rev: int) -> list[Event]:
        old = self._kv.pop(key)
        if old.lease and old.lease in self._leases:
            self._leases[old.lease].keys.discard(key)
        return [Event(key, None, 0, rev)]

    def _validate_ops(self, ops: Sequence[Op]) -> None:
        """Refuse what etcd refuses: too many operations, a key written twice,
        a put under a lease that is gone."""
        if len(ops) > self.max_txn_ops:
            raise ValueError(f"too many operations in txn request ({len(ops)})")
        puts = [op.key for op in ops if isinstance(op, Put)]
        if len(set(puts)) != len(puts):
            raise ValueError("duplicate key given in txn request")
        for op in ops:
            if isinstance(op, Delete) and any(
                k.startswith(op.key) if op.prefix else k == op.key for k in puts
            ):
                raise ValueError("duplicate key given in txn request")
        for op in ops:
            if isinstance(op, Put) and op.lease and op.lease not in self._leases:
                raise LeaseExpired(f"lease {op.lease:x} not found")

    # -- Store ------------------------------------------------------------------

    async def get(self, key: str) -> KeyValue | None:
        self._check()
        return self._kv.get(key)

    async def get_prefix(self, prefix: str) -> Snapshot:
        self._check()
        items = tuple(kv for k, kv in sorted(self._kv.items()) if k.startswith(prefix))
        return Snapshot(items, self.revision)

    async def txn(
        self, compares: Sequence[Compare], ops: Sequence[Op]
    ) -> tuple[bool, int]:
        self._check()
        if len(compares) > self.max_txn_ops:
            raise ValueError(f"too many compares in txn request ({len(compares)})")
        self._validate_ops(ops)
        if not all(self._holds(c) for c in compares):
            return False, self.revision
        return True, self._apply(ops)

    async def put(self, key: str, value: bytes, *, lease: int = 0) -> int:
        self._check()
        self._validate_ops([Put(key, value, lease)])
        return self._apply([Put(key, value, lease)])

    async def delete(self, key: str, *, prefix: bool = False) -> int:
        self._check()
        return self._apply([Delete(key, prefix)])

    async def grant_lease(self, ttl_s: int) -> int:
        self._check()
        lease = next(self._lease_ids)
        self._leases[lease] = _Lease(ttl_s, self.now + ttl_s)
        return lease

    async def keep_alive(self, lease: int) -> int:
        self._check()
        held = self._leases.get(lease)
        if held is None:
            raise LeaseExpired(f"lease {lease:x} expired")
        held.deadline = self.now + held.ttl_s
        return held.ttl_s

    async def revoke_lease(self, lease: int) -> None:
        self._check()
        self.expire(lease)

    async def watch_prefix(
        self, prefix: str, start_revision: int
    ) -> AsyncIterator[Event]:
        self._check()
        if start_revision <= self.compacted:
            raise StoreUnavailable(
                f"required revision {start_revision} has been compacted "
                f"(compacted at {self.compacted})"
            )
        i = self._dropped  # an absolute position in the history (revision order)
        while True:
            if i < self._dropped:
                raise StoreUnavailable("the watch fell behind a compaction")
            while i - self._dropped < len(self._history):
                ev = self._history[i - self._dropped]
                i += 1
                if ev.mod_revision >= start_revision and ev.key.startswith(prefix):
                    yield ev
            if self._changed is None:
                self._changed = anyio.Event()
            await self._changed.wait()

    async def close(self) -> None:
        pass

    # -- test controls ----------------------------------------------------------

    def expire(self, lease: int) -> None:
        """End a lease now: its keys are deleted in one revision (as etcd does)."""
        held = self._leases.pop(lease, None)
        if held is None or not held.keys:
            return
        self._apply([Delete(k) for k in sorted(held.keys)])

    def advance(self, seconds: float) -> None:
        """Move the lease clock: every lease not kept alive within its TTL expires."""
        self.now += seconds
        for lease, held in sorted(self._leases.items()):
            if held.deadline <= self.now:
                self.expire(lease)

    def compact(self, revision: int) -> None:
        """Forget history up to ``revision`` (a watch from at or before it fails)."""
        self.compacted = max(self.compacted, min(revision, self.revision))
        keep = [e for e in self._history if e.mod_revision > self.compacted]
        self._dropped += len(self._history) - len(keep)
        self._history = keep

    def lease_of(self, key: str) -> int:
        """The lease a key is bound to (0: none); -1 when the key is absent."""
        kv = self._kv.get(key)
        return -1 if kv is None else kv.lease


if TYPE_CHECKING:
    _conforms: Store = MemoryStore()  # mypy checks the protocol is met
