"""Scanning a batch's records for keys, and rebuilding it from a subset (compaction).

Log compaction reads every record of a partition twice (the offset map, then the
rewrite), so it cannot afford :func:`protocol.record_builder.iter_records`' full
decode per record. :func:`scan_records` reads only what the cleaner needs from each
record (``DefaultRecord.java``: length, attributes, timestamp delta, offset delta,
key, value length; headers are skipped by the record length) and remembers where
each record's bytes are; :func:`rebuild_with` writes a batch holding a subset of
them by copying those bytes, with the original header's base offset, last offset
delta, timestamps and producer fields (``MemoryRecords.filterTo``): the timestamp
and offset deltas stay valid because the base timestamp and base offset do not
change. The codec stays the batch's (the records are compressed again).
"""

from __future__ import annotations

from typing import Final, NamedTuple

from protocol.compression import compress, decompress
from protocol.errors import ProtocolError
from protocol.records import (
    BATCH_HEADER_SIZE,
    COMPRESSION_MASK,
    LOG_OVERHEAD,
    BatchHeader,
    Buffer,
    CorruptBatch,
    pack_header,
    patch_crc,
    verify_batch,
)

__all__ = ["RecordSpan", "rebuild_with", "scan_keys", "scan_records"]

_CONTINUE: Final = 0x80


class RecordSpan(NamedTuple):
    """Where one record is in a batch's (decompressed) records section."""

    start: int
    end: int
    offset: int  # absolute
    key: bytes | None
    tombstone: bool  # null value


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """A zigzag varint at ``pos`` of more than one byte: (value, position after)."""
    raw = 0
    shift = 0
    while True:
        byte = data[pos]
        pos += 1
        raw |= (byte & 0x7F) << shift
        if byte < _CONTINUE:
            return (raw >> 1) ^ -(raw & 1), pos
        shift += 7
        if shift > 63:
            raise CorruptBatch("varint too long")


def _section(batch: Buffer, pos: int) -> tuple[BatchHeader, bytes]:
    header = verify_batch(batch, pos)
    try:
        codec = header.compression
    except ValueError:
        raise CorruptBatch(
            f"unknown codec {header.attributes & COMPRESSION_MASK}", position=pos
        ) from None
    section = memoryview(batch)[pos + BATCH_HEADER_SIZE : pos + header.size]
    try:
        return header, decompress(codec, section) if codec else bytes(section)
    except ProtocolError as exc:
        raise CorruptBatch(str(exc), position=pos) from exc


def scan_records(
    batch: Buffer, pos: int = 0
) -> tuple[BatchHeader, bytes, list[RecordSpan]]:
    """Verify the batch at ``pos`` (CRC, lengths) and locate its records: the
    header, the decompressed records section and one span per record.

    Raises:
        CorruptBatch: the batch or a record is malformed.
    """
    header, data = _section(batch, pos)
    spans: list[RecordSpan] = []
    _scan(header, data, pos, spans, None)
    return header, data, spans


def scan_keys(batch: Buffer, pos: int, offsets: dict[bytes, int]) -> bool:
    """Set ``offsets[key]`` to the offset of each keyed record of the batch at
    ``pos``, in order (so the last one wins); whether the batch holds a tombstone.

    Raises:
        CorruptBatch: the batch or a record is malformed.
    """
    header, data = _section(batch, pos)
    return _scan(header, data, pos, None, offsets)


def _scan(
    header: BatchHeader,
    data: bytes,
    pos: int,
    spans: list[RecordSpan] | None,
    offsets: dict[bytes, int] | None,
) -> bool:
    """Fill ``spans`` or ``offsets``; whether a record is a tombstone."""
    base = header.base_offset
    size = len(data)
    at = 0
    tombstone = False
    # Hot loop (every record of a compacted partition, twice per round): varints
    # of one byte, the usual case for all but the length fields, are read inline.
    try:
        for _ in range(header.record_count):
            byte = data[at]
            if byte < _CONTINUE:
                length, p = (byte >> 1) ^ -(byte & 1), at + 1
            else:
                length, p = _varint(data, at)
            end = p + length
            if length < 0 or end > size:
                raise CorruptBatch(f"record length {length} overruns", position=pos)
            p += 1  # attributes
            while data[p] >= _CONTINUE:  # timestamp delta: skipped
                p += 1
            byte = data[p + 1]
            if byte < _CONTINUE:
                delta, p = (byte >> 1) ^ -(byte & 1), p + 2
            else:
                delta, p = _varint(data, p + 1)
            byte = data[p]
            if byte < _CONTINUE:
                key_length, p = (byte >> 1) ^ -(byte & 1), p + 1
            else:
                key_length, p = _varint(data, p)
            key: bytes | None = None
            if key_length >= 0:
                key = data[p : p + key_length]
                p += key_length
            if p >= end:
                raise CorruptBatch("record fields overrun its length", position=pos)
            # value length: only its sign matters (-1, a tombstone, is 0x01)
            null = data[p] == 0x01
            tombstone = tombstone or null
            if spans is not None:
                spans.append(RecordSpan(at, end, base + delta, key, null))
            elif offsets is not None and key is not None:
                offsets[key] = base + delta
            at = end
    except IndexError:
        raise CorruptBatch("truncated record", position=pos) from None
    if at != size:
        raise CorruptBatch("bytes left after the last record", position=pos)
    return tombstone


def rebuild_with(header: BatchHeader, data: bytes, spans: list[RecordSpan]) -> bytes:
    """The batch ``header`` describes holding only the records of ``spans`` (from
    ``data``, its records section), their bytes copied; an empty ``spans`` gives
    an empty batch that still names its last offset (Kafka keeps such a batch when
    it is a producer's last)."""
    body = b"".join(data[s.start : s.end] for s in spans)
    attributes = header.attributes
    if spans and header.compression:
        payload = compress(header.compression, body)
    else:
        payload = body
        attributes &= ~COMPRESSION_MASK  # nothing to decompress in an empty batch
    out = bytearray(BATCH_HEADER_SIZE)
    pack_header(
        out,
        BatchHeader(
            header.base_offset,
            BATCH_HEADER_SIZE - LOG_OVERHEAD + len(payload),
            header.partition_leader_epoch,
            2,
            0,
            attributes,
            header.last_offset_delta,
            header.base_timestamp,
            header.max_timestamp,
            header.producer_id,
            header.producer_epoch,
            header.base_sequence,
            len(spans),
        ),
    )
    out += payload
    patch_crc(out)
    return bytes(out)
