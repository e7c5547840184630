"""Kafka v2 record batches (magic 2): the one parser of the batch header.

Kafka's on-disk format is its wire format, so storage and the broker both use this
module and nothing else to look at record batches. The hot path (produce, fetch,
recovery) only reads the 61-byte header, checks the CRC and patches the base offset
in place; it never walks or decompresses records. Walking records (:func:`iter_records`)
and building batches (:func:`build_batch`) are for the CLI, tests and snapshot tools.

Batch layout (big-endian; Kafka ``DefaultRecordBatch.java``, KIP-98)::

    offset  size  field
         0     8  base_offset              \\  LOG_OVERHEAD (12): not part of batch_length
         8     4  batch_length             /  (bytes after this field)
        12     4  partition_leader_epoch   \\  not covered by the CRC: patchable
        16     1  magic (= 2)
        17     4  crc (CRC32C, unsigned)      over bytes 21 .. end of batch
        21     2  attributes               bits 0-2 codec, 3 timestamp type,
                                           4 transactional, 5 control, 6 delete horizon
        23     4  last_offset_delta
        27     8  base_timestamp
        35     8  max_timestamp
        43     8  producer_id
        51     2  producer_epoch
        53     4  base_sequence
        57     4  record_count
        61     -  records (compressed as a whole when the codec is not NONE)

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

import crc32c as _crc32c

from protocol.compression import Compression, compress, decompress
from protocol.errors import ProtocolError

__all__ = [
    "BATCH_HEADER_SIZE",
    "CRC_OFFSET",
    "CRC_START",
    "LOG_OVERHEAD",
    "MAGIC_OFFSET",
    "BatchHeader",
    "Buffer",
    "Compression",
    "ControlType",
    "CorruptBatch",
    "Header",
    "Record",
    "RecordBatchError",
    "RecordInput",
    "TimestampType",
    "WritableBuffer",
    "build_batch",
    "build_control_batch",
    "compress",
    "control_type",
    "crc_of",
    "decompress",
    "iter_batches",
    "iter_records",
    "patch_base_offset",
    "patch_leader_epoch",
    "read_header",
    "split_complete",
    "verify_batch",
    "with_base_offset",
]

BATCH_HEADER_SIZE: Final = 61
LOG_OVERHEAD: Final = 12
MAGIC_OFFSET: Final = 16
CRC_OFFSET: Final = 17
CRC_START: Final = 21  # the CRC covers attributes .. end of batch
_LEADER_EPOCH_OFFSET: Final = 12
# Smallest legal batch_length: the header after the length field, with no records.
_MIN_BATCH_LENGTH: Final = BATCH_HEADER_SIZE - LOG_OVERHEAD
# Smallest encoded record: length(1) attrs(1) ts(1) offset(1) key(1) value(1) headers(1).
_MIN_RECORD_SIZE: Final = 7

_HEADER: Final = struct.Struct(
    ">"
    "q"  # base_offset
    "i"  # batch_length
    "i"  # partition_leader_epoch
    "b"  # magic
    "I"  # crc (unsigned)
    "h"  # attributes
    "i"  # last_offset_delta
    "q"  # base_timestamp
    "q"  # max_timestamp
    "q"  # producer_id
    "h"  # producer_epoch
    "i"  # base_sequence
    "i"  # record_count
)
_INT64: Final = struct.Struct(">q")
_INT32: Final = struct.Struct(">i")
_UINT32: Final = struct.Struct(">I")

_COMPRESSION_MASK: Final = 0x07
_TIMESTAMP_TYPE_BIT: Final = 0x08
_TRANSACTIONAL_BIT: Final = 0x10
_CONTROL_BIT: Final = 0x20
_DELETE_HORIZON_BIT: Final = 0x40

Buffer = bytes | bytearray | memoryview
WritableBuffer = bytearray | memoryview


class RecordBatchError(ProtocolError):
    """A record batch could not be read, built or decoded."""


class CorruptBatch(RecordBatchError):
    """A batch is damaged: bad CRC, bad length, bad magic, truncated or undecodable.

    ``position`` is the byte position of the batch in the buffer, when known.
    """

    def __init__(self, message: str, *, position: int | None = None) -> None:
        super().__init__(message if position is None else f"{message} at {position}")
        self.position = position


class TimestampType(IntEnum):
    """Attribute bit 3: who set the record timestamps."""

    CREATE_TIME = 0
    LOG_APPEND_TIME = 1


@dataclass(frozen=True, slots=True)
class BatchHeader:
    """The 61-byte header of a v2 record batch, as read (not validated).

    Fields are in wire order, so ``BatchHeader(*_HEADER.unpack(...))`` builds one
    (positional on purpose: this is the one value built on the produce path).
    """

    base_offset: int
    batch_length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    record_count: int

    @property
    def last_offset(self) -> int:
        """Offset of the batch's last record (kept even when compaction removed it)."""
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self) -> int:
        """Offset the next batch in the log starts at."""
        return self.base_offset + self.last_offset_delta + 1

    @property
    def size(self) -> int:
        """Whole batch size in bytes, LOG_OVERHEAD included."""
        return self.batch_length + LOG_OVERHEAD

    @property
    def compression(self) -> Compression:
        """Codec of the records section (raises ValueError for codec 5-7)."""
        return Compression(self.attributes & _COMPRESSION_MASK)

    @property
    def timestamp_type(self) -> TimestampType:
        """Whether timestamps are create time or log-append time."""
        return TimestampType((self.attributes & _TIMESTAMP_TYPE_BIT) >> 3)

    @property
    def is_transactional(self) -> bool:
        """Whether the batch belongs to a transaction (KIP-98)."""
        return bool(self.attributes & _TRANSACTIONAL_BIT)

    @property
    def is_control(self) -> bool:
        """Whether the batch holds control records (commit/abort markers)."""
        return bool(self.attributes & _CONTROL_BIT)

    @property
    def has_delete_horizon(self) -> bool:
        """Whether base_timestamp is the delete horizon (KIP-534)."""
        return bool(self.attributes & _DELETE_HORIZON_BIT)

    @property
    def is_idempotent(self) -> bool:
        """Whether the batch carries a producer id (idempotent or transactional)."""
        return self.producer_id >= 0


