"""Recovery: rebuild a segment's state from its log file, truncating a bad tail.

After an unclean stop, every segment at or past the partition's recovery point is
re-scanned with full checks: each batch must be whole, have magic 2, a matching
CRC32C, sane counts, and start at or after the offset where the previous batch ended
(the first at or after the segment's base offset: log compaction leaves gaps, see
storage/log_cleaner.py). The file is cut at the first batch that fails, so nothing
past the last valid batch is ever served; a segment without gaps that ends before
the next one starts lost its tail, and the log is cut there too. Segments below the
recovery point are trusted: their indexes are loaded, checked, and rebuilt from
batch headers only if missing or damaged. Swaps of cleaned segments that a crash
interrupted are finished first (storage/cleaner_swap.py). Everything found is
reported in :class:`SegmentRecovery`.
"""

from __future__ import annotations

import contextlib
import mmap
import os
from dataclasses import dataclass
from typing import Final

from protocol.records import (
    BATCH_HEADER_SIZE,
    LOG_OVERHEAD,
    CorruptBatch,
    read_header,
    verify_batch,
)
from storage.cleaner_swap import finish_swaps
from storage.epoch_cache import EpochCache
from storage.errors import CorruptSegment
from storage.fd_cache import FdCache
from storage.fileops import FileOps
from storage.offset_index import OffsetIndex
from storage.segment import (
    INDEX_SUFFIX,
    LOG_SUFFIX,
    TIMEINDEX_SUFFIX,
    TXNINDEX_SUFFIX,
    Segment,
    segment_base,
)
from storage.time_index import TimeIndex

_MIN_BATCH_LENGTH: Final = BATCH_HEADER_SIZE - LOG_OVERHEAD


@dataclass(frozen=True, slots=True, kw_only=True)
class SegmentRecovery:
    """What recovery did to one segment."""

    base_offset: int
    scanned: bool  # fully re-verified (unclean tail) rather than trusted
    index_rebuilt: bool
    valid_bytes: int
    truncated_bytes: int
    reason: str | None  # why the tail was cut, None if nothing was


@dataclass(frozen=True, slots=True, kw_only=True)
class ScanResult:
    """Outcome of scanning one segment's log."""

    valid_end: int
    reason: str | None
    epoch_starts: list[tuple[int, int]]  # (epoch, first offset) as epochs change
    dense: bool = True  # no offset gap (a segment log compaction never touched)


def scan_segment(seg: Segment, index_interval: int, *, verify: bool) -> ScanResult:
    """Re-derive ``seg``'s indexes, offsets and timestamps from its log file.

    Stops at the first torn, corrupt (``verify``) or out-of-order batch; the caller
    truncates the file at ``valid_end``. Resets the segment's in-memory state first.
    """
    fileops = seg.fileops
    with seg.handle() as fd:
        file_size = fileops.fstat_size(fd)
    seg.index = OffsetIndex(seg.base_offset)
    seg.time_index = TimeIndex(seg.base_offset)
    seg.max_timestamp = seg.max_timestamp_offset = -1
    seg.bytes_since_index = 0
    seg.next_offset = seg.base_offset
    seg.size = 0
    seg.indexes_dirty = True
    if file_size == 0:
        # empty: a cleaned segment all of whose records were removed may be
        return ScanResult(valid_end=0, reason=None, epoch_starts=[], dense=False)
    # Map the file instead of reading it: the CRC runs over the page cache
    # directly, with no copy (twice the throughput of pread on a warm cache).
    with seg.handle() as fd:
        mapped = mmap.mmap(fd, file_size, prot=mmap.PROT_READ)
    try:
        with contextlib.suppress(OSError, AttributeError):
            mapped.madvise(mmap.MADV_SEQUENTIAL)
        with memoryview(mapped) as view:
            return _scan(seg, view, file_size, index_interval, verify=verify)
    finally:
        mapped.close()


