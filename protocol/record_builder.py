"""Building v2 record batches and reading the records inside them (the cold path).

The CLI, the client library, tests and snapshot tools build batches
(:func:`build_batch`, :func:`build_control_batch`) and walk their records
(:func:`iter_records`); the produce and fetch paths never do. The batch header, its
CRC and in-place patching are :mod:`protocol.records`, which this module uses and
which never imports it.

Each record (``DefaultRecord.java``)::

    length varint, attributes int8, timestamp_delta varlong, offset_delta varint,
    key_length varint (-1 = null), key, value_length varint (-1 = null), value,
    header_count varint, then per header: key_length varint, utf-8 key,
    value_length varint (-1 = null), value
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from protocol.compression import Compression, compress, decompress
from protocol.errors import ProtocolError
from protocol.records import (
    BATCH_HEADER_SIZE,
    COMPRESSION_MASK,
    CONTROL_BIT,
    DELETE_HORIZON_BIT,
    LOG_OVERHEAD,
    TIMESTAMP_TYPE_BIT,
    TRANSACTIONAL_BIT,
    BatchHeader,
    Buffer,
    CorruptBatch,
    RecordBatchError,
    TimestampType,
    pack_header,
    patch_crc,
    verify_batch,
)

__all__ = [
    "ControlType",
    "Header",
    "Record",
    "RecordInput",
    "build_batch",
    "build_control_batch",
    "control_type",
    "iter_record_keys",
    "iter_records",
    "rebuild_batch",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Header:
    """One record header: a UTF-8 key and a nullable byte value."""

    key: str
    value: bytes | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Record:
    """One record decoded from a batch, with its absolute offset and timestamp."""

    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[Header, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordInput:
    """A record to put in a batch; its offset delta is its index in the batch.

    ``timestamp`` is in milliseconds; ``None`` means the time of :func:`build_batch`.
    """

    key: bytes | None = None
    value: bytes | None = None
    headers: tuple[Header, ...] = ()
    timestamp: int | None = None


def _put_varint(out: bytearray, value: int) -> None:
    """Append a zigzag varint/varlong (protobuf style, as ByteUtils.writeVarlong)."""
    z = (value << 1) ^ (value >> 63)
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)


def _put_bytes(out: bytearray, data: bytes | None) -> None:
    if data is None:
        out.append(0x01)  # zigzag(-1)
    else:
        _put_varint(out, len(data))
        out += data


def _encode_record(
    out: bytearray, record: RecordInput, offset_delta: int, timestamp_delta: int
) -> None:
    body = bytearray(b"\x00")  # attributes: unused, always 0
    _put_varint(body, timestamp_delta)
    _put_varint(body, offset_delta)
    _put_bytes(body, record.key)
    _put_bytes(body, record.value)
    _put_varint(body, len(record.headers))
    for header in record.headers:
        _put_bytes(body, header.key.encode())
        _put_bytes(body, header.value)
    _put_varint(out, len(body))
    out += body


def build_batch(
    records: Sequence[RecordInput],
    *,
    base_offset: int = 0,
    compression: Compression = Compression.NONE,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    partition_leader_epoch: int = -1,
    is_transactional: bool = False,
    is_control: bool = False,
    timestamp_type: TimestampType = TimestampType.CREATE_TIME,
    base_timestamp: int | None = None,
) -> bytes:
    """Encode ``records`` as one v2 batch (``DefaultRecordBatch.writeHeader``).

    The base timestamp defaults to the first record's timestamp, as the Java client
    does; ``max_timestamp`` is the largest record timestamp.

    Raises:
        RecordBatchError: ``records`` is empty.
    """
    if not records:
        raise RecordBatchError("a batch needs at least one record")
    now = time.time_ns() // 1_000_000
    stamps = [now if r.timestamp is None else r.timestamp for r in records]
    base_ts = stamps[0] if base_timestamp is None else base_timestamp
    body = bytearray()
    for delta, (record, stamp) in enumerate(zip(records, stamps, strict=True)):
        _encode_record(body, record, delta, stamp - base_ts)
    payload = compress(compression, body)
    attributes = (
        int(compression)
        | (TIMESTAMP_TYPE_BIT if timestamp_type == TimestampType.LOG_APPEND_TIME else 0)
        | (TRANSACTIONAL_BIT if is_transactional else 0)
        | (CONTROL_BIT if is_control else 0)
    )
    out = bytearray(BATCH_HEADER_SIZE)
    header = BatchHeader(
        base_offset,
        BATCH_HEADER_SIZE - LOG_OVERHEAD + len(payload),
        partition_leader_epoch,
        2,  # magic
        0,  # crc, filled below
        attributes,
        len(records) - 1,
        base_ts,
        max(stamps),
        producer_id,
        producer_epoch,
        base_sequence,
        len(records),
    )
    pack_header(out, header)
    out += payload
    patch_crc(out)
    return bytes(out)


def rebuild_batch(
    header: BatchHeader,
    records: Sequence[Record],
    *,
    delete_horizon: int | None = None,
) -> bytes:
    """The batch ``header`` describes, holding only ``records`` (log compaction).

    Kafka's ``MemoryRecords.filterTo``: the base offset, last offset delta,
    producer id, epoch and base sequence stay, so the batch still ends where it
    did and still tells the producer's last sequence even when ``records`` is
    empty (an empty batch is kept for that reason). Offset deltas stay each
    record's own; the codec stays the batch's. ``delete_horizon`` (KIP-534) sets
    the delete-horizon attribute and stores the horizon as the base timestamp, the
    records' timestamp deltas counting from it.
    """
    append_time = header.timestamp_type == TimestampType.LOG_APPEND_TIME
    if delete_horizon is not None:
        base_ts = delete_horizon
    elif records and not append_time:
        base_ts = records[0].timestamp
    else:
        base_ts = header.base_timestamp
    body = bytearray()
    for record in records:
        stamp = header.max_timestamp if append_time else record.timestamp
        _encode_record(
            body,
            RecordInput(key=record.key, value=record.value, headers=record.headers),
            record.offset - header.base_offset,
            stamp - base_ts,
        )
    codec = header.compression
    payload = compress(codec, body) if records else b""
    attributes = header.attributes & ~DELETE_HORIZON_BIT
    if delete_horizon is not None:
        attributes |= DELETE_HORIZON_BIT
    if append_time or not records:
        max_ts = header.max_timestamp
    else:
        max_ts = max(r.timestamp for r in records)
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
            base_ts,
            max_ts,
            header.producer_id,
            header.producer_epoch,
            header.base_sequence,
            len(records),
        ),
    )
    out += payload
    patch_crc(out)
    return bytes(out)


class ControlType(IntEnum):
    """Control record type (key of a control record; ``ControlRecordType.java``)."""

    ABORT = 0
    COMMIT = 1


_CONTROL_KEY: Final = struct.Struct(">hh")  # version (0), type
_MARKER_VALUE: Final = struct.Struct(">hi")  # version (0), coordinator_epoch


def build_control_batch(
    control_type: ControlType,
    *,
    producer_id: int,
    producer_epoch: int,
    coordinator_epoch: int = 0,
    base_offset: int = 0,
    partition_leader_epoch: int = -1,
    timestamp: int | None = None,
) -> bytes:
    """A transaction marker batch (``EndTransactionMarker.java``): one control record."""
    marker = RecordInput(
        key=_CONTROL_KEY.pack(0, control_type),
        value=_MARKER_VALUE.pack(0, coordinator_epoch),
        timestamp=timestamp,
    )
    return build_batch(
        [marker],
        base_offset=base_offset,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        partition_leader_epoch=partition_leader_epoch,
        is_transactional=True,
        is_control=True,
    )


def control_type(record: Record) -> ControlType:
    """Type of a record read from a control batch.

    Raises:
        RecordBatchError: the key is not a known control record key.
    """
    if record.key is None or len(record.key) < _CONTROL_KEY.size:
        raise RecordBatchError("control record without a 4-byte key")
    _, kind = _CONTROL_KEY.unpack_from(record.key)
    try:
        return ControlType(kind)
    except ValueError:
        raise RecordBatchError(f"unknown control record type {kind}") from None


class _Reader:
    """Cursor over decoded record bytes; every read raises CorruptBatch on overrun."""

    __slots__ = ("data", "pos", "where")

    def __init__(self, data: bytes, where: int) -> None:
        self.data = data
        self.pos = 0
        self.where = where

    def varint(self) -> int:
        data, pos, shift, z = self.data, self.pos, 0, 0
        while True:
            if pos >= len(data):
                raise CorruptBatch("truncated varint in records", position=self.where)
            byte = data[pos]
            pos += 1
            z |= (byte & 0x7F) << shift
            if not byte & 0x80:
                break
            shift += 7
            if shift > 63:
                raise CorruptBatch("varint longer than 10 bytes", position=self.where)
        self.pos = pos
        return (z >> 1) ^ -(z & 1)

    def take(self, length: int) -> bytes:
        end = self.pos + length
        if length < 0 or end > len(self.data):
            raise CorruptBatch("record field overruns its batch", position=self.where)
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def nullable_bytes(self) -> bytes | None:
        length = self.varint()
        if length == -1:
            return None
        return self.take(length)


def iter_record_keys(
    batch: Buffer, header: BatchHeader, pos: int = 0
) -> Iterator[tuple[int, int, int]]:
    """``(offset, timestamp, key length)`` of each record of a batch that passed
    :func:`verify_batch` (``header`` is its header; key length -1: no key),
    reading only those fields: keys, values and headers are skipped, not copied
    (the broker's per-record produce checks, storage.record_rules).

    Raises:
        CorruptBatch: the codec is unknown or the records are malformed.
    """
    try:
        codec = header.compression
    except ValueError:
        raise CorruptBatch(
            f"unknown codec {header.attributes & COMPRESSION_MASK}", position=pos
        ) from None
    section = memoryview(batch)[pos + BATCH_HEADER_SIZE : pos + header.size]
    try:
        data = decompress(codec, section)
    except ProtocolError as exc:
        raise CorruptBatch(str(exc), position=pos) from exc
    reader = _Reader(data, pos)
    append_time = header.timestamp_type == TimestampType.LOG_APPEND_TIME
    size = len(data)
    for _ in range(header.record_count):
        length = reader.varint()
        end = reader.pos + length
        if length < 0 or end > size:
            raise CorruptBatch(f"record length {length} overruns", position=pos)
        reader.pos += 1  # attributes: unused
        timestamp_delta = reader.varint()
        offset_delta = reader.varint()
        key_length = reader.varint()
        if key_length < -1 or reader.pos > end:
            raise CorruptBatch("record fields overrun the record", position=pos)
        yield (
            header.base_offset + offset_delta,
            header.max_timestamp
            if append_time
            else header.base_timestamp + timestamp_delta,
            key_length,
        )
        reader.pos = end
    if reader.pos != size:
        raise CorruptBatch("bytes left after the last record", position=pos)


def iter_records(batch: Buffer, pos: int = 0) -> Iterator[Record]:
    """Verify the batch at ``pos``, decompress it and yield its records.

    Log-append-time batches give every record the batch's max_timestamp, as Kafka's
    ``DefaultRecordBatch`` does.

    Raises:
        CorruptBatch: the batch fails :func:`verify_batch` or its records are malformed.
    """
    header = verify_batch(batch, pos)
    try:
        codec = header.compression
    except ValueError:
        raise CorruptBatch(
            f"unknown codec {header.attributes & COMPRESSION_MASK}", position=pos
        ) from None
    section = memoryview(batch)[pos + BATCH_HEADER_SIZE : pos + header.size]
    try:
        data = decompress(codec, section)
    except ProtocolError as exc:
        raise CorruptBatch(str(exc), position=pos) from exc
    reader = _Reader(data, pos)
    append_time = header.timestamp_type == TimestampType.LOG_APPEND_TIME
    for _ in range(header.record_count):
        length = reader.varint()
        end = reader.pos + length
        if length < 0 or end > len(data):
            raise CorruptBatch(f"record length {length} overruns", position=pos)
        reader.pos += 1  # attributes: unused
        timestamp_delta = reader.varint()
        offset_delta = reader.varint()
        key = reader.nullable_bytes()
        value = reader.nullable_bytes()
        count = reader.varint()
        if count < 0:
            raise CorruptBatch(f"negative header count {count}", position=pos)
        headers = []
        for _ in range(count):
            key_length = reader.varint()
            try:
                header_key = reader.take(key_length).decode()
            except UnicodeDecodeError as exc:
                raise CorruptBatch("header key is not utf-8", position=pos) from exc
            headers.append(Header(key=header_key, value=reader.nullable_bytes()))
        if reader.pos != end:
            raise CorruptBatch("record length disagrees with its fields", position=pos)
        yield Record(
            offset=header.base_offset + offset_delta,
            timestamp=header.max_timestamp
            if append_time
            else header.base_timestamp + timestamp_delta,
            key=key,
            value=value,
            headers=tuple(headers),
        )
    if reader.pos != len(data):
        raise CorruptBatch("bytes left after the last record", position=pos)
