"""The log cleaner: compacts partitions whose ``cleanup.policy`` has ``compact``.

Kafka's ``LogCleaner`` and ``LogCleanerManager``, one partition at a time, in the
caller's (worker) thread; the broker's background job (broker/topics/cleaner.py)
calls :meth:`LogCleaner.clean` for each compacted partition in turn.

A partition's log is, oldest first: the *clean* part (cleaned before), the *dirty*
part (appended since), and the uncleanable tail: the active segment, anything not
yet durable, and segments with records younger than ``min.compaction.lag.ms``. A
round runs when the dirty part is at least ``min.cleanable.dirty.ratio`` of the
cleanable bytes, when its oldest record is older than ``max.compaction.lag.ms``, or
when a kept tombstone's delete horizon has passed. It:

1. maps every key of the dirty part to its last offset (storage/compaction.py);
2. notes each idempotent producer's last batch in the whole log (kept, emptied if
   need be, for the producer's sequence);
3. groups the cleanable segments, oldest first, into runs of at most
   ``segment.bytes`` (of the original sizes) and rewrites each run into one
   cleaned segment, outside the log lock, then swaps it in under the lock
   (storage/cleaner_swap.py); a run that changed meanwhile (retention, truncation)
   abandons the round;
4. remembers where the dirty part now starts (``cleaner-checkpoint.json`` in the
   partition directory, Kafka's ``cleaner-offset-checkpoint``)::

       {"version": 1, "first_dirty_offset": N, "next_delete_horizon": H}

Reading and writing go through a :class:`Throttler` (``log.cleaner.io.max.bytes.
per.second``).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from protocol.records import BatchHeader, RecordBatchError, iter_batches
from storage.cleaner_swap import CleanedWriter
from storage.compaction import (
    CleanStats,
    add_to_offset_map,
    clean_batch,
    keep_control_batch,
)
from storage.config import TopicConfig
from storage.errors import StorageError
from storage.partition_log import PartitionLog
from storage.segment import Segment

__all__ = [
    "CHECKPOINT_FILE",
    "CleanerStatus",
    "CleanerStopped",
    "LogCleaner",
    "RoundResult",
    "Throttler",
]

CHECKPOINT_FILE: Final = "cleaner-checkpoint.json"
_MAX_RELATIVE_OFFSET: Final = 2**31 - 1


class CleanerStopped(StorageError):
    """The cleaner was asked to stop in the middle of a round (nothing changed)."""


class Throttler:
    """Caps a worker thread's I/O at ``bytes_per_second`` (0: no cap) by sleeping,
    as Kafka's ``Throttler``."""

    def __init__(
        self,
        bytes_per_second: float = 0.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] | None = None,
    ) -> None:
        self.bytes_per_second = bytes_per_second
        self.stopping = threading.Event()
        self._clock = clock
        # a throttled sleep ends early when the cleaner is told to stop
        self._sleep = self.stopping.wait if sleep is None else sleep
        self._start = clock()
        self._since_check = 0
        self.slept_s = 0.0

    def tick(self, nbytes: int) -> None:
        """Account for ``nbytes`` read or written.

        Raises:
            CleanerStopped: :attr:`stopping` is set (broker shutdown).
        """
        if self.stopping.is_set():
            raise CleanerStopped("the log cleaner is stopping")
        self._since_check += nbytes
        if self.bytes_per_second <= 0:
            return
        now = self._clock()
        elapsed = now - self._start
        if elapsed >= 0.05 or self._since_check >= self.bytes_per_second / 20:
            wanted = self._since_check / self.bytes_per_second
            if wanted > elapsed:
                self._sleep(wanted - elapsed)
                self.slept_s += wanted - elapsed
            self._start = self._clock()
            self._since_check = 0


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
        max_map_keys: int = 4_000_000,
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
        """One round over ``plog`` if it is due (or ``force``); ``upto`` caps the
        cleanable offsets (a leader's high watermark).

        Raises:
            StorageError: reading or swapping failed (the status says so).
        """
        status = self.status(plog)
        now = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        if not plog.config.compact:
            return RoundResult(cleaned=False, abandoned=False)
        started = time.perf_counter()
        try:
            result = self._clean(plog, status, now, upto, force)
        except CleanerStopped:
            status.state = "idle"
            raise
        except (StorageError, RecordBatchError, OSError) as exc:
            status.state = "error"
            status.error = str(exc)
            if isinstance(exc, StorageError):
                raise
            raise StorageError(f"cleaning {plog.directory}: {exc}") from exc
        if result.cleaned or result.abandoned:
            status.state = "idle"
            status.error = None
            status.last_run_ms = now
            status.last_duration_ms = (time.perf_counter() - started) * 1000
            status.rounds += 1
            status.rounds_abandoned += int(result.abandoned)
            stats = result.stats
            status.bytes_read += stats.bytes_read
            status.bytes_written += stats.bytes_written
            status.records_removed += stats.records_removed
            status.tombstones_removed += stats.tombstones_removed
        return result

    # -- one round -----------------------------------------------------------------
    def _clean(
        self,
        plog: PartitionLog,
        status: CleanerStatus,
        now: int,
        upto: int | None,
        force: bool,
    ) -> RoundResult:
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
            return RoundResult(cleaned=False, abandoned=False)
        end = cleanable[-1].next_offset
        first_dirty = min(max(status.first_dirty_offset, cleanable[0].base_offset), end)
        dirty = [s for s in cleanable if s.next_offset > first_dirty]
        total = sum(s.size for s in cleanable)
        dirty_bytes = sum(s.size for s in dirty)
        status.dirty_ratio = dirty_bytes / total if total else 0.0
        horizon_due = 0 <= status.next_delete_horizon <= now
        if not (force or horizon_due or self._due(cfg, dirty, status, now)):
            return RoundResult(cleaned=False, abandoned=False)
        status.state = "cleaning"
        stats = CleanStats()
        offsets: dict[bytes, int] = {}
        for i, seg in enumerate(dirty):
            self._map_segment(seg, offsets, stats)
            if len(offsets) >= self.max_map_keys and i + 1 < len(dirty):
                end = seg.next_offset  # the map is full: clean up to here
                cleanable = [s for s in cleanable if s.next_offset <= end]
                break
        producer_last = _producers_last_batches(segments)
        for group in _groups(cleanable, cfg.segment_bytes):
            if not self._clean_group(plog, group, offsets, producer_last, now, stats):
                return RoundResult(cleaned=False, abandoned=True, stats=stats)
        status.first_dirty_offset = end
        status.next_delete_horizon = stats.next_delete_horizon
        plog.fileops.write_file_atomic(
            os.path.join(plog.directory, CHECKPOINT_FILE),
            json.dumps(
                {
                    "version": 1,
                    "first_dirty_offset": end,
                    "next_delete_horizon": stats.next_delete_horizon,
                }
            ).encode(),
        )
        status.dirty_ratio = 0.0
        return RoundResult(
            cleaned=True, abandoned=False, stats=stats, first_dirty_offset=end
        )

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

    def _map_segment(
        self, seg: Segment, offsets: dict[bytes, int], stats: CleanStats
    ) -> None:
        view = _whole(seg)
        for pos, header in iter_batches(view):
            if not header.is_control:
                add_to_offset_map(offsets, view, pos)
            self.throttler.tick(header.size)

    def _clean_group(
        self,
        plog: PartitionLog,
        group: list[Segment],
        offsets: dict[bytes, int],
        producer_last: dict[int, int],
        now: int,
        stats: CleanStats,
    ) -> bool:
        cfg = plog.config
        writer = CleanedWriter(
            plog.fileops, plog.directory, group[0].base_offset, cfg.index_interval_bytes
        )
        try:
            for seg in group:
                view = _whole(seg)
                for pos, header in iter_batches(view):
                    stats.bytes_read += header.size
                    self.throttler.tick(header.size)
                    if header.is_control:
                        if keep_control_batch(header):
                            writer.append(view[pos : pos + header.size])
                            stats.bytes_written += header.size
                        continue
                    outcome = clean_batch(
                        view,
                        pos,
                        header,
                        offsets,
                        now_ms=now,
                        delete_retention_ms=cfg.delete_retention_ms,
                        producer_last=_is_producer_last(header, producer_last),
                        stats=stats,
                    )
                    if outcome.data is not None:
                        writer.append(outcome.data)
                        stats.bytes_written += len(outcome.data)
            writer.finish()
            # The recovery point must pass the group before its files change, so
            # a crash never re-verifies (and cuts at) the gaps cleaning leaves.
            plog.checkpoint()
            swapped = plog.swap_cleaned(group, writer)
        except BaseException:
            writer.discard()
            raise
        if not swapped:
            writer.discard()
        return swapped


