"""Writing a cleaning round's cleaned segments, from segment files alone.

The CPU-heavy half of a round (storage/log_cleaner.py): it reads every record of
the cleanable segments, so the broker runs it in a worker process at low priority
(broker/topics/cleaner_worker.py), where it shares no GIL with the event loop. It
works on files only, by path: a :class:`BuildJob` (JSON) names the partition
directory and its segments (base offset, size, the offset after it; the last one
active, with the size it had when the round was planned), and :func:`build_cleaned`

1. maps each key of the dirty segments to its last offset;
2. finds each idempotent producer's newest batch in the whole log;
3. writes each group of cleanable segments to ``<base>.log.cleaned`` (fsynced),
   and the aborted transactions whose ABORT markers it keeps to
   ``<base>.txnindex.cleaned`` (storage/cleaner_txns.py has the transaction rules).

It never changes a live file; the swap is the broker's (storage/cleaner_swap.py),
which checks that the segments are still those the job named.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import mmap
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Final

from protocol.record_builder import iter_records, rebuild_batch
from protocol.record_scan import rebuild_with
from protocol.records import BatchHeader, Buffer, iter_batches
from storage.cleaner_swap import cleaned_path, cleaned_txnindex_path
from storage.cleaner_txns import CleanedTxns
from storage.compaction import (
    CleanStats,
    add_to_offset_map,
    clean_batch,
)
from storage.errors import InvalidBatch, StorageError
from storage.fileops import DEFAULT_FILEOPS, FileOps
from storage.segment import LOG_SUFFIX, segment_name
from storage.transactions import marker_of
from storage.txn_index import AbortedTxn, encode_entries
from storage.txn_state import MarkerInfo

__all__ = [
    "BuildJob",
    "BuildResult",
    "CleanerStopped",
    "Throttler",
    "build_cleaned",
    "groups_of",
]

_MAX_RELATIVE_OFFSET: Final = 2**31 - 1


class CleanerStopped(StorageError):
    """The cleaner was asked to stop in the middle of a round (nothing changed)."""


class Throttler:
    """Caps the cleaner's I/O at ``bytes_per_second`` (0: no cap) by sleeping, as
    Kafka's ``Throttler``; :attr:`stopping` ends a round at its next batch."""

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


@dataclass(frozen=True, slots=True, kw_only=True)
class BuildJob:
    """What a round cleans; every segment of the log, oldest first."""

    directory: str
    bases: list[int]
    sizes: list[int]
    next_offsets: list[int]
    first_dirty: int  # index of the first dirty segment
    groups: list[list[int]]  # segment indexes of each cleaned segment, in order
    now_ms: int
    delete_retention_ms: int
    index_interval: int
    max_map_keys: int = 1_000_000
    io_bytes_per_second: float = 0.0
    # aborted transactions overlapping the cleanable range (the .txnindex
    # entries): [producer id, first offset, marker offset, last stable offset]
    aborted: list[list[int]] = field(default_factory=list)

    def aborted_txns(self, start: int) -> list[AbortedTxn]:
        """The aborted transactions a pass from offset ``start`` can meet."""
        return [
            AbortedTxn(
                producer_id=pid,
                first_offset=first,
                last_offset=last,
                last_stable_offset=lso,
            )
            for pid, first, last, lso in self.aborted
            if last >= start
        ]

    def to_json(self) -> bytes:
        """The worker's stdin."""
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_json(cls, data: bytes) -> BuildJob:
        """Parse :meth:`to_json` (raises ValueError, KeyError, TypeError)."""
        body = json.loads(data)
        return cls(
            directory=str(body["directory"]),
            bases=[int(b) for b in body["bases"]],
            sizes=[int(s) for s in body["sizes"]],
            next_offsets=[int(n) for n in body["next_offsets"]],
            first_dirty=int(body["first_dirty"]),
            groups=[[int(i) for i in g] for g in body["groups"]],
            now_ms=int(body["now_ms"]),
            delete_retention_ms=int(body["delete_retention_ms"]),
            index_interval=int(body["index_interval"]),
            max_map_keys=int(body["max_map_keys"]),
            io_bytes_per_second=float(body["io_bytes_per_second"]),
            aborted=[[int(v) for v in e] for e in body.get("aborted", [])],
        )


@dataclass(slots=True, kw_only=True)
class BuildResult:
    """The groups written (``.cleaned`` files), where the dirty part now starts,
    and the counts."""

    groups: list[list[int]]
    end: int
    stats: CleanStats = field(default_factory=CleanStats)

    def to_json(self) -> dict[str, object]:
        """The worker's reply."""
        return {"groups": self.groups, "end": self.end, "stats": asdict(self.stats)}

    @classmethod
    def from_json(cls, body: dict[str, object]) -> BuildResult:
        """Parse :meth:`to_json` (raises ValueError, KeyError, TypeError)."""
        groups = body["groups"]
        stats = body["stats"]
        if not isinstance(groups, list) or not isinstance(stats, dict):
            raise TypeError("bad cleaner build reply")
        return cls(
            groups=[[int(i) for i in g] for g in groups],
            end=int(str(body["end"])),
            stats=CleanStats(**{k: int(v) for k, v in stats.items()}),
        )


