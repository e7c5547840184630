"""Checking produced batches and preparing them for the log, without copying them.

Every batch of a Produce payload is validated before any is written (Kafka
``LogValidator``): magic 2, lengths, CRC32C, record count = last_offset_delta + 1,
and ``max.message.bytes`` per batch. Accepted batches are then written as a patched
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
    BatchHeader,
    CorruptBatch,
    patch_base_offset,
    patch_leader_epoch,
    verify_batch,
)
from storage.config import TopicConfig
from storage.errors import InvalidBatch, InvalidTimestamp, MessageTooLarge

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
    records: Buffer, *, max_message_bytes: int | None
) -> list[tuple[int, BatchHeader]]:
    """Check every batch in ``records``; returns (position, header) of each.

    ``max_message_bytes`` None means a verbatim restore: sizes and record counts of
    compacted batches are accepted as they are.

    Raises:
        InvalidBatch: empty, torn, or any batch fails verification.
        MessageTooLarge: a batch is larger than ``max_message_bytes``.
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
            if header.record_count != header.last_offset_delta + 1:
                raise InvalidBatch(
                    f"record_count {header.record_count} does not match "
                    f"last_offset_delta {header.last_offset_delta}"
                )
        batches.append((pos, header))
        pos += header.size
    return batches


def check_timestamps(
    batches: list[tuple[int, BatchHeader]], config: TopicConfig, now_ms: int
) -> None:
    """Refuse CreateTime batches whose first or largest timestamp lies more than
    ``message.timestamp.before.max.ms`` before or ``...after.max.ms`` after
    ``now_ms`` (Kafka's ``LogValidator.validateTimestamp``, per batch).

    Raises:
        InvalidTimestamp: naming the timestamp and the bound it breaks.
    """
    lowest = now_ms - config.timestamp_before_ms
    highest = now_ms + config.timestamp_after_ms
    for _, header in batches:
        for ts in (header.base_timestamp, header.max_timestamp):
            if ts < lowest:
                raise InvalidTimestamp(
                    f"timestamp {ts} is more than message.timestamp.before.max.ms "
                    f"{config.timestamp_before_ms} before the broker's time {now_ms}"
                )
            if ts > highest:
                raise InvalidTimestamp(
                    f"timestamp {ts} is more than message.timestamp.after.max.ms "
                    f"{config.timestamp_after_ms} after the broker's time {now_ms}"
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
