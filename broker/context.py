"""The broker-wide context every handler sees: config, storage, services, metrics.

``BrokerContext`` is created once per process by :mod:`broker.server` and passed to
handlers through :class:`broker.net.request.RequestContext`. It owns the glue between
the event loop and the synchronous storage layer: opening and recovering the data
dir in a worker thread (through :class:`broker.topics.service.TopicService`) and
appends that schedule a group-commit round.

Hooks wired in later (typed loosely on purpose so this module does not
import them): ``groups`` (the consumer-group service, broker.groups.service) and
``producers`` (idempotent-producer state). Handlers that need them check for None.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog

from broker.config import BrokerConfig
from broker.disk.guard import DiskGuard, storage_fileops
from broker.durability.group_commit import GroupCommit, PartitionWaiters
from broker.metrics import Metrics
from broker.startup import (
    lock_data_dir,
)
from broker.topics.service import TopicService, high_watermark

if TYPE_CHECKING:
    from broker.net.connection import KafkaConnection
    from storage.lock import DataDirLock
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
    topics_: TopicService | None = None
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
    def topics(self) -> TopicService:
        assert self.topics_ is not None, "storage not open"
        return self.topics_

    def lock_data_dir(self) -> DataDirLock:
        """Create and lock the data dir (fast; raises StartupError before recovery)."""
        if self.data_dir_lock is None:
            self.data_dir_lock = lock_data_dir(self.config.data_dir)
        return self.data_dir_lock

    async def open_storage(self) -> None:
        """Open (and recover) the data dir in a worker thread; log what recovery found."""
        config = self.config
        dir_lock = self.lock_data_dir()
        self.data_dir_lock = None  # the manager's from now on
        fileops, self.diskguard = storage_fileops(
            str(config.data_dir), config.min_free_bytes
        )
        self.topics_ = await TopicService.open(
            config, fileops, dir_lock, self.metrics, self.diskguard
        )

    async def close_storage(self) -> None:
        """Final fsync and clean close (writes the clean-shutdown marker)."""
        topics = self.topics_
        if topics is None:
            if self.data_dir_lock is not None:  # start-up stopped before storage
                self.data_dir_lock.release()
                self.data_dir_lock = None
            return
        self.topics_ = None
        await topics.close()

    # -- appends and visibility ----------------------------------------------

    def high_watermark(self, plog: PartitionLog, write_caching: bool) -> int:
        """What consumers may read: the durable offset (see broker.durability.group_commit)."""
        return high_watermark(plog, write_caching)

    def after_append(self, plog: PartitionLog, write_caching: bool) -> None:
        """Schedule durability/visibility after an append."""
        if write_caching:
            self.waiters.notify(plog)
        else:
            self.group_commit.mark_dirty(plog)

    def schedule_periodic_flush(self) -> None:
        """Mark write-caching partitions dirty once their flush.ms has elapsed."""
        if self.topics_ is None:
            return
        manager = self.topics_.logs
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
