"""The store seam: the few etcd operations the cluster uses, as a protocol.

:class:`broker.cluster.etcd.EtcdStore` implements it over etcd (``aetcd``);
:class:`broker.cluster.fake.MemoryStore` in memory, only for unit tests of the
controller's decisions. Keys and values are ``str`` and ``bytes``; revisions are
etcd's (every write bumps the store's revision; a key remembers the revision that
created it and the one that last modified it).

Writes that must not race are one transaction: every :class:`Compare` must hold,
then every operation is applied atomically, else nothing is. A controller guards
each write with ``Compare(keys.controller, create_revision=its epoch)``, so a
controller that lost its lease can no longer write.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol


class StoreUnavailable(Exception):
    """etcd could not be reached (or answered with an error) within the timeout."""


class LeaseExpired(Exception):
    """The session lease is gone: the keys bound to it were deleted by etcd."""


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    lease: int = 0  # 0: not bound to a lease


@dataclass(frozen=True, slots=True)
class Compare:
    """One condition of a transaction. Exactly one of the fields is set:

    - ``absent=True``: the key does not exist;
    - ``mod_revision=R``: the key exists and was last modified at R;
    - ``create_revision=R``: the key exists and was created at R.
    """

    key: str
    absent: bool = False
    mod_revision: int | None = None
    create_revision: int | None = None


@dataclass(frozen=True, slots=True)
class Put:
    key: str
    value: bytes
    lease: int = 0  # 0: not bound to a lease


@dataclass(frozen=True, slots=True)
class Delete:
    key: str
    prefix: bool = False  # delete every key under ``key``


Op = Put | Delete


@dataclass(frozen=True, slots=True)
class Event:
    """One change seen by a watch: ``value`` is None for a deletion."""

    key: str
    value: bytes | None
    create_revision: int
    mod_revision: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every key under a prefix at one revision (a watch resumes after it)."""

    items: tuple[KeyValue, ...]
    revision: int


class Store(Protocol):
    """What the cluster needs of etcd."""

    async def get(self, key: str) -> KeyValue | None: ...

    async def get_prefix(self, prefix: str) -> Snapshot: ...

    async def txn(
        self, compares: Sequence[Compare], ops: Sequence[Op]
    ) -> tuple[bool, int]:
        """Apply ``ops`` atomically if every compare holds: (succeeded, revision)."""
        ...

    async def put(self, key: str, value: bytes, *, lease: int = 0) -> int:
        """Unconditional put; the new revision."""
        ...

    async def delete(self, key: str, *, prefix: bool = False) -> int: ...

    async def grant_lease(self, ttl_s: int) -> int:
        """A new lease's id."""
        ...

    async def keep_alive(self, lease: int) -> int:
        """Refresh a lease once; its remaining TTL in seconds.

        Raises:
            LeaseExpired: the lease has expired (or was revoked).
        """
        ...

    async def revoke_lease(self, lease: int) -> None: ...

    def watch_prefix(self, prefix: str, start_revision: int) -> AsyncIterator[Event]:
        """Every change under ``prefix`` from ``start_revision`` on, in revision
        order, until cancelled; reconnects and resumes by itself after an etcd
        outage (raises :class:`StoreUnavailable` only when history was compacted
        past ``start_revision``: the caller re-reads with :meth:`get_prefix`)."""
        ...

    async def close(self) -> None: ...
