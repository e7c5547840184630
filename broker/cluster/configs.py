"""Configs in cluster mode: topic overrides in the topic records, dynamic broker
configs under ``config/brokers/``.

Any broker may change them; no controller round trip is needed, because a change
decides nothing by itself (the controller reads a topic's
``unclean.leader.election.enable`` from the record when it elects). A topic's overrides are replaced in its record with a
compare-and-set on the key's mod revision (the controller's own writes of the
record are compare-and-set too, so neither loses the other's change; the edit is
made again to the stored overrides when they moved on); every
broker's replica manager applies the record's configs to its local logs. The
dynamic broker configs of a scope (a node id, or ``<default>`` for the whole
cluster: Kafka's ``/config/brokers/<default>``) are one key each, edited the same
way; every broker follows the keys of its own id and of the default
(:func:`follow_broker_configs`) and applies them live.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace

import anyio
import structlog

from broker.cluster.cache import MetadataCache
from broker.cluster.keys import Keys
from broker.cluster.model import (
    BadRecord,
    RequestError,
    TopicRecord,
    decode_configs,
    encode,
    encode_configs,
)
from broker.cluster.requests import ClusterRequests
from broker.cluster.store import (
    Compare,
    Delete,
    LeaseExpired,
    Put,
    Store,
    StoreUnavailable,
)
from broker.configs.dynamic import ConfigStoreError, DynamicConfigs
from broker.configs.ops import Edit
from protocol.error_codes import ErrorCode

log = structlog.get_logger("broker.cluster.configs")

_RETRIES = 10


async def alter_topic_configs(
    store: Store,
    keys: Keys,
    cache: MetadataCache,
    name: str,
    edit: Callable[[Mapping[str, str]], dict[str, str]],
    timeout_s: float,
) -> dict[str, str] | RequestError:
    """Replace a topic record's configs with ``edit`` of the stored ones
    (compare-and-set on the key; on contention read and edit again); the configs
    written, once ``cache`` shows them. ``edit`` may raise to refuse the change."""
    key = keys.topic(name)
    with anyio.move_on_after(timeout_s):
        try:
            for _ in range(_RETRIES):
                kv = await store.get(key)
                if kv is None:
                    return RequestError(
                        code=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                        message=f"Topic {name} does not exist",
                    )
                record = TopicRecord.decode(kv.value)
                configs = edit(record.configs)
                if configs == dict(record.configs):
                    await wait_revision(cache, kv.mod_revision)
                    return configs
                new = replace(record, configs=configs)
                ok, revision = await store.txn(
                    [Compare(key, mod_revision=kv.mod_revision)],
                    [Put(key, encode(new))],
                )
                if ok:
                    await wait_revision(cache, revision)
                    return configs
        except (StoreUnavailable, LeaseExpired, BadRecord) as e:
            return RequestError(code=ErrorCode.REQUEST_TIMED_OUT, message=str(e))
        return RequestError(
            code=ErrorCode.REQUEST_TIMED_OUT, message=f"{name} is being changed"
        )
    return RequestError(
        code=ErrorCode.REQUEST_TIMED_OUT,
        message=f"etcd did not answer within {timeout_s:g} s",
    )


async def put_broker_configs(
    store: Store,
    keys: Keys,
    cache: MetadataCache,
    scope: str,
    edit: Callable[[Mapping[str, str]], dict[str, str]],
    timeout_s: float,
) -> dict[str, str] | RequestError:
    """Replace a scope's dynamic broker configs with ``edit`` of the stored ones
    (an empty result deletes the key; compare-and-set, edited again on
    contention); the configs written, once ``cache`` shows them."""
    key = keys.broker_config(scope)
    with anyio.move_on_after(timeout_s):
        try:
            for _ in range(_RETRIES):
                kv = await store.get(key)
                current = {} if kv is None else decode_configs(kv.value)
                values = edit(current)
                compare = (
                    Compare(key, absent=True)
                    if kv is None
                    else Compare(key, mod_revision=kv.mod_revision)
                )
                op: Put | Delete = (
                    Put(key, encode_configs(values)) if values else Delete(key)
                )
                ok, revision = await store.txn([compare], [op])
                if ok:
                    await wait_revision(cache, revision)
                    return values
        except (StoreUnavailable, LeaseExpired, BadRecord) as e:
            return RequestError(code=ErrorCode.REQUEST_TIMED_OUT, message=str(e))
        return RequestError(
            code=ErrorCode.REQUEST_TIMED_OUT, message=f"{key} is being changed"
        )
    return RequestError(
        code=ErrorCode.REQUEST_TIMED_OUT,
        message=f"etcd did not answer within {timeout_s:g} s",
    )


async def wait_revision(cache: MetadataCache, revision: int) -> None:
    """Wait until the watched cache reflects etcd's ``revision``."""
    seen = cache.version
    while cache.revision < revision:
        seen = await cache.wait_changed(seen)


class EtcdConfigStore:
    """The dynamic broker configs' store in cluster mode (etcd, through the
    cluster's requests)."""

    def __init__(self, cluster: ClusterRequests) -> None:
        self._cluster = cluster

    async def save(self, scope: str, edit: Edit) -> dict[str, str]:
        written = await self._cluster.put_broker_configs(scope, edit)
        if isinstance(written, RequestError):
            raise ConfigStoreError(written.message)
        return written


async def follow_broker_configs(cache: MetadataCache, dynamic: DynamicConfigs) -> None:
    """Apply the watched dynamic broker configs of every scope as they change
    (this broker's own and the default ones take effect here); until cancelled."""
    while True:
        seen = cache.version
        watched = cache.broker_config_scopes()
        for scope, values in watched.items():
            await dynamic.set_layer(scope, values, reason="watched")
        for scope in dynamic.scopes():
            if scope not in watched:
                await dynamic.set_layer(scope, {}, reason="watched")
        await cache.wait_changed(seen)