def read_header(buf: Buffer, pos: int = 0) -> BatchHeader:
    """Read the batch header at ``pos`` without validating anything but its length.

    Raises:
        CorruptBatch: fewer than 61 bytes are available at ``pos``.
    """
    if pos < 0 or len(buf) - pos < BATCH_HEADER_SIZE:
        raise CorruptBatch("truncated batch header", position=pos)
    return BatchHeader(*_HEADER.unpack_from(buf, pos))


def crc_of(buf: Buffer, pos: int = 0, size: int | None = None) -> int:
    """CRC32C of the batch at ``pos``, over attributes .. end of batch.

    ``size`` is the whole batch size (LOG_OVERHEAD included); by default it is read
    from the batch_length field. No copy is made.
    """
    if size is None:
        if len(buf) - pos < LOG_OVERHEAD:
            raise CorruptBatch("truncated batch header", position=pos)
        size = _INT32.unpack_from(buf, pos + 8)[0] + LOG_OVERHEAD
    if size < BATCH_HEADER_SIZE or pos + size > len(buf):
        raise CorruptBatch(f"batch size {size} does not fit", position=pos)
    view = memoryview(buf)[pos + CRC_START : pos + size]
    return int(_crc32c.crc32c(view))


def verify_batch(buf: Buffer, pos: int = 0) -> BatchHeader:
    """Read the batch at ``pos`` and check it is whole and intact.

    Checks magic == 2, batch_length (at least 49 and inside ``buf``), the CRC32C,
    record_count >= 0 and last_offset_delta against record_count.

    Raises:
        CorruptBatch: any check fails.
    """
    header = read_header(buf, pos)
    if header.magic != 2:
        raise CorruptBatch(f"magic {header.magic} is not 2", position=pos)
    if header.batch_length < _MIN_BATCH_LENGTH:
        raise CorruptBatch(
            f"batch_length {header.batch_length} too small", position=pos
        )
    if pos + header.size > len(buf):
        raise CorruptBatch(
            f"batch of {header.size} bytes truncated to {len(buf) - pos}", position=pos
        )
    actual = crc_of(buf, pos, header.size)
    if actual != header.crc:
        raise CorruptBatch(
            f"crc mismatch: header {header.crc:#010x}, data {actual:#010x}",
            position=pos,
        )
    count = header.record_count
    if count < 0:
        raise CorruptBatch(f"negative record_count {count}", position=pos)
    # Compaction may drop records but keeps last_offset_delta, so the count can only
    # be lower than the span; an empty batch (count 0) still names its last offset.
    if header.last_offset_delta < 0 or count > header.last_offset_delta + 1:
        raise CorruptBatch(
            f"last_offset_delta {header.last_offset_delta} with {count} records",
            position=pos,
        )
    if (
        header.attributes & _COMPRESSION_MASK == Compression.NONE
        and count * _MIN_RECORD_SIZE > header.batch_length - _MIN_BATCH_LENGTH
    ):
        raise CorruptBatch(
            f"{count} records cannot fit in {header.batch_length} bytes", position=pos
        )
    return header


