"""Plugging the group and producer services into a running broker.

The server wires them with one line in its serving task group, after storage is
open and before the listeners accept clients::

    await serving.start(run_group_services, ctx)

:func:`run_group_services` opens the offset store and the producer-id allocator in
the data dir (in a worker thread), hangs :class:`GroupService` and
:class:`ProducerService` on ``ctx.groups`` / ``ctx.producers`` (after rebuilding every
existing partition's producer state in a worker thread), reports started,
drives the group service until cancelled, then closes the offset store cleanly.
:func:`open_group_services` / :func:`close_group_services` are the two halves for
callers that open and drive at different points. Importing this module registers
the admin routes of :mod:`broker.admin.routes.groups`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import anyio
import structlog

from broker.groups.service import GroupConfig, GroupService
from broker.producers.service import ProducerService
from storage.errors import StorageError
from storage.offset_store import OffsetStore
from storage.producer_state import ProducerIdAllocator

if TYPE_CHECKING:
    from anyio.abc import TaskStatus

    from broker.context import BrokerContext

log = structlog.get_logger("broker.groups")

# Broker settings (Kafka names) → GroupConfig fields. The broker config carries them
# as attributes of the same field name once broker/config.py lists the keys;
# offsets.retention.minutes arrives in minutes.
GROUP_KEYS = {
    "group.initial.rebalance.delay.ms": "initial_rebalance_delay_ms",
    "group.min.session.timeout.ms": "min_session_timeout_ms",
    "group.max.session.timeout.ms": "max_session_timeout_ms",
    "offsets.retention.minutes": "offsets_retention_minutes",
    "offset.metadata.max.bytes": "offset_metadata_max_bytes",
    "offsets.retention.check.interval.ms": "retention_check_interval_ms",
}


def group_config_from(broker_config: object) -> GroupConfig:
    """A GroupConfig from whatever group settings the broker config carries."""
    values: dict[str, int] = {}
    for name in GROUP_KEYS.values():
        value = getattr(broker_config, name, None)
        if isinstance(value, int) and not isinstance(value, bool):
            values[name] = value
    minutes = values.pop("offsets_retention_minutes", None)
    if minutes is not None:
        values["offsets_retention_ms"] = minutes * 60_000
    return GroupConfig(**values)


async def open_group_services(
    ctx: BrokerContext, config: GroupConfig | None = None
) -> GroupService:
    """Open the offset store and id allocator; publish the services on ``ctx``."""
    data_dir = ctx.config.data_dir

    def open_all() -> tuple[OffsetStore, ProducerIdAllocator]:
        return OffsetStore(data_dir), ProducerIdAllocator(data_dir)

    store, allocator = await anyio.to_thread.run_sync(open_all)
    if store.recovered_bytes_dropped:
        log.warning("offsets_recovered", dropped_bytes=store.recovered_bytes_dropped)
    for skipped in store.skipped:
        log.warning(
            "offset_entry_skipped",
            line=skipped.line,
            group=skipped.group,
            reason=skipped.reason,
        )
    if store.skipped_count > len(store.skipped):
        log.warning(
            "offset_entries_skipped",
            skipped=store.skipped_count,
            logged=len(store.skipped),
        )

    def exists(topic: str, partition: int) -> bool:
        topics = ctx.topics_
        if topics is None:
            return False
        try:
            return 0 <= partition < topics.logs.topic(topic).partition_count
        except StorageError:
            return False

    service = GroupService(
        store,
        config=config or group_config_from(ctx.config),
        durability=ctx.group_commit,
        partition_exists=exists,
        topic_names=lambda: [] if ctx.topics_ is None else ctx.topics.names(),
    )
    producers = ProducerService(allocator)
    manager = None if ctx.topics_ is None else ctx.topics_.logs
    if manager is not None:
        # Rebuild idempotence state off the loop before any client can produce
        # (the listeners open after this returns).
        plogs = [p for t in manager.topics() for p in manager.partitions(t.name)]
        if plogs:
            started = time.perf_counter()
            loaded = await anyio.to_thread.run_sync(producers.preload, plogs)
            log.info(
                "producer_state_loaded",
                partitions=len(plogs),
                with_data=loaded,
                seconds=round(time.perf_counter() - started, 3),
            )
    ctx.groups = service
    ctx.producers = producers
    log.info(
        "groups_open", groups=len(store.groups()), next_producer_id=allocator.next_id
    )
    return service


async def close_group_services(ctx: BrokerContext) -> None:
    """Unpublish the services and close the offset store (clean: compacted)."""
    service = ctx.groups
    ctx.groups = None
    ctx.producers = None
    if not isinstance(service, GroupService):
        return
    store = service.store
    with anyio.CancelScope(shield=True):
        try:
            await anyio.to_thread.run_sync(lambda: store.close(clean=True))
        except StorageError as e:
            log.error("offsets_close_failed", error=str(e))


async def run_group_services(
    ctx: BrokerContext,
    config: GroupConfig | None = None,
    *,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Open, publish and drive the group/producer services until cancelled."""
    service = await open_group_services(ctx, config)
    task_status.started()
    try:
        await service.run()
    finally:
        await close_group_services(ctx)
