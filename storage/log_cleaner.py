"""The log cleaner: compacts partitions whose ``cleanup.policy`` has ``compact``.

Kafka's ``LogCleaner`` and ``LogCleanerManager``, one partition at a time. A round
has three steps, so that the broker can run the heavy one in a worker process
(broker/topics/cleaner.py):

1. :meth:`LogCleaner.plan` (a broker thread) decides whether the partition is due
   and which segments a round cleans (a :class:`Plan` with a
   :class:`~storage.cleaner_build.BuildJob`);
2. :func:`storage.cleaner_build.build_cleaned` (anywhere: files only) writes the
   cleaned segments as ``.cleaned`` files;
3. :meth:`LogCleaner.finish` (a broker thread) swaps them in, oldest first, under
   the log's lock (storage/cleaner_swap.py), and records the round.

:meth:`LogCleaner.clean` does all three in the calling thread.

A partition's log is, oldest first: the *clean* part (cleaned before), the *dirty*
part (appended since), and the uncleanable tail: the active segment, anything not
yet durable or above ``upto`` (the high watermark), and segments with records
younger than ``min.compaction.lag.ms``. A round runs when the dirty part is at least
``min.cleanable.dirty.ratio`` of the cleanable bytes, when its oldest record is older
than ``max.compaction.lag.ms``, or when a kept tombstone's delete horizon has passed.
Cleanable segments are grouped into runs of at most ``segment.bytes`` (of their
sizes before cleaning), each rewritten into one segment; a run that changed
meanwhile (retention, truncation) abandons the round. Where the dirty part now
starts is kept in ``cleaner-checkpoint.json`` in the partition directory (Kafka's
``cleaner-offset-checkpoint``)::

    {"version": 1, "first_dirty_offset": N, "next_delete_horizon": H}
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Final

from protocol.records import RecordBatchError
from storage.cleaner_build import (
    BuildJob,
    BuildResult,
    CleanerStopped,
    Throttler,
    build_cleaned,
    groups_of,
)
from storage.cleaner_swap import CleanedSegment, discard_cleaned
from storage.compaction import CleanStats
from storage.config import TopicConfig
from storage.errors import StorageError
from storage.partition_log import PartitionLog
from storage.segment import Segment

__all__ = [
    "CHECKPOINT_FILE",
    "CleanerStatus",
    "CleanerStopped",
    "LogCleaner",
    "Plan",
    "RoundResult",
    "Throttler",
]

CHECKPOINT_FILE: Final = "cleaner-checkpoint.json"


@dataclass(slots=True)
class CleanerStatus:
    """One partition's compaction, as ``topic describe``, the admin API and the
    metrics show it."""

    state: str = "idle"  # idle | cleaning | error
    dirty_ratio: float = 0.0
    first_dirty_offset: int = 0  # everything below it was cleaned (the clean part)
    last_run_ms: int = -1  # wall clock of the last finished round (-1: none)
    last_duration_ms: float = 0.0
    rounds: int = 0
    rounds_abandoned: int = 0
    bytes_read: int = 0  # totals since the broker started
    bytes_written: int = 0
    records_removed: int = 0
    tombstones_removed: int = 0
    next_delete_horizon: int = -1
    error: str | None = None

    def to_json(self) -> dict[str, object]:
        """The admin API's view."""
        return {
            "state": self.state,
            "dirty_ratio": round(self.dirty_ratio, 4),
            "last_cleaned_offset": self.first_dirty_offset,
            "last_run_ms": self.last_run_ms,
            "last_duration_ms": round(self.last_duration_ms, 1),
            "rounds": self.rounds,
            "rounds_abandoned": self.rounds_abandoned,
            "bytes_cleaned": self.bytes_read,
            "bytes_written": self.bytes_written,
            "records_removed": self.records_removed,
            "tombstones_removed": self.tombstones_removed,
            "error": self.error,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class RoundResult:
    """What one round did to one partition."""

    cleaned: bool  # a round ran to the end
    abandoned: bool
    stats: CleanStats = field(default_factory=CleanStats)
    first_dirty_offset: int = 0


def _read_checkpoint(directory: str) -> tuple[int, int]:
    try:
        with open(os.path.join(directory, CHECKPOINT_FILE), "rb") as f:
            data = json.loads(f.read())
        return int(data["first_dirty_offset"]), int(data["next_delete_horizon"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0, -1


class LogCleaner:
    """Cleans one partition per :meth:`clean` call; keeps every partition's status.

    Thread-safe for one cleaning thread plus readers of :attr:`statuses`.
    """

    def __init__(
        self,
        *,
        throttler: Throttler | None = None,
        max_map_keys: int = 1_000_000,
    ) -> None:
        self.throttler = throttler or Throttler()
        self.max_map_keys = max_map_keys
        self.statuses: dict[tuple[str, int], CleanerStatus] = {}
        self._lock = threading.Lock()

    def status(self, plog: PartitionLog) -> CleanerStatus:
        """The partition's status (created, from its checkpoint, on first use)."""
        key = (plog.topic, plog.partition)
        with self._lock:
            found = self.statuses.get(key)
            if found is None:
                first_dirty, horizon = _read_checkpoint(plog.directory)
                found = self.statuses[key] = CleanerStatus(
                    first_dirty_offset=first_dirty, next_delete_horizon=horizon
                )
            return found

    def peek(self, plog: PartitionLog) -> CleanerStatus:
        """The partition's status if a round looked at it, else a blank one (no
        file is read: for the event loop's views)."""
        with self._lock:
            return self.statuses.get((plog.topic, plog.partition)) or CleanerStatus()

    def all_statuses(self) -> list[tuple[tuple[str, int], CleanerStatus]]:
        """Every known status, sorted (a copy: the cleaning thread adds to them)."""
        with self._lock:
            return sorted(self.statuses.items())

    def forget(self, topic: str, partition: int) -> None:
        """Drop a deleted partition's status."""
        with self._lock:
            self.statuses.pop((topic, partition), None)

    def clean(
        self,
        plog: PartitionLog,
        *,
        now_ms: int | None = None,
        upto: int | None = None,
        force: bool = False,
    ) -> RoundResult:
        """One whole round over ``plog`` in this thread, if it is due (or
        ``force``); ``upto`` caps the cleanable offsets (a high watermark).

        Raises:
            StorageError: reading, writing or swapping failed (the status says so).
        """
        plan = self.plan(plog, now_ms=now_ms, upto=upto, force=force)
        if plan is None:
            return RoundResult(cleaned=False, abandoned=False)
        try:
            built = build_cleaned(plan.job, self.throttler, plog.fileops)
        except BaseException as exc:
            self.failed(plog, plan, exc)
            if isinstance(exc, (OSError, RecordBatchError)):
                raise StorageError(f"cleaning {plog.directory}: {exc}") from exc
            raise
        return self.finish(plog, plan, built)

    def plan(
        self,
        plog: PartitionLog,
        *,
        now_ms: int | None = None,
        upto: int | None = None,
        force: bool = False,
    ) -> Plan | None:
        """The round ``plog`` is due for, or None.

        Raises:
            StorageError: the log is closed or failed.
        """
        if not plog.config.compact:
            return None
        status = self.status(plog)
        now = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        cfg = plog.config
        segments, count = plog.compaction_view(upto)
        cleanable = segments[:count]
        if cfg.min_compaction_lag_ms > 0:
            # min.compaction.lag.ms: the first segment with a younger record and
            # everything after it is uncleanable
            lag_limit = now - cfg.min_compaction_lag_ms
            young = [i for i, s in enumerate(cleanable) if s.max_timestamp > lag_limit]
            if young:
                del cleanable[young[0] :]
        if not cleanable:
            status.dirty_ratio = 0.0
            return None
        end = cleanable[-1].next_offset
        first_dirty = min(max(status.first_dirty_offset, cleanable[0].base_offset), end)
        dirty = [s for s in cleanable if s.next_offset > first_dirty]
        total = sum(s.size for s in cleanable)
        status.dirty_ratio = sum(s.size for s in dirty) / total if total else 0.0
        horizon_due = 0 <= status.next_delete_horizon <= now
        if not (force or horizon_due or self._due(cfg, dirty, status, now)):
            return None
        status.state = "cleaning"
        job = BuildJob(
            directory=plog.directory,
            bases=[s.base_offset for s in segments],
            sizes=[s.size for s in segments],
            next_offsets=[s.next_offset for s in segments],
            first_dirty=len(cleanable) - len(dirty),
            groups=groups_of(
                [s.size for s in cleanable],
                [s.base_offset for s in cleanable],
                [s.next_offset for s in cleanable],
                cfg.segment_bytes,
            ),
            now_ms=now,
            delete_retention_ms=cfg.delete_retention_ms,
            index_interval=cfg.index_interval_bytes,
            max_map_keys=self.max_map_keys,
            io_bytes_per_second=self.throttler.bytes_per_second,
            aborted=[
                [e.producer_id, e.first_offset, e.last_offset, e.last_stable_offset]
                for e in plog.aborted_transactions(cleanable[0].base_offset, end)
            ],
        )
        return Plan(segments=segments, job=job, started=time.perf_counter())

    def finish(self, plog: PartitionLog, plan: Plan, built: BuildResult) -> RoundResult:
        """Swap in what :func:`build_cleaned` wrote for ``plan`` and record the
        round (abandoned if a group is no longer in the log as planned).

        Raises:
            StorageError: a swap failed (the log is then marked failed).
        """
        status = self.status(plog)
        job = plan.job
        cfg = plog.config
        abandoned = False
        try:
            for n, group in enumerate(built.groups):
                base = job.bases[group[0]]
                if abandoned:
                    discard_cleaned(plog.fileops, plog.directory, base)
                    continue
                cleaned = CleanedSegment(
                    plog.fileops, plog.directory, base, cfg.index_interval_bytes
                )
                try:
                    if n == 0:
                        # The recovery point must pass the groups before their files
                        # change, so a crash never re-verifies (and cuts at) the gaps
                        # cleaning leaves.
                        plog.checkpoint()
                    swapped = plog.swap_cleaned(
                        [plan.segments[i] for i in group], cleaned
                    )
                except BaseException:
                    cleaned.discard()
                    raise
                if not swapped:
                    cleaned.discard()
                    abandoned = True
        except BaseException as exc:
            self.failed(plog, plan, exc)
            if isinstance(exc, (OSError, RecordBatchError)):
                raise StorageError(f"cleaning {plog.directory}: {exc}") from exc
            raise
        stats = built.stats
        if not abandoned:
            try:
                plog.fileops.write_file_atomic(
                    os.path.join(plog.directory, CHECKPOINT_FILE),
                    json.dumps(
                        {
                            "version": 1,
                            "first_dirty_offset": built.end,
                            "next_delete_horizon": stats.next_delete_horizon,
                        }
                    ).encode(),
                )
            except OSError as exc:
                self.failed(plog, plan, exc)
                raise StorageError(f"cleaning {plog.directory}: {exc}") from exc
            status.first_dirty_offset = built.end
            status.next_delete_horizon = stats.next_delete_horizon
            status.dirty_ratio = 0.0
        status.state = "idle"
        status.error = None
        status.last_run_ms = job.now_ms
        status.last_duration_ms = (time.perf_counter() - plan.started) * 1000
        status.rounds += 1
        status.rounds_abandoned += int(abandoned)
        status.bytes_read += stats.bytes_read
        status.bytes_written += stats.bytes_written
        status.records_removed += stats.records_removed
        status.tombstones_removed += stats.tombstones_removed
        return RoundResult(
            cleaned=not abandoned,
            abandoned=abandoned,
            stats=stats,
            first_dirty_offset=built.end,
        )

    def failed(self, plog: PartitionLog, plan: Plan, exc: BaseException) -> None:
        """Record a round that failed or was stopped; its ``.cleaned`` files go."""
        status = self.status(plog)
        for group in plan.job.groups:
            with contextlib.suppress(OSError):
                discard_cleaned(plog.fileops, plog.directory, plan.job.bases[group[0]])
        if isinstance(exc, CleanerStopped):
            status.state = "idle"
            return
        status.state = "error"
        status.error = str(exc)

    @staticmethod
    def _due(
        cfg: TopicConfig, dirty: list[Segment], status: CleanerStatus, now: int
    ) -> bool:
        if not dirty:
            return False
        if status.dirty_ratio >= cfg.min_cleanable_dirty_ratio:
            return True
        first = next(iter(dirty[0].iter_headers(0)), None)
        return first is not None and now - first[1].max_timestamp > (
            cfg.max_compaction_lag_ms
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """A round about to run: the log's segments as planned (the swap checks they
    are still these) and the job that builds the cleaned ones."""

    segments: list[Segment]
    job: BuildJob
    started: float