def _scan(
    seg: Segment, buf: memoryview, file_size: int, index_interval: int, *, verify: bool
) -> ScanResult:
    epochs: list[tuple[int, int]] = []
    last_epoch = -1
    expected = seg.base_offset
    pos = 0
    reason: str | None = None
    dense = True
    while pos < file_size:
        if file_size - pos < BATCH_HEADER_SIZE:
            reason = f"torn batch header at {pos}"
            break
        header = read_header(buf, pos)
        if header.magic != 2 or header.batch_length < _MIN_BATCH_LENGTH:
            reason = f"not a v2 batch at {pos}"
            break
        size = header.size
        if pos + size > file_size:
            reason = f"torn batch at {pos} ({file_size - pos} of {size} bytes)"
            break
        if verify:
            try:
                verify_batch(buf, pos)
            except CorruptBatch as exc:
                reason = f"corrupt batch at {pos}: {exc}"
                break
        if header.base_offset < expected:
            reason = f"offset {header.base_offset} at {pos}, expected {expected}"
            break
        dense = dense and header.base_offset == expected
        epoch = header.partition_leader_epoch
        if epoch > last_epoch:
            epochs.append((epoch, header.base_offset))
            last_epoch = epoch
        seg.note_batch(
            pos, header.last_offset, header.max_timestamp, size, index_interval
        )
        expected = header.next_offset
        pos += size
    return ScanResult(valid_end=pos, reason=reason, epoch_starts=epochs, dense=dense)


def load_trusted(
    seg: Segment, index_interval: int, next_base: int | None
) -> tuple[bool, list[tuple[int, int]]] | None:
    """Load a trusted segment's indexes, rebuilding them if they do not check out.

    ``next_base`` is the following segment's base offset (None for the last one,
    whose tail past its last index entry is read from the log). Returns whether the
    indexes were rebuilt and the epoch starts seen if it had to scan, or None if
    the log file itself does not check out (the caller then verifies it fully).
    """
    index = _read_file(seg, seg.index_path)
    tindex = _read_file(seg, seg.timeindex_path)
    loaded = (
        None
        if index is None
        else OffsetIndex.from_bytes(index, seg.base_offset, seg.size)
    )
    tloaded = None if tindex is None else TimeIndex.from_bytes(tindex, seg.base_offset)
    if (
        loaded is not None
        and tloaded is not None
        and _check_last_entry(seg, loaded)
        and _plausible(seg, loaded, tloaded, index_interval, next_base)
    ):
        seg.index = loaded
        seg.time_index = tloaded
        if tloaded.timestamps:
            seg.max_timestamp = tloaded.timestamps[-1]
            seg.max_timestamp_offset = seg.base_offset + tloaded.relative_offsets[-1]
        if next_base is not None and seg.size > 0:
            seg.next_offset = next_base
            seg.indexes_dirty = False
            return False, []
        # Last segment: read the batches after the last index entry.
        start = end = loaded.last_position()
        seg.next_offset = seg.base_offset
        try:
            for position, header in seg.iter_headers(start, seg.size):
                if position != start and header.base_offset < seg.next_offset:
                    return None
                if header.max_timestamp > seg.max_timestamp:
                    seg.max_timestamp = header.max_timestamp
                    seg.max_timestamp_offset = header.last_offset
                seg.next_offset = header.next_offset
                end = position + header.size
        except CorruptSegment:
            return None
        if end != seg.size:
            return None  # a torn or damaged tail despite the clean-shutdown marker
        seg.bytes_since_index = end - start
        seg.indexes_dirty = False
        return False, []
    result = scan_segment(seg, index_interval, verify=False)
    # Trusted: it was fsynced whole, so ending before the next segment means its
    # last records were cleaned (compaction), not lost.
    if result.reason is not None or (
        next_base is not None and not _ends_at(seg, next_base, dense=False)
    ):
        return None
    if next_base is not None:
        seg.next_offset = next_base  # a cleaned segment spans up to the next one
    return True, result.epoch_starts


def _ends_at(seg: Segment, next_base: int, *, dense: bool) -> bool:
    """Whether ``seg`` may be followed by a segment at ``next_base``: it must not
    overlap it, and a segment without gaps must end exactly there (else its tail
    was lost); a compacted one may end earlier (its last records were cleaned)."""
    if dense:
        return seg.next_offset == next_base
    return seg.next_offset <= next_base


def _plausible(
    seg: Segment,
    index: OffsetIndex,
    tindex: TimeIndex,
    index_interval: int,
    next_base: int | None,
) -> bool:
    """Reject index files that parse but cannot be this segment's (e.g. a file cut
    to zero by a power loss before its pages were written back)."""
    if next_base is None or seg.size == 0:
        return True
    if not len(tindex):
        return False  # a closed segment's time index is sealed with its max timestamp
    if len(index) and index.base_offset + index.relative_offsets[-1] >= next_base:
        return False
    if tindex.base_offset + tindex.relative_offsets[-1] >= next_base:
        return False
    return bool(len(index)) or seg.size <= 2 * index_interval + (1 << 20)


