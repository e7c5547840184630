"""The broker-wide context every handler sees: config, storage, services, metrics.

``BrokerContext`` is created once per process by :mod:`broker.server` and passed to
handlers through :class:`broker.net.request.RequestContext`. It owns the glue between
the event loop and the synchronous storage layer: opening and recovering the data
dir in a worker thread, appends that schedule a group-commit round, topic creation
with a ``topic_change`` log event, and the admin/metrics views of topics.

Hooks wired in later (typed loosely on purpose so this module does not
import them): ``groups`` (the consumer-group service, broker.groups.service) and
``producers`` (idempotent-producer state). Handlers that need them check for None.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio
import structlog

from broker.config import BrokerConfig
from broker.disk.guard import DiskGuard, storage_fileops
from broker.disk.guard import metric_lines as diskguard_metric_lines
from broker.durability.group_commit import GroupCommit, PartitionWaiters
from broker.fdlimits import current_nofile, storage_limits
from broker.metrics import Metrics
from broker.startup import (
    EXIT_DATA_DIR,
    StartupError,
    data_dir_error,
    lock_data_dir,
)
from storage.errors import StorageError

if TYPE_CHECKING:
    from broker.net.connection import KafkaConnection
    from storage.lock import DataDirLock
    from storage.log_manager import LogManager, TopicMeta
    from storage.partition_log import PartitionLog

log = structlog.get_logger("broker.context")


@dataclass(frozen=True, slots=True, kw_only=True)
class BoundListener:
    """A listener after binding: the actual port and what clients are told."""

    name: str
    host: str
    port: int
    advertised_host: str
    advertised_port: int

    def as_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "host": self.host,
            "port": self.port,
            "advertised_host": self.advertised_host,
            "advertised_port": self.advertised_port,
        }


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(slots=True, kw_only=True, eq=False)
class BrokerContext:
    """Process-wide state shared by connections, handlers and background jobs."""

    config: BrokerConfig
    metrics: Metrics
    waiters: PartitionWaiters
    group_commit: GroupCommit
    logs_: LogManager | None = None
    listeners: dict[str, BoundListener] = field(default_factory=dict)
    admin_address: tuple[str, int] | None = None
    connections: dict[int, KafkaConnection] = field(default_factory=dict)
    ready: bool = False
    shutting_down: bool = False
    # Hooks for services wired in later: consumer groups, producer ids.
    groups: object | None = None
    producers: object | None = None
    # Security (broker.security.service.SecurityService), set by the server.
    security: object | None = None
    # Free-space floor of the data dir (set by open_storage; broker.disk.guard).
    diskguard: DiskGuard | None = None
    # Taken by lock_data_dir() before the listeners bind; handed to the LogManager.
    data_dir_lock: DataDirLock | None = None
    _last_flush: dict[int, float] = field(default_factory=dict)

    @classmethod
    def create(cls, config: BrokerConfig) -> BrokerContext:
        metrics = Metrics()
        waiters = PartitionWaiters()

        def on_round(n: int) -> None:
            metrics.fsyncs += 1

        return cls(
            config=config,
            metrics=metrics,
            waiters=waiters,
            group_commit=GroupCommit(waiters, on_round=on_round),
        )

    # -- storage lifecycle ---------------------------------------------------

    @property
    def logs(self) -> LogManager:
        assert self.logs_ is not None, "storage not open"
        return self.logs_

    def lock_data_dir(self) -> DataDirLock:
        """Create and lock the data dir (fast; raises StartupError before recovery)."""
        if self.data_dir_lock is None:
            self.data_dir_lock = lock_data_dir(self.config.data_dir)
        return self.data_dir_lock

    async def open_storage(self) -> None:
        """Open (and recover) the data dir in a worker thread; log what recovery found."""
        config = self.config
        started = time.perf_counter()
        from storage.log_manager import LogManager

        limits = storage_limits(config, current_nofile())
        log.info(
            "storage_limits",
            max_partitions=limits.max_partitions,
            max_open_segment_files=limits.max_open_segment_files,
            max_partitions_per_request=config.max_partitions_per_request,
            auto_create_topics_per_request=config.auto_create_topics_per_request,
        )
        dir_lock = self.lock_data_dir()
        self.data_dir_lock = None  # the manager's from now on
        try:
            fileops, self.diskguard = storage_fileops(
                str(config.data_dir), config.min_free_bytes
            )
            manager = await anyio.to_thread.run_sync(
                lambda: LogManager(
                    str(config.data_dir),
                    dict(config.topic_defaults),
                    fileops=fileops,
                    dir_lock=dir_lock,
                    max_partitions=limits.max_partitions,
                    max_open_segments=limits.max_open_segment_files,
                )
            )
        except PermissionError as e:
            dir_lock.release()
            raise data_dir_error(config.data_dir, e) from e
        except (StorageError, OSError) as e:
            dir_lock.release()
            raise StartupError(
                f"cannot open data dir {config.data_dir}: {e}", exit_code=EXIT_DATA_DIR
            ) from e
        self.logs_ = manager
        _log_storage_open(manager, time.perf_counter() - started)

    async def close_storage(self) -> None:
        """Final fsync and clean close (writes the clean-shutdown marker)."""
        manager = self.logs_
        if manager is None:
            if self.data_dir_lock is not None:  # start-up stopped before storage
                self.data_dir_lock.release()
                self.data_dir_lock = None
            return
        self.logs_ = None
        try:
            await anyio.to_thread.run_sync(lambda: manager.close(clean=True))
        except StorageError as e:
            log.error("storage_close_failed", error=str(e))
            return
        log.info("storage_closed", clean=True)

    # -- appends and visibility ----------------------------------------------

    def high_watermark(self, plog: PartitionLog, write_caching: bool) -> int:
        """What consumers may read: the durable offset (see broker.durability.group_commit)."""
        return plog.log_end_offset if write_caching else plog.durable_offset

    def after_append(self, plog: PartitionLog, write_caching: bool) -> None:
        """Schedule durability/visibility after an append."""
        if write_caching:
            self.waiters.notify(plog)
        else:
            self.group_commit.mark_dirty(plog)

    def schedule_periodic_flush(self) -> None:
        """Mark write-caching partitions dirty once their flush.ms has elapsed."""
        manager = self.logs_
        if manager is None:
            return
        now = time.monotonic()
        for meta in manager.topics():
            cfg = meta.config
            if not cfg.write_caching:
                continue
            for idx in range(meta.partition_count):
                plog = manager.partition(meta.name, idx)
                if not plog.needs_sync:
                    continue
                last = self._last_flush.get(id(plog), 0.0)
                if now - last >= cfg.flush_ms / 1000:
                    self._last_flush[id(plog)] = now
                    self.group_commit.mark_dirty(plog)

    async def apply_retention(self) -> None:
        manager = self.logs_
        if manager is None:
            return

        def run() -> list[tuple[str, int, int, int]]:
            out = []
            now = now_ms()
            for plog in manager.logs():
                try:
                    removed = plog.apply_retention(now)
                except StorageError:
                    continue
                if removed:
                    out.append(
                        (
                            plog.topic,
                            plog.partition,
                            len(removed),
                            plog.log_start_offset,
                        )
                    )
            return out

        for topic, partition, segments, start in await anyio.to_thread.run_sync(run):
            log.info(
                "retention_removed",
                topic=topic,
                partition=partition,
                segments=segments,
                log_start_offset=start,
            )

    # -- topics --------------------------------------------------------------

    def topic_names(self) -> list[str]:
        manager = self.logs_
        return [] if manager is None else sorted(m.name for m in manager.topics())

    def topic_summary(self, name: str) -> dict[str, object] | None:
        manager = self.logs_
        if manager is None:
            return None
        try:
            meta = manager.topic(name)
        except StorageError:
            return None
        return {
            "name": meta.name,
            "topic_id": str(meta.topic_uuid),
            "partition_count": meta.partition_count,
            "configs": dict(meta.config.overrides),
            "partitions": [
                self._partition_summary(meta, idx)
                for idx in range(meta.partition_count)
            ],
        }

    def _partition_summary(self, meta: TopicMeta, idx: int) -> dict[str, object]:
        plog = self.logs.partition(meta.name, idx)
        return {
            "partition": idx,
            "log_start_offset": plog.log_start_offset,
            "log_end_offset": plog.log_end_offset,
            "high_watermark": self.high_watermark(plog, meta.config.write_caching),
            "durable_offset": plog.durable_offset,
            "size_bytes": plog.size_bytes,
            "leader": self.config.node_id,
            "leader_epoch": plog.leader_epoch,
        }

    def partition_metric_lines(self) -> Iterator[str]:
        manager = self.logs_
        if manager is None:
            return
        rows = []
        for meta in manager.topics():
            for idx in range(meta.partition_count):
                s = self._partition_summary(meta, idx)
                rows.append((meta.name, idx, s))
        for metric, key, text in (
            ("ailurus_partition_log_start_offset", "log_start_offset", "First offset."),
            ("ailurus_partition_log_end_offset", "log_end_offset", "Next offset."),
            ("ailurus_partition_high_watermark", "high_watermark", "Visible end."),
            ("ailurus_partition_size_bytes", "size_bytes", "Bytes on disk."),
        ):
            yield f"# HELP {metric} {text}"
            yield f"# TYPE {metric} gauge"
            for name, idx, s in rows:
                yield f'{metric}{{topic="{name}",partition="{idx}"}} {s[key]}'
        yield from diskguard_metric_lines(self.diskguard, manager)


def _log_storage_open(manager: LogManager, seconds: float) -> None:
    """One INFO line for the start; a WARNING per partition only if data was repaired.

    A data dir used for the first time is a clean start. After an unclean stop every
    partition's tail is re-verified; partitions where that found nothing to cut are
    only counted, not listed.
    """
    repaired = 0
    for rec in manager.recovery:
        if not rec.truncated and not rec.removed_files:
            continue
        repaired += 1
        log.warning(
            "recovery",
            topic=rec.topic,
            partition=rec.partition,
            clean=rec.clean,
            truncated=rec.truncated,
            log_end_offset=rec.log_end_offset,
            scanned_segments=sum(1 for s in rec.segments if s.scanned),
            truncated_bytes=sum(s.truncated_bytes for s in rec.segments),
            reasons=[s.reason for s in rec.segments if s.reason],
            removed_segments=rec.removed_segments,
            removed_files=rec.removed_files,
        )
    for path in manager.removed:
        log.warning("recovery_removed", path=path)
    if manager.new:
        start = "new"
    elif manager.clean_start:
        start = "clean"
    else:
        start = "recovered"
    log.info(
        "storage_open",
        data_dir=manager.data_dir,
        start=start,
        clean_start=start != "recovered",
        topics=len(manager.topics()),
        partitions=len(manager.recovery),
        verified_partitions=sum(1 for rec in manager.recovery if not rec.clean),
        repaired_partitions=repaired,
        seconds=round(seconds, 3),
    )
