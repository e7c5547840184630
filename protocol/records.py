"""Kafka v2 record batches (magic 2): the one parser of the batch header.

Kafka's on-disk format is its wire format, so storage and the broker both use this
module and nothing else to look at record batches. The hot path (produce, fetch,
recovery) only reads the 61-byte header, checks the CRC and patches the base offset
in place; it never walks or decompresses records. Walking records and building batches
are for the CLI, the client, tests and snapshot tools: :mod:`protocol.record_builder`.

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

The records inside a batch are drawn in :mod:`protocol.record_builder`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

import crc32c as _crc32c

from protocol.compression import Compression
from protocol.errors import ProtocolError

__all__ = [
    "BATCH_HEADER_SIZE",
    "COMPRESSION_MASK",
    "CONTROL_BIT",
    "CRC_OFFSET",
    "CRC_START",
    "DELETE_HORIZON_BIT",
    "LOG_OVERHEAD",
    "MAGIC_OFFSET",
    "TIMESTAMP_TYPE_BIT",
    "TRANSACTIONAL_BIT",
    "BatchHeader",
    "Buffer",
    "Compression",
    "CorruptBatch",
    "RecordBatchError",
    "TimestampType",
    "WritableBuffer",
    "crc_of",
    "iter_batches",
    "pack_header",
    "patch_base_offset",
    "patch_crc",
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

COMPRESSION_MASK: Final = 0x07
TIMESTAMP_TYPE_BIT: Final = 0x08
TRANSACTIONAL_BIT: Final = 0x10
CONTROL_BIT: Final = 0x20
DELETE_HORIZON_BIT: Final = 0x40

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
        return Compression(self.attributes & COMPRESSION_MASK)

    @property
    def timestamp_type(self) -> TimestampType:
        """Whether timestamps are create time or log-append time."""
        return TimestampType((self.attributes & TIMESTAMP_TYPE_BIT) >> 3)

    @property
    def is_transactional(self) -> bool:
        """Whether the batch belongs to a transaction (KIP-98)."""
        return bool(self.attributes & TRANSACTIONAL_BIT)

    @property
    def is_control(self) -> bool:
        """Whether the batch holds control records (commit/abort markers)."""
        return bool(self.attributes & CONTROL_BIT)

    @property
    def has_delete_horizon(self) -> bool:
        """Whether base_timestamp is the delete horizon (KIP-534)."""
        return bool(self.attributes & DELETE_HORIZON_BIT)

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
        header.attributes & COMPRESSION_MASK == Compression.NONE
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


def pack_header(out: WritableBuffer, header: BatchHeader, pos: int = 0) -> None:
    """Write ``header`` into ``out`` at ``pos`` (the inverse of :func:`read_header`)."""
    _HEADER.pack_into(
        out,
        pos,
        header.base_offset,
        header.batch_length,
        header.partition_leader_epoch,
        header.magic,
        header.crc,
        header.attributes,
        header.last_offset_delta,
        header.base_timestamp,
        header.max_timestamp,
        header.producer_id,
        header.producer_epoch,
        header.base_sequence,
        header.record_count,
    )


def patch_crc(buf: WritableBuffer, pos: int = 0) -> None:
    """Compute the CRC32C of the batch at ``pos`` and write it into its crc field."""
    _UINT32.pack_into(buf, pos + CRC_OFFSET, crc_of(buf, pos))
