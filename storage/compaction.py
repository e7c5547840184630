"""Log compaction, record by record: the offset map and what a cleaned batch keeps.

Kafka's ``LogCleaner`` in two pure steps over record batches (bytes in, bytes out):

1. :func:`add_to_offset_map` reads the *dirty* part of a log (from the first offset
   not yet cleaned to the first uncleanable one) and remembers the last offset of
   every key (Kafka's ``SkimpyOffsetMap``; here a dict of key bytes).
2. :func:`clean_batch` rewrites one batch of the cleaned range: a record stays if
   it is the latest of its key (its offset is at or past the map's, or its key is
   not in the dirty part at all), and a tombstone (null value) stays until its
   delete horizon (KIP-534: the horizon is ``delete.retention.ms`` after the
   first cleaning that saw it, kept in the batch header). Records without a key
   cannot be compacted and are dropped, as Kafka drops them.

A batch keeps its base offset, last offset delta, producer id, epoch and base
sequence (``MemoryRecords.filterTo``), so offsets are never reused and gaps appear
instead. A batch that loses every record is dropped, unless it is the last batch
of its producer in the log: then its header stays, with no records, so that
producer's last sequence survives a restart (Kafka retains such empty batches for
idempotence). Transactions (aborted data, markers) are storage/cleaner_txns.py's.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.record_builder import iter_records, rebuild_batch
from protocol.record_scan import RecordSpan, rebuild_with, scan_keys, scan_records
from protocol.records import BatchHeader, Buffer

__all__ = [
    "BatchOutcome",
    "CleanStats",
    "add_to_offset_map",
    "clean_batch",
]


@dataclass(slots=True)
class CleanStats:
    """What a cleaning round did (for the status, metrics and logs)."""

    bytes_read: int = 0
    bytes_written: int = 0
    records_read: int = 0
    records_removed: int = 0
    tombstones_removed: int = 0
    batches_emptied: int = 0  # kept as empty headers (a producer's last batch)
    markers_removed: int = 0  # COMMIT/ABORT markers past their delete horizon
    # the earliest delete horizon of a tombstone still kept (-1: none)
    next_delete_horizon: int = -1

    def saw_horizon(self, horizon: int) -> None:
        """A kept tombstone expires at ``horizon``."""
        if self.next_delete_horizon < 0 or horizon < self.next_delete_horizon:
            self.next_delete_horizon = horizon


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """What became of one batch: ``data`` to write (None: dropped), and whether it
    is the original bytes (``verbatim``)."""

    data: Buffer | None
    verbatim: bool


def add_to_offset_map(offsets: dict[bytes, int], buf: Buffer, pos: int) -> bool:
    """Record the last offset of every key in the batch at ``pos``; whether it
    holds a tombstone. Control batches hold no data keys: callers skip them."""
    return scan_keys(buf, pos, offsets)


def clean_batch(
    buf: Buffer,
    pos: int,
    header: BatchHeader,
    offsets: dict[bytes, int],
    *,
    now_ms: int,
    delete_retention_ms: int,
    producer_last: bool,
    stats: CleanStats,
) -> BatchOutcome:
    """The cleaned form of the (data) batch at ``pos``.

    ``offsets``: the offset map of the dirty part; ``producer_last``: the batch is
    the newest of its producer in the whole log (an emptied one keeps its header).
    Kept records are copied as they are; only a batch whose tombstones get their
    delete horizon now is decoded and encoded again (its timestamp deltas then
    count from the horizon, KIP-534).
    """
    _, data, spans = scan_records(buf, pos)
    horizon = header.base_timestamp if header.has_delete_horizon else None
    expired = horizon is not None and now_ms >= horizon
    kept: list[RecordSpan] = []
    tombstones = 0
    latest = offsets.get
    for span in spans:
        key = span[3]
        if key is None or latest(key, -1) > span[2]:
            continue
        if span[4]:  # a tombstone
            if expired:
                stats.tombstones_removed += 1
                continue
            tombstones += 1
        kept.append(span)
    removed = len(spans) - len(kept)
    stats.records_read += len(spans)
    stats.records_removed += removed
    if tombstones:
        if horizon is None:
            return _stamp_horizon(
                buf, pos, header, kept, now_ms + delete_retention_ms, stats
            )
        stats.saw_horizon(horizon)
    if not removed:
        return BatchOutcome(
            data=memoryview(buf)[pos : pos + header.size], verbatim=True
        )
    if not kept:
        if not producer_last:
            return BatchOutcome(data=None, verbatim=False)
        stats.batches_emptied += 1
    return BatchOutcome(data=rebuild_with(header, data, kept), verbatim=False)


def _stamp_horizon(
    buf: Buffer,
    pos: int,
    header: BatchHeader,
    kept: list[RecordSpan],
    horizon: int,
    stats: CleanStats,
) -> BatchOutcome:
    """Rebuild a batch whose kept tombstones get their delete horizon now."""
    stats.saw_horizon(horizon)
    wanted = {span.offset for span in kept}
    records = [r for r in iter_records(buf, pos) if r.offset in wanted]
    return BatchOutcome(
        data=rebuild_batch(header, records, delete_horizon=horizon), verbatim=False
    )
