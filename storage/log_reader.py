"""The partition log's read path: whole batches by offset, and offsets by time.

Pure functions over a partition's segments (oldest first, the last one active), in
the manner of Redpanda's ``log_reader`` and ``timequery``. ``PartitionLog`` calls
them with its lock held and its state passed in; they never change the log.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from protocol.record_builder import iter_records
from protocol.records import BatchHeader, RecordBatchError
from storage.log_types import ReadResult
from storage.segment import Segment
from storage.segment_set import SegmentSet


def read_batches(
    segments: SegmentSet,
    offset: int,
    max_bytes: int,
    end_offset: int,
    *,
    mmap: bool,
    min_one: bool = True,
) -> ReadResult:
    """Whole batches from the one holding ``offset``, at most ``max_bytes``, never
    past ``end_offset``. ``min_one``: the first batch is returned even when larger
    than ``max_bytes`` (Kafka's ``minOneMessage``), else nothing is. ``mmap``:
    zero-copy views of the segment file, else bytes copies."""
    if offset < end_offset:
        for seg in segments.from_offset(offset):
            if seg.next_offset > offset:
                found = seg.find(offset)
                if found is not None:
                    return _read_from(
                        seg, found, max_bytes, end_offset, mmap=mmap, min_one=min_one
                    )
    return ReadResult(buffers=[], size=0, first_offset=-1, next_offset=offset)


def _read_from(
    seg: Segment,
    found: tuple[int, BatchHeader],
    max_bytes: int,
    end_offset: int,
    *,
    mmap: bool,
    min_one: bool,
) -> ReadResult:
    pos, header = found
    if header.next_offset > end_offset or (not min_one and header.size > max_bytes):
        return ReadResult(
            buffers=[], size=0, first_offset=-1, next_offset=header.base_offset
        )
    boundary = seg.find(end_offset) if end_offset < seg.next_offset else None
    if boundary is None:
        # (a compacted segment may hold no batch from end_offset on: a gap)
        limit_pos, limit_offset = seg.size, min(end_offset, seg.next_offset)
    else:
        limit_pos, limit_offset = boundary[0], boundary[1].base_offset
    stop, next_offset = pos + header.size, header.next_offset
    if limit_pos - pos <= max_bytes:
        stop, next_offset = limit_pos, limit_offset
    else:
        bound = pos + max_bytes
        # Index positions are batch starts: everything before the last indexed
        # position <= bound fits, so the scan starts there.
        scan_from = max(seg.index.lookup_position(bound), stop)
        for p, h in seg.iter_headers(scan_from, limit_pos):
            if p + h.size > bound:
                if p > stop:
                    stop, next_offset = p, h.base_offset
                break
            stop, next_offset = p + h.size, h.next_offset
    data = seg.view(pos, stop - pos) if mmap else seg.read_bytes(pos, stop - pos)
    return ReadResult(
        buffers=[data],
        size=len(data),
        first_offset=header.base_offset,
        next_offset=next_offset,
    )


def offset_for_timestamp(
    segments: Iterable[Segment], log_start: int, timestamp_ms: int
) -> tuple[int, int] | None:
    """ListOffsets by time: (offset, timestamp) of the first record at or after
    ``log_start`` whose timestamp is >= ``timestamp_ms``; None if there is none.

    The time index finds the batch; only that batch's records are decoded.
    """
    for seg in segments:
        if seg.max_timestamp < timestamp_ms or seg.next_offset <= log_start:
            continue
        before = seg.time_index.offset_before(timestamp_ms)
        start = seg.index.lookup(before) if before is not None else 0
        for pos, header in seg.iter_headers(start):
            if header.max_timestamp >= timestamp_ms and header.last_offset >= log_start:
                found = _first_record(
                    seg, pos, header, log_start, lambda ts: ts >= timestamp_ms
                )
                if found is not None:
                    return found
    return None


def max_timestamp_offset(
    segments: Iterable[Segment], log_start: int
) -> tuple[int, int]:
    """ListOffsets -3: (offset, timestamp) of the first record with the largest
    timestamp at or after ``log_start``; (-1, -1) if the log is empty."""
    best: Segment | None = None
    for seg in segments:
        if seg.next_offset > log_start and (
            best is None or seg.max_timestamp > best.max_timestamp
        ):
            best = seg
    if best is None or best.max_timestamp < 0:
        return -1, -1
    found = best.find(max(best.max_timestamp_offset, log_start))
    if found is None:
        return -1, -1
    top = best.max_timestamp
    record = _first_record(best, found[0], found[1], log_start, lambda ts: ts >= top)
    return record or (max(found[1].base_offset, log_start), top)


def _first_record(
    seg: Segment,
    pos: int,
    header: BatchHeader,
    log_start: int,
    wanted: Callable[[int], bool],
) -> tuple[int, int] | None:
    """First record of a batch at or after ``log_start`` whose timestamp is
    ``wanted``; batch granularity if its records cannot be decoded."""
    try:
        for record in iter_records(seg.view(pos, header.size)):
            if record.offset >= log_start and wanted(record.timestamp):
                return record.offset, record.timestamp
    except RecordBatchError:
        return max(header.base_offset, log_start), header.max_timestamp
    return None
