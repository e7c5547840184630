"""Where acks=all waits: durability of appends, as the broker composes it.

:class:`Durability` owns the group commit (:class:`GroupCommit`, which fsyncs dirty
partitions in worker threads) and the waiters woken when a partition's high
watermark moves (:class:`PartitionWaiters`: Fetch long polls, acks=all produce).
An append calls :meth:`Durability.after_append`: a write-caching topic's data is
visible at once (its waiters are woken), any other partition is marked dirty for the
next fsync round. Write-caching partitions are fsynced every ``flush.ms`` by
:meth:`Durability.flush_job`. The policy (the high watermark is the durable offset)
is described in :mod:`broker.durability.group_commit`.
"""

from __future__ import annotations

import time

import anyio

from broker.durability.group_commit import GroupCommit, PartitionWaiters
from broker.metrics import Metrics
from storage.log_manager import LogManager
from storage.partition_log import PartitionLog

FLUSH_CHECK_S = 0.25


class Durability:
    """The group commit and the partition waiters, and the rules that use them."""

    def __init__(self, metrics: Metrics) -> None:
        self.waiters = PartitionWaiters()

        def on_round(n: int) -> None:
            metrics.fsyncs += 1

        self.commit = GroupCommit(self.waiters, on_round=on_round)
        self._last_flush: dict[int, float] = {}

    def after_append(self, plog: PartitionLog, write_caching: bool) -> None:
        """Schedule durability/visibility after an append."""
        if write_caching:
            self.waiters.notify(plog)
        else:
            self.commit.mark_dirty(plog)

    def schedule_periodic_flush(self, logs: LogManager) -> None:
        """Mark write-caching partitions dirty once their flush.ms has elapsed."""
        now = time.monotonic()
        for meta in logs.topics():
            cfg = meta.config
            if not cfg.write_caching:
                continue
            for idx in range(meta.partition_count):
                plog = logs.partition(meta.name, idx)
                if not plog.needs_sync:
                    continue
                last = self._last_flush.get(id(plog), 0.0)
                if now - last >= cfg.flush_ms / 1000:
                    self._last_flush[id(plog)] = now
                    self.commit.mark_dirty(plog)

    async def flush_job(self, logs: LogManager) -> None:
        """Fsync write-caching topics' partitions every flush.ms (others sync eagerly)."""
        while True:
            await anyio.sleep(FLUSH_CHECK_S)
            self.schedule_periodic_flush(logs)

    async def run(self) -> None:
        """Drive the group commit until cancelled."""
        await self.commit.run()