def iter_batches(buf: Buffer, pos: int = 0) -> Iterator[tuple[int, BatchHeader]]:
    """Yield ``(position, header)`` for each complete batch in ``buf`` from ``pos``.

    Stops without error at a trailing partial batch (torn tail). Does not check CRCs
    (use :func:`verify_batch`), but a length or magic that cannot be a batch raises,
    since no later batch boundary can be trusted after it.

    Raises:
        CorruptBatch: batch_length below 49 or magic not 2.
    """
    end = len(buf)
    while end - pos >= BATCH_HEADER_SIZE:
        header = read_header(buf, pos)
        if header.batch_length < _MIN_BATCH_LENGTH:
            raise CorruptBatch(
                f"batch_length {header.batch_length} too small", position=pos
            )
        if header.magic != 2:
            raise CorruptBatch(f"magic {header.magic} is not 2", position=pos)
        size = header.batch_length + LOG_OVERHEAD
        if pos + size > end:
            return
        yield pos, header
        pos += size


def split_complete(buf: Buffer) -> int:
    """Number of leading bytes of ``buf`` that form complete batches.

    The rest, if any, is a torn tail. Raises :class:`CorruptBatch` as
    :func:`iter_batches` does.
    """
    end = 0
    for pos, header in iter_batches(buf):
        end = pos + header.batch_length + LOG_OVERHEAD
    return end


def patch_base_offset(buf: WritableBuffer, base_offset: int, pos: int = 0) -> None:
    """Overwrite the base_offset of the batch at ``pos`` in place (not CRC-covered)."""
    _INT64.pack_into(buf, pos, base_offset)


def patch_leader_epoch(buf: WritableBuffer, epoch: int, pos: int = 0) -> None:
    """Overwrite the partition_leader_epoch of the batch at ``pos`` in place."""
    _INT32.pack_into(buf, pos + _LEADER_EPOCH_OFFSET, epoch)


def with_base_offset(batch: Buffer, base_offset: int) -> bytes:
    """Copy of ``batch`` with its base_offset replaced (one copy; CRC stays valid)."""
    if len(batch) < LOG_OVERHEAD:
        raise CorruptBatch("truncated batch header", position=0)
    return b"".join((_INT64.pack(base_offset), memoryview(batch)[8:]))


# --- records: CLI, tests and snapshot tools only, never the produce/fetch path ---


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
        | (
            _TIMESTAMP_TYPE_BIT
            if timestamp_type == TimestampType.LOG_APPEND_TIME
            else 0
        )
        | (_TRANSACTIONAL_BIT if is_transactional else 0)
        | (_CONTROL_BIT if is_control else 0)
    )
    out = bytearray(BATCH_HEADER_SIZE)
    _HEADER.pack_into(
        out,
        0,
        base_offset,
        BATCH_HEADER_SIZE - LOG_OVERHEAD + len(payload),
        partition_leader_epoch,
        2,
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
    out += payload
    _UINT32.pack_into(out, CRC_OFFSET, _crc32c.crc32c(memoryview(out)[CRC_START:]))
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
            f"unknown codec {header.attributes & _COMPRESSION_MASK}", position=pos
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