def _check_last_entry(seg: Segment, index: OffsetIndex) -> bool:
    if not len(index):
        return True
    position = index.positions[-1]
    try:
        with seg.handle() as fd:
            data = seg.fileops.pread(fd, BATCH_HEADER_SIZE, position)
        header = read_header(data)
    except (CorruptBatch, OSError):
        return False
    return header.last_offset == index.base_offset + index.relative_offsets[-1]


def _read_file(seg: Segment, path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def recover_segments(
    fileops: FileOps,
    directory: str,
    index_interval: int,
    *,
    clean: bool,
    recovery_point: int,
    epochs: EpochCache,
    handles: FdCache | None = None,
) -> tuple[list[Segment], list[SegmentRecovery], list[int], list[str]]:
    """Open every segment of a partition directory, oldest first, recovering each.

    Removes stray temp files and orphan indexes; trusts segments that end at or
    below ``recovery_point`` (all of them after a clean stop) and fully verifies the
    rest, cutting the log at the first bad batch and dropping later segments.
    Epochs seen while scanning are added to ``epochs``. Returns the segments kept,
    a report per segment, the base offsets dropped and the stray files removed.
    """
    removed_files: list[str] = finish_swaps(fileops, directory)
    bases: list[int] = []
    names = set(fileops.listdir(directory))
    for name in sorted(names):
        stem, _dot, suffix = name.partition(".")
        path = os.path.join(directory, name)
        if name.endswith((".tmp", ".deleted", ".cleaned", ".swap")):
            fileops.unlink(path)
            removed_files.append(name)
        elif (base := segment_base(name)) is not None:
            bases.append(base)
        elif "." + suffix in (INDEX_SUFFIX, TIMEINDEX_SUFFIX, TXNINDEX_SUFFIX) and (
            stem + LOG_SUFFIX not in names
        ):
            fileops.unlink(path)
            removed_files.append(name)
    interval = index_interval
    reports: list[SegmentRecovery] = []
    removed_segments: list[int] = []
    segments: list[Segment] = []
    cut = False
    seg: Segment | None = None
    try:
        for i, base in enumerate(bases):
            seg = Segment.open(fileops, directory, base, handles)
            if cut:
                seg.remove_files()
                removed_segments.append(base)
                continue
            next_base = bases[i + 1] if i + 1 < len(bases) else None
            trusted = clean or (next_base is not None and next_base <= recovery_point)
            file_size = seg.size
            loaded = load_trusted(seg, interval, next_base) if trusted else None
            if loaded is not None:
                (rebuilt, seen), reason = loaded, None
            else:
                trusted = False
                result = scan_segment(seg, interval, verify=True)
                rebuilt, seen, reason = True, result.epoch_starts, result.reason
                dense = result.dense
                if result.valid_end < file_size:
                    with seg.handle() as fd:
                        fileops.ftruncate(fd, result.valid_end)
                        fileops.fsync(fd)
                if next_base is not None and not _ends_at(seg, next_base, dense=dense):
                    reason = reason or (
                        f"segment ends at {seg.next_offset}, next starts {next_base}"
                    )
                elif next_base is not None and reason is None:
                    seg.next_offset = next_base
            for epoch, start in seen:
                epochs.assign(epoch, start)
            if reason is not None:
                cut = True
            if seg.size == 0 and segments:
                # An empty non-first segment (crash right after a roll) is dropped
                # unless it is the only way to express the log end offset (the
                # segment before it may end earlier when compaction cleaned its
                # last records; one that lost its tail has cut the log already).
                if next_base is None and segments[-1].next_offset <= base:
                    segments.append(seg)
                else:
                    seg.remove_files()
                    removed_segments.append(base)
            else:
                segments.append(seg)
            reports.append(
                SegmentRecovery(
                    base_offset=base,
                    scanned=not trusted,
                    index_rebuilt=rebuilt,
                    valid_bytes=seg.size,
                    truncated_bytes=file_size - seg.size,
                    reason=reason,
                )
            )
    except BaseException:
        # Nothing half-opened keeps a descriptor: the caller gets no segments.
        for opened in [*segments, seg]:
            if opened is not None:
                with contextlib.suppress(OSError):
                    opened.close()
        raise
    return segments, reports, removed_segments, removed_files
