"""The log cleaner's background job: compacts ``cleanup.policy=compact`` topics.

Every ``log.cleaner.backoff.ms`` the job takes each partition whose topic compacts,
in turn (one at a time, as Kafka's default ``log.cleaner.threads=1``), and runs a
round of :class:`storage.log_cleaner.LogCleaner` on it: the plan and the swap in a
broker worker thread (both short: headers and renames), the rewrite of the
segments in a worker process at nice 19 (broker/topics/cleaner_worker.py), so the
record-by-record work never holds the broker's GIL. The event loop only collects
the partitions and their high watermarks (nothing above it is cleaned: a follower
may still be behind) and logs each round (``log_cleaned``). Reads and writes are
capped by ``log.cleaner.io.max.bytes.per.second`` (0: unlimited);
``log.cleaner.enable=false`` stops the job (the status then says ``disabled``).

Each replica compacts its own log, as in Kafka: a follower's log is cleaned by
its own broker, below its own high watermark.

Shutdown: cancelling the job kills a running worker (its ``.cleaned`` files are
deleted; the log is unchanged).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import anyio
import structlog

from broker.config import BrokerConfig
from broker.metrics import escape_label
from broker.worker_process import run_worker_process
from storage.cleaner_build import BuildJob, BuildResult
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
        cleaner = self.cleaner
        try:
            plan = await anyio.to_thread.run_sync(lambda: cleaner.plan(plog, upto=upto))
            if plan is None:
                return
            try:
                built = await _build_in_worker(plan.job)
            except BaseException as exc:
                cleaner.failed(plog, plan, exc)  # a few unlinks of .cleaned files
                raise
            result = await anyio.to_thread.run_sync(cleaner.finish, plog, plan, built)
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
        stats = result.stats
        log.info(
            "log_cleaned" if result.cleaned else "log_cleaning_abandoned",
            topic=plog.topic,
            partition=plog.partition,
            bytes_read=stats.bytes_read,
            bytes_written=stats.bytes_written,
            records_removed=stats.records_removed,
            tombstones_removed=stats.tombstones_removed,
            markers_removed=stats.markers_removed,
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


async def _build_in_worker(job: BuildJob) -> BuildResult:
    """Run :func:`storage.cleaner_build.build_cleaned` in a worker process
    (broker/topics/cleaner_worker.py, nice 19, started by broker.worker_process);
    killed if this is cancelled.

    Raises:
        StorageError: the worker could not be run or failed (the message says why).
    """
    returncode, stdout, stderr = result = await run_worker_process(
        "broker.topics.cleaner_worker", [], job.to_json(), what="log cleaner"
    )
    lines = stdout.decode(errors="replace").strip().splitlines()
    try:
        reply = json.loads(lines[-1]) if lines else {}
    except ValueError:
        reply = {}
    if returncode == 0 and isinstance(reply, dict) and "groups" in reply:
        try:
            return BuildResult.from_json(reply)
        except (KeyError, TypeError, ValueError) as exc:
            raise StorageError(f"log cleaner worker: bad reply: {exc}") from exc
    error = reply.get("error") if isinstance(reply, dict) else None
    error = error or stderr.decode(errors="replace").strip()[-500:]
    raise StorageError(
        f"log cleaner worker failed ({result.exit_text}): {error or 'no output'}"
    )


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
