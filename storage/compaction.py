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
idempotence). Control batches are kept as they are; transactions do not exist yet
(:func:`keep_control_batch` is where aborted data and old markers would be
removed, ``LogCleaner.shouldDiscardBatch``).
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.record_builder import Record, iter_records, rebuild_batch
from protocol.records import BatchHeader, Buffer

__all__ = [
    "BatchOutcome",
    "CleanStats",
    "add_to_offset_map",
    "clean_batch",
    "keep_control_batch",
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


def keep_control_batch(header: BatchHeader) -> bool:
    """Whether a control batch survives cleaning: always, for now.

    Hook for transactions (KIP-98): Kafka removes a COMMIT/ABORT marker once no
    data of its transaction remains and its delete horizon has passed, and the
    records of aborted transactions with it.
    """
    del header
    return True


def add_to_offset_map(offsets: dict[bytes, int], buf: Buffer, pos: int) -> int:
    """Record the last offset of every key in the batch at ``pos``; returns the
    number of records read. Control batches hold no data keys and are skipped."""
    count = 0
    for record in iter_records(buf, pos):
        count += 1
        if record.key is not None:
            offsets[record.key] = record.offset
    return count


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
    """
    horizon = header.base_timestamp if header.has_delete_horizon else None
    expired = horizon is not None and now_ms >= horizon
    kept: list[Record] = []
    removed = 0
    tombstones = 0
    for record in iter_records(buf, pos):
        stats.records_read += 1
        key = record.key
        if key is None or offsets.get(key, -1) > record.offset:
            removed += 1
            continue
        if record.value is None:
            if expired:
                removed += 1
                stats.tombstones_removed += 1
                continue
            tombstones += 1
        kept.append(record)
    stats.records_removed += removed
    new_horizon: int | None = None
    if tombstones:
        new_horizon = horizon if horizon is not None else now_ms + delete_retention_ms
        stats.saw_horizon(new_horizon)
    if not removed and new_horizon == horizon:
        return BatchOutcome(
            data=memoryview(buf)[pos : pos + header.size], verbatim=True
        )
    if not kept:
        if not producer_last:
            return BatchOutcome(data=None, verbatim=False)
        stats.batches_emptied += 1
    return BatchOutcome(
        data=rebuild_batch(header, kept, delete_horizon=new_horizon), verbatim=False
    )