def groups_of(
    sizes: list[int], bases: list[int], next_offsets: list[int], max_bytes: int
) -> list[list[int]]:
    """Runs of consecutive segments (indexes) of at most ``max_bytes`` together, at
    least one each, whose offsets fit one segment (Kafka ``groupSegmentsBySize``)."""
    groups: list[list[int]] = []
    current: list[int] = []
    size = 0
    for i, seg_size in enumerate(sizes):
        if current and (
            size + seg_size > max_bytes
            or next_offsets[i] - 1 - bases[current[0]] > _MAX_RELATIVE_OFFSET
        ):
            groups.append(current)
            current, size = [], 0
        current.append(i)
        size += seg_size
    if current:
        groups.append(current)
    return groups


@contextlib.contextmanager
def _mapped(directory: str, base: int, size: int) -> Iterator[memoryview]:
    """The first ``size`` bytes of a segment file, mapped read-only."""
    if size == 0:
        yield memoryview(b"")
        return
    path = os.path.join(directory, segment_name(base) + LOG_SUFFIX)
    fd = DEFAULT_FILEOPS.open(path, os.O_RDONLY)
    try:
        mapped = mmap.mmap(fd, size, prot=mmap.PROT_READ)
    finally:
        DEFAULT_FILEOPS.close(fd)
    # Not closed here: slices of it may still be referenced for a moment; the
    # mapping goes with its last reference.
    yield memoryview(mapped)


def build_cleaned(
    job: BuildJob,
    throttler: Throttler | None = None,
    fileops: FileOps = DEFAULT_FILEOPS,
) -> BuildResult:
    """Write the job's cleaned segments beside the live ones (see the module
    docstring). Raises OSError, StorageError or CorruptBatch."""
    throttle = throttler or Throttler(job.io_bytes_per_second)
    stats = CleanStats()
    offsets: dict[bytes, int] = {}
    cleanable = sorted(i for group in job.groups for i in group)
    end = job.next_offsets[cleanable[-1]] if cleanable else 0
    groups = job.groups
    tombstones: set[int] = set()  # dirty batches (base offsets) with a tombstone
    dirty_start = job.bases[job.first_dirty] if job.first_dirty < len(job.bases) else 0
    txns = CleanedTxns(job.aborted_txns(dirty_start))
    for i in (i for i in cleanable if i >= job.first_dirty):
        with _mapped(job.directory, job.bases[i], job.sizes[i]) as view:
            for pos, header in iter_batches(view):
                throttle.tick(header.size)
                if header.is_control:
                    txns.on_control(header, _marker(view, pos, header))
                elif txns.on_data(header):
                    continue  # aborted records never hide a key's older value
                elif add_to_offset_map(offsets, view, pos):
                    tombstones.add(header.base_offset)
        if len(offsets) >= job.max_map_keys and i != cleanable[-1]:
            end = job.next_offsets[i]  # the map is full: clean up to here
            groups = [[j for j in g if j <= i] for g in groups]
            groups = [g for g in groups if g]
            break
    producer_last = _producers_last_batches(job)
    kept = _AllLatest(
        offsets,
        tombstones,
        job.bases[job.first_dirty] if job.first_dirty < len(job.bases) else end,
    )
    txns = CleanedTxns(job.aborted_txns(job.bases[groups[0][0]] if groups else 0))
    for group in groups:
        _write_group(
            job, group, offsets, producer_last, stats, throttle, fileops, kept, txns
        )
    return BuildResult(groups=groups, end=end, stats=stats)


def _marker(view: memoryview, pos: int, header: BatchHeader) -> MarkerInfo | None:
    """What a control batch says (None: no COMMIT/ABORT record, or unreadable)."""
    try:
        return marker_of(view[pos : pos + header.size])
    except (InvalidBatch, ValueError):
        return None