def _whole(seg: Segment) -> memoryview:
    """The segment's committed bytes (raises OSError if it was closed meanwhile)."""
    return seg.view(0, seg.size) if seg.size else memoryview(b"")


def _is_producer_last(header: BatchHeader, producer_last: dict[int, int]) -> bool:
    return header.producer_id >= 0 and producer_last.get(header.producer_id) == (
        header.base_offset
    )


def _producers_last_batches(segments: list[Segment]) -> dict[int, int]:
    """Producer id -> base offset of its newest batch in the log (headers only)."""
    last: dict[int, int] = {}
    for seg in segments:
        with contextlib.suppress(OSError):
            for _, header in seg.iter_headers(0):
                if header.producer_id >= 0:
                    last[header.producer_id] = header.base_offset
    return last


def _groups(segments: list[Segment], max_bytes: int) -> list[list[Segment]]:
    """Runs of consecutive segments of at most ``max_bytes`` together (at least one
    each) whose offsets fit one segment (Kafka ``groupSegmentsBySize``)."""
    groups: list[list[Segment]] = []
    current: list[Segment] = []
    size = 0
    for seg in segments:
        if current and (
            size + seg.size > max_bytes
            or seg.next_offset - 1 - current[0].base_offset > _MAX_RELATIVE_OFFSET
        ):
            groups.append(current)
            current, size = [], 0
        current.append(seg)
        size += seg.size
    if current:
        groups.append(current)
    return groups
