"""Checking produced batches and preparing them for the log, without copying them.

Every batch of a Produce payload is validated before any is written (Kafka
``LogValidator``): magic 2, lengths, CRC32C (InvalidBatch: CORRUPT_MESSAGE),
``max.message.bytes`` per batch, then Kafka's rules for batches from clients
(InvalidRecord: INVALID_RECORD): record count = last_offset_delta + 1 and above 0,
no control batches, an idempotent batch's sequence not negative. The per-record
rules (keys of compacted topics, timestamp bounds) are storage.record_rules. Accepted batches are then written as a patched
copy of each 61-byte header (base offset, partition leader epoch and, for
LogAppendTime topics, attributes + max_timestamp + a recomputed CRC) followed by a
view of the untouched body, so the records themselves are never copied.
"""

from __future__ import annotations

import struct
from typing import Final

import crc32c as _crc32c

from protocol.records import (
    BATCH_HEADER_SIZE,
    CONTROL_BIT,
    BatchHeader,
    CorruptBatch,
    patch_base_offset,
    patch_leader_epoch,
    verify_batch,
)
from storage.errors import InvalidBatch, InvalidRecord, MessageTooLarge

Buffer = bytes | bytearray | memoryview

# Header fields patched for LogAppendTime (see protocol/records.py for the layout).
_CRC_OFFSET: Final = 17
_ATTRIBUTES_OFFSET: Final = 21  # the CRC covers attributes .. end of batch
_MAX_TIMESTAMP_OFFSET: Final = 35
_LOG_APPEND_TIME_BIT: Final = 0x08
_INT16: Final = struct.Struct(">h")
_INT64: Final = struct.Struct(">q")
_UINT32: Final = struct.Struct(">I")


def validate_batches(
    records: Buffer,
    *,
    max_message_bytes: int | None,
    topic_partition: str = "",
) -> list[tuple[int, BatchHeader]]:
    """Check every batch in ``records``; returns (position, header) of each.

    ``max_message_bytes`` None means a verbatim restore: sizes and record counts of
    compacted batches, control batches and sequences are accepted as they are.
    ``topic_partition`` ("topic-0") goes into Kafka's messages.

    Raises:
        InvalidBatch: empty, torn, or any batch fails verification.
        MessageTooLarge: a batch is larger than ``max_message_bytes``.
        InvalidRecord: a batch breaks one of Kafka's rules for client batches.
    """
    view = memoryview(records)
    total = len(view)
    if total == 0:
        raise InvalidBatch("no record batches")
    batches: list[tuple[int, BatchHeader]] = []
    pos = 0
    while pos < total:
        try:
            header = verify_batch(view, pos)
        except CorruptBatch as exc:
            raise InvalidBatch(str(exc)) from exc
        if max_message_bytes is not None:
            if header.size > max_message_bytes:
                raise MessageTooLarge(
                    f"batch of {header.size} bytes exceeds max.message.bytes "
                    f"{max_message_bytes}"
                )
            _check_client_batch(header, topic_partition)
        batches.append((pos, header))
        pos += header.size
    return batches


def _check_client_batch(header: BatchHeader, topic_partition: str) -> None:
    """Kafka's ``LogValidator.validateBatch`` for batches from clients."""
    count = header.record_count
    if count != header.last_offset_delta + 1 or count <= 0:
        last = header.base_offset + header.last_offset_delta
        if header.last_offset_delta < 0:
            message = (
                f"Batch has an invalid offset range: [{header.base_offset}, {last}]"
            )
        elif count <= 0:
            message = f"Invalid reported count for record batch: {count}"
        else:
            message = (
                f"Inconsistent batch offset range [{header.base_offset}, {last}] "
                f"and count of records {count}"
            )
        raise InvalidRecord(f"{message} in topic partition {topic_partition}")
    if header.attributes & CONTROL_BIT:
        raise InvalidRecord(
            "Clients are not allowed to write control records in topic partition "
            f"{topic_partition}"
        )
    if header.producer_id >= 0 and header.base_sequence < 0:
        raise InvalidRecord(
            f"Invalid sequence number {header.base_sequence} in record batch with "
            f"producerId {header.producer_id} in topic partition {topic_partition}"
        )


def stamp_batches(
    view: memoryview,
    batches: list[tuple[int, BatchHeader]],
    first_offset: int,
    leader_epoch: int,
    append_time_ms: int,
) -> tuple[list[Buffer], int]:
    """The buffers to write (header copy, body view per batch) and the next offset.

    ``append_time_ms`` >= 0 stamps LogAppendTime (which needs a new CRC).
    """
    parts: list[Buffer] = []
    offset = first_offset
    for pos, header in batches:
        head = bytearray(view[pos : pos + BATCH_HEADER_SIZE])
        body = view[pos + BATCH_HEADER_SIZE : pos + header.size]
        patch_base_offset(head, offset)
        patch_leader_epoch(head, leader_epoch)
        if append_time_ms >= 0:
            _stamp_log_append_time(head, body, append_time_ms)
        parts += (head, body)
        offset += header.last_offset_delta + 1
    return parts, offset


def _stamp_log_append_time(head: bytearray, body: memoryview, now_ms: int) -> None:
    """Set timestamp type LogAppendTime and max_timestamp, then recompute the CRC
    (it covers attributes .. end of batch: the rest of the header, then the body)."""
    (attributes,) = _INT16.unpack_from(head, _ATTRIBUTES_OFFSET)
    _INT16.pack_into(head, _ATTRIBUTES_OFFSET, attributes | _LOG_APPEND_TIME_BIT)
    _INT64.pack_into(head, _MAX_TIMESTAMP_OFFSET, now_ms)
    crc = _crc32c.crc32c(body, _crc32c.crc32c(memoryview(head)[_ATTRIBUTES_OFFSET:]))
    _UINT32.pack_into(head, _CRC_OFFSET, crc)
