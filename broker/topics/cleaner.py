"""The log cleaner's background job: compacts ``cleanup.policy=compact`` topics.

Every ``log.cleaner.backoff.ms`` the job takes each partition whose topic compacts,
in turn, and runs a round of :class:`storage.log_cleaner.LogCleaner` on it in a
worker thread (one at a time: the cleaner is one thread, as Kafka's default
``log.cleaner.threads=1``). The event loop only collects the partitions and their
high watermarks (nothing above it is cleaned: a follower may still be behind) and
logs what each round did (``log_cleaned``). Reads and writes are capped by
``log.cleaner.io.max.bytes.per.second`` (0: unlimited). ``log.cleaner.enable=false``
stops the job from running (the status then says ``disabled``).

Each replica compacts its own log, as in Kafka: a follower's log is cleaned by
its own broker, below its own high watermark.

Shutdown: the job's task group is cancelled; the running round sees the cleaner's
stop flag at its next chunk and gives up before its swap (nothing changes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import anyio
import structlog

from broker.config import BrokerConfig
from broker.metrics import escape_label
from storage.errors import StorageError
from storage.log_cleaner import CleanerStatus, CleanerStopped, LogCleaner, Throttler
from storage.partition_log import PartitionLog

log = structlog.get_logger("broker.cleaner")

HighWatermark = Callable[[PartitionLog], int | None]


class CleanerJob:
    """The broker's log cleaner: the job, and the statuses views read."""

    def __init__(self, config: BrokerConfig) -> None:
        self.enabled = config.log_cleaner_enable
        self.backoff_s = config.log_cleaner_backoff_ms / 1000
        self.cleaner = LogCleaner(
            throttler=Throttler(float(config.log_cleaner_io_max_bytes_per_second))
        )
        self.errors = 0

    def status(self, plog: PartitionLog) -> dict[str, object] | None:
        """The partition's compaction status (None unless its topic compacts)."""
        if not plog.config.compact:
            return None
        view = self.cleaner.peek(plog).to_json()
        if not self.enabled:
            view["state"] = "disabled"
        return view

    async def run(
        self,
        logs: Callable[[], list[PartitionLog]],
        high_watermark: HighWatermark,
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Clean due partitions every ``backoff`` until cancelled."""
        task_status.started()
        if not self.enabled:
            return
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._stop_on_cancel)
            while True:
                for plog in [p for p in logs() if p.config.compact]:
                    await self._clean_one(plog, high_watermark(plog))
                await anyio.sleep(self.backoff_s)

    async def _stop_on_cancel(self) -> None:
        # Cancelling the job cannot interrupt a worker thread: the flag makes the
        # round in progress stop at its next chunk, so shutdown does not wait long.
        try:
            await anyio.sleep_forever()
        finally:
            self.cleaner.throttler.stopping.set()

    async def _clean_one(self, plog: PartitionLog, upto: int | None) -> None:
        try:
            result = await anyio.to_thread.run_sync(
                lambda: self.cleaner.clean(plog, upto=upto)
            )
        except CleanerStopped:
            return
        except StorageError as exc:
            self.errors += 1
            log.warning(
                "log_cleaner_failed",
                topic=plog.topic,
                partition=plog.partition,
                error=str(exc),
            )
            return
        if result.cleaned or result.abandoned:
            stats = result.stats
            log.info(
                "log_cleaned" if result.cleaned else "log_cleaning_abandoned",
                topic=plog.topic,
                partition=plog.partition,
                bytes_read=stats.bytes_read,
                bytes_written=stats.bytes_written,
                records_removed=stats.records_removed,
                tombstones_removed=stats.tombstones_removed,
                first_dirty_offset=result.first_dirty_offset,
            )

    def metric_lines(self) -> Iterator[str]:
        """The ``ailurus_log_cleaner_*`` families (docs/metrics.md)."""
        rows: list[tuple[str, CleanerStatus]] = [
            (f'topic="{escape_label(t)}",partition="{p}"', s)
            for (t, p), s in self.cleaner.all_statuses()
        ]
        for name, kind, text, value in (
            ("enabled", "gauge", "1 if log.cleaner.enable is true.", self.enabled),
            ("errors_total", "counter", "Cleaning rounds that failed.", self.errors),
        ):
            family = f"ailurus_log_cleaner_{name}"
            yield f"# HELP {family} {text}"
            yield f"# TYPE {family} {kind}"
            yield f"{family} {int(value)}"
        for name, kind, text, pick in _PARTITION_FAMILIES:
            family = f"ailurus_log_cleaner_{name}"
            yield f"# HELP {family} {text}"
            yield f"# TYPE {family} {kind}"
            for labels, status in rows:
                yield f"{family}{{{labels}}} {pick(status)}"


_PARTITION_FAMILIES: tuple[
    tuple[str, str, str, Callable[[CleanerStatus], float]], ...
] = (
    ("dirty_ratio", "gauge", "Dirty bytes / cleanable bytes.", lambda s: s.dirty_ratio),
    ("rounds_total", "counter", "Cleaning rounds finished.", lambda s: s.rounds),
    ("read_bytes_total", "counter", "Segment bytes cleaned.", lambda s: s.bytes_read),
    (
        "written_bytes_total",
        "counter",
        "Bytes of cleaned segments written.",
        lambda s: s.bytes_written,
    ),
    (
        "removed_records_total",
        "counter",
        "Records compacted away (tombstones included).",
        lambda s: s.records_removed,
    ),
    (
        "last_run_timestamp_seconds",
        "gauge",
        "Wall clock at the end of the last round (0: none yet).",
        lambda s: max(s.last_run_ms, 0) / 1000,
    ),
)
