"""The cluster's SCRAM credentials: kept in etcd, read by every broker from its watch.

:class:`ClusterCredentials` is the
:class:`~broker.security.credential_store.CredentialStore` of a broker in cluster
mode, as Kafka kept SCRAM credentials in ZooKeeper (``/config/users/{name}``).
SASL reads come from the watched cache (no login waits for etcd), so a credential
made through any broker authenticates on every broker once its watch has seen it
(usually milliseconds). A write changes one user's key
(:mod:`broker.cluster.scram_records`) with a compare-and-set on its revision,
retried when another broker wrote the key meanwhile, then waits until this
broker's cache has seen the write, so the broker that answered already
authenticates with the new credential and describes it.

The broker's own users file (``<data-dir>/security/users.json``, what ``ailurus
user`` manages) stays a local fallback: a user the cluster has no SCRAM
credential for is looked up there, so a super user can be made on each data dir
before the cluster has any. A user with credentials in the cluster is
authenticated by those alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import anyio
import structlog

from broker.cluster.cache import MetadataCache
from broker.cluster.keys import Keys
from broker.cluster.scram_records import (
    decode_user_config,
    encode_user_config,
    scram_of,
    with_scram,
)
from broker.cluster.store import (
    Compare,
    Delete,
    LeaseExpired,
    Put,
    Store,
    StoreUnavailable,
)
from broker.security.credential_store import CredentialStoreError, check_password
from broker.security.credentials import (
    ScramCredential,
    UserStore,
    make_credential,
)

log = structlog.get_logger("broker.cluster.scram")

CAS_ATTEMPTS = 20  # compare-and-set rounds before giving up on a contended key

Credentials = dict[str, ScramCredential]
# A user's new credentials from its current ones; None: leave the key as it is.
Change = Callable[[Credentials], Credentials | None]


class ClusterCredentials:
    """SCRAM credentials in etcd under ``PREFIX/config/users/``, read from the
    watched cache, with the broker's users file as a fallback."""

    def __init__(
        self,
        store: Store,
        keys: Keys,
        cache: MetadataCache,
        *,
        local: UserStore,
        timeout_s: float,
    ) -> None:
        self._store = store
        self._keys = keys
        self._cache = cache
        self._local = local
        self._timeout_s = timeout_s

    def scram_credential(self, user: str, mechanism: str) -> ScramCredential | None:
        cluster = self._cache.scram_credentials(user)
        if cluster is None:
            return self._local.scram_credential(user, mechanism)
        return cluster.get(mechanism)

    def scram_users(self) -> dict[str, Mapping[str, ScramCredential]]:
        return dict(self._cache.scram_users())

    def user_names(self) -> list[str]:
        return sorted(self._cache.scram_users())

    async def alter_scram(
        self,
        upsertions: Iterable[tuple[str, ScramCredential]],
        deletions: Iterable[tuple[str, str]],
    ) -> set[tuple[str, str]]:
        ups: dict[str, list[ScramCredential]] = {}
        for user, cred in upsertions:
            ups.setdefault(user, []).append(cred)
        gone: dict[str, list[str]] = {}
        for user, mechanism in deletions:
            gone.setdefault(user, []).append(mechanism)
        missing: set[tuple[str, str]] = set()

        def change(user: str) -> Change:
            def apply(current: Credentials) -> Credentials | None:
                absent = {(user, m) for m in gone.get(user, ()) if m not in current}
                missing.difference_update((user, m) for m in gone.get(user, ()))
                if absent:  # the user's alterations fail together
                    missing.update(absent)
                    return None
                new = {m: c for m, c in current.items() if m not in gone.get(user, ())}
                new.update((c.mechanism, c) for c in ups.get(user, ()))
                return new

            return apply

        users = list(dict.fromkeys([*gone, *ups]))
        await self._write({u: change(u) for u in users})
        failed = {u for u, _ in missing}
        log.info("scram_credentials_stored", users=len(set(users) - failed))
        return missing

    async def set_password(
        self, name: str, password: str, mechanism: str, *, create: bool
    ) -> bool:
        check_password(name, password, mechanism)
        credential = await anyio.to_thread.run_sync(
            lambda: make_credential(mechanism, password)
        )
        existed = False

        def replace(current: Credentials) -> Credentials | None:
            nonlocal existed
            existed = bool(current)
            if create and current:
                return None
            return {mechanism: credential}

        await self._write({name: replace})
        return not (create and existed)

    async def delete_user(self, name: str) -> bool:
        existed = False

        def remove(current: Credentials) -> Credentials | None:
            nonlocal existed
            existed = bool(current)
            return {} if current else None

        await self._write({name: remove})
        return existed

    async def _write(self, changes: dict[str, Change]) -> None:
        """Apply each user's change by compare-and-set, then wait for the cache."""
        revision = 0
        with anyio.move_on_after(self._timeout_s) as scope:
            try:
                for user, change in changes.items():
                    revision = max(revision, await self._update(user, change))
            except (StoreUnavailable, LeaseExpired) as e:
                raise CredentialStoreError(f"etcd: {e}") from e
            seen = self._cache.version
            while self._cache.revision < revision:
                seen = await self._cache.wait_changed(seen)
        if scope.cancelled_caught:
            raise CredentialStoreError(
                f"the credentials were not stored and seen within {self._timeout_s:g} s"
            )

    async def _update(self, user: str, change: Change) -> int:
        """One user's read-modify-write; the revision written (0: nothing to do)."""
        key = self._keys.user(user)
        for _ in range(CAS_ATTEMPTS):
            kv = await self._store.get(key)
            config = {} if kv is None else _config(key, kv.value)
            current = scram_of(config)
            new = change(current)
            if new is None or new == current:
                return 0
            config = with_scram(config, new)
            compare = (
                Compare(key, absent=True)
                if kv is None
                else Compare(key, mod_revision=kv.mod_revision)
            )
            op = Put(key, encode_user_config(config)) if config else Delete(key)
            ok, revision = await self._store.txn([compare], [op])
            if ok:
                return revision
        raise CredentialStoreError(f"{key} kept changing: try again")


def _config(key: str, value: bytes) -> dict[str, str]:
    """A stored user's configs; a damaged value counts as none (it is replaced)."""
    try:
        config = decode_user_config(value)
        scram_of(config)
    except ValueError as e:
        log.warning("cluster_key_invalid", key=key, error=str(e))
        return {}
    return config
