"""The cluster's ACLs: kept in etcd, applied by every broker through its watch.

:class:`ClusterAcls` is the :class:`~broker.security.acl_store.AclStore` of a broker
in cluster mode. Reads come from the watched cache (no request waits for etcd), so
an ACL created through any broker is enforced by every broker once its watch has
seen it (usually milliseconds). A write changes one resource pattern's key
(:mod:`broker.cluster.acl_records`, Kafka's ZooKeeper layout) with a
compare-and-set on its revision, retried when another broker wrote the key
meanwhile, then waits until this broker's cache has seen the write, so the
broker that answered CreateAcls already enforces the ACL.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import anyio
import structlog

from broker.cluster.acl_records import decode_acls, encode_acls, key_parts
from broker.cluster.cache import MetadataCache
from broker.cluster.keys import Keys
from broker.cluster.store import (
    Compare,
    Delete,
    LeaseExpired,
    Put,
    Store,
    StoreUnavailable,
)
from broker.security.acl_binding import AclBinding, AclFilter
from broker.security.acl_store import AclStoreError

log = structlog.get_logger("broker.cluster.acls")

CAS_ATTEMPTS = 20  # compare-and-set rounds before giving up on a contended key

Change = Callable[[tuple[AclBinding, ...]], tuple[AclBinding, ...]]


class ClusterAcls:
    """ACLs in etcd under ``PREFIX/acls/``, read from the watched cache."""

    def __init__(
        self, store: Store, keys: Keys, cache: MetadataCache, *, timeout_s: float
    ) -> None:
        self._store = store
        self._keys = keys
        self._cache = cache
        self._timeout_s = timeout_s

    @property
    def version(self) -> int:
        return self._cache.acl_version

    def bindings(self) -> Sequence[AclBinding]:
        return self._cache.memo("acl_bindings", self._cache.acl_bindings)

    async def create(self, bindings: Sequence[AclBinding]) -> None:
        by_key: dict[tuple[str, str, str], list[AclBinding]] = {}
        for b in dict.fromkeys(bindings):
            by_key.setdefault(key_parts(b), []).append(b)

        def adder(new: list[AclBinding]) -> Change:
            return lambda current: current + tuple(b for b in new if b not in current)

        await self._write({k: adder(v) for k, v in by_key.items()})
        log.info("acls_created", count=len(bindings))

    async def delete(self, filters: Sequence[AclFilter]) -> list[list[AclBinding]]:
        current = self.bindings()
        matched = [[b for b in current if f.matches(b)] for f in filters]
        by_key: dict[tuple[str, str, str], set[AclBinding]] = {}
        for b in {b for m in matched for b in m}:
            by_key.setdefault(key_parts(b), set()).add(b)

        def remover(gone: set[AclBinding]) -> Change:
            return lambda current: tuple(b for b in current if b not in gone)

        if by_key:
            await self._write({k: remover(v) for k, v in by_key.items()})
            log.info("acls_deleted", count=sum(len(v) for v in by_key.values()))
        return matched

    async def _write(self, changes: dict[tuple[str, str, str], Change]) -> None:
        """Apply each key's change by compare-and-set, then wait for the cache."""
        revision = 0
        with anyio.move_on_after(self._timeout_s) as scope:
            try:
                for parts, change in changes.items():
                    revision = max(revision, await self._update(parts, change))
            except (StoreUnavailable, LeaseExpired) as e:
                raise AclStoreError(f"etcd: {e}") from e
            seen = self._cache.version
            while self._cache.revision < revision:
                seen = await self._cache.wait_changed(seen)
        if scope.cancelled_caught:
            raise AclStoreError(
                f"the ACLs were not stored and seen within {self._timeout_s:g} s"
            )

    async def _update(self, parts: tuple[str, str, str], change: Change) -> int:
        """One key's read-modify-write; the revision written (0: nothing to do)."""
        key = self._keys.acl(*parts)
        for _ in range(CAS_ATTEMPTS):
            kv = await self._store.get(key)
            current = () if kv is None else decode_acls(*parts, kv.value)
            new = change(current)
            if new == current:
                return 0
            compare = (
                Compare(key, absent=True)
                if kv is None
                else Compare(key, mod_revision=kv.mod_revision)
            )
            op = Put(key, encode_acls(new)) if new else Delete(key)
            ok, revision = await self._store.txn([compare], [op])
            if ok:
                return revision
        raise AclStoreError(f"{key} kept changing: try again")