def _clean_control(
    view: memoryview,
    pos: int,
    header: BatchHeader,
    txns: CleanedTxns,
    job: BuildJob,
    *,
    producer_last: bool,
    stats: CleanStats,
    entries: list[AbortedTxn],
) -> Buffer | None:
    """The cleaned form of a control batch (storage/cleaner_txns.py): kept, given
    its delete horizon, emptied (a producer's last batch) or dropped."""
    verdict = txns.on_control(header, _marker(view, pos, header))
    batch = view[pos : pos + header.size]
    if verdict.idle:
        if not header.has_delete_horizon:
            horizon = job.now_ms + job.delete_retention_ms
            stats.saw_horizon(horizon)
            records = list(iter_records(view, pos))
            batch = memoryview(rebuild_batch(header, records, delete_horizon=horizon))
        elif job.now_ms >= header.base_timestamp:
            stats.markers_removed += int(header.record_count > 0)
            if not producer_last:
                return None
            # the producer's last batch keeps its header (its epoch and sequence)
            return batch if header.record_count == 0 else rebuild_with(header, b"", [])
        else:
            stats.saw_horizon(header.base_timestamp)
    if verdict.entry is not None:
        entries.append(verdict.entry)
    return batch


class _AllLatest:
    """Which dirty batches are kept whole without reading their records again:
    those without a tombstone whose every offset is some key's last one (the
    offset map's values), e.g. every batch of a log whose keys are all new."""

    def __init__(
        self, offsets: dict[bytes, int], tombstones: set[int], dirty_from: int
    ) -> None:
        self._latest = sorted(offsets.values())
        self._tombstones = tombstones
        self._dirty_from = dirty_from

    def __call__(self, header: BatchHeader) -> bool:
        base = header.base_offset
        if base < self._dirty_from or base in self._tombstones:
            return False
        latest = self._latest
        found = bisect.bisect_right(latest, header.last_offset) - bisect.bisect_left(
            latest, base
        )
        return found == header.record_count


def _producers_last_batches(job: BuildJob) -> dict[int, int]:
    """Producer id -> base offset of its newest batch in the log (headers only)."""
    last: dict[int, int] = {}
    for base, size in zip(job.bases, job.sizes, strict=True):
        with _mapped(job.directory, base, size) as view:
            for _, header in iter_batches(view):
                if header.producer_id >= 0:
                    last[header.producer_id] = header.base_offset
    return last


def _write_group(
    job: BuildJob,
    group: list[int],
    offsets: dict[bytes, int],
    producer_last: dict[int, int],
    stats: CleanStats,
    throttle: Throttler,
    fileops: FileOps,
    all_latest: Callable[[BatchHeader], bool],
    txns: CleanedTxns,
) -> None:
    path = cleaned_path(job.directory, job.bases[group[0]])
    entries: list[AbortedTxn] = []
    fd = fileops.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        out = _Output(fileops, fd)
        for i in group:
            with _mapped(job.directory, job.bases[i], job.sizes[i]) as view:
                for pos, header in iter_batches(view):
                    stats.bytes_read += header.size
                    throttle.tick(header.size)
                    data: Buffer | None
                    last = _is_last(header, producer_last)
                    if header.is_control:
                        data = _clean_control(
                            view,
                            pos,
                            header,
                            txns,
                            job,
                            producer_last=last,
                            stats=stats,
                            entries=entries,
                        )
                    elif txns.on_data(header):  # an aborted transaction's
                        stats.records_read += header.record_count
                        stats.records_removed += header.record_count
                        data = rebuild_with(header, b"", []) if last else None
                    elif all_latest(header):
                        data = view[pos : pos + header.size]
                        stats.records_read += header.record_count
                    else:
                        data = clean_batch(
                            view,
                            pos,
                            header,
                            offsets,
                            now_ms=job.now_ms,
                            delete_retention_ms=job.delete_retention_ms,
                            producer_last=last,
                            stats=stats,
                        ).data
                    if data is not None:
                        out.add(data)
                        stats.bytes_written += len(data)
                out.flush()  # before the mapping goes
        fileops.fsync(fd)
    finally:
        fileops.close(fd)
    index = cleaned_txnindex_path(job.directory, job.bases[group[0]])
    if entries:
        fileops.write_file_atomic(index, encode_entries(entries))
    else:
        with contextlib.suppress(FileNotFoundError):
            fileops.unlink(index)


class _Output:
    """Buffered sequential writes of a ``.cleaned`` file."""

    def __init__(self, fileops: FileOps, fd: int) -> None:
        self._fileops = fileops
        self._fd = fd
        self._buf = bytearray()
        self._position = 0

    def add(self, data: Buffer) -> None:
        self._buf += data
        if len(self._buf) >= 1 << 20:
            self.flush()

    def flush(self) -> None:
        view = memoryview(self._buf)
        done = 0
        while done < len(view):
            done += self._fileops.pwrite(self._fd, view[done:], self._position + done)
        view.release()
        self._position += done
        self._buf = bytearray()
        # Write back as it goes (as snapshot staging does): the final fsync then
        # has little left, so it never holds the file system's journal long while
        # the broker appends to other partitions.
        self._fileops.start_writeback(self._fd)


def _is_last(header: BatchHeader, producer_last: dict[int, int]) -> bool:
    return header.producer_id >= 0 and producer_last.get(header.producer_id) == (
        header.base_offset
    )
