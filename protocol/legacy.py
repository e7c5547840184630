"""Legacy message sets (magic 0 and 1): reading them, and converting them to v2.

Clients older than Kafka 0.11 (and produce requests below v3) send message sets
instead of record batches. The broker only needs to recognise them
(:func:`detect_magic`), read them (:func:`iter_legacy_messages`) and convert them to a
v2 batch (:func:`convert_legacy`); storage never sees them.

Message layout (big-endian; Kafka ``LegacyRecord.java``)::

    offset  size  field
         0     8  offset                (absolute; relative inside magic-1 wrappers)
         8     4  message_size          (bytes after this field)
        12     4  crc                   CRC32 (zlib) over magic .. end of message
        16     1  magic                 0 or 1 (byte 16 is also a v2 batch's magic)
        17     1  attributes            bits 0-2 codec, bit 3 timestamp type (magic 1)
        18     8  timestamp             magic 1 only
         -     4  key_length (-1 = null), key, value_length (-1 = null), value

A compressed message is a wrapper whose value is a compressed message set
(``AbstractLegacyRecordBatch.DeepRecordsIterator``). Magic-1 inner offsets are
relative: absolute = wrapper offset - last inner offset + inner offset. Magic-0 LZ4
wrappers carry the wrong frame header checksum (KIP-57), which is repaired here.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from protocol.compression import Compression, decompress
from protocol.errors import ProtocolError
from protocol.record_builder import RecordInput, build_batch
from protocol.records import MAGIC_OFFSET, CorruptBatch, TimestampType

__all__ = ["LegacyMessage", "convert_legacy", "detect_magic", "iter_legacy_messages"]

NO_TIMESTAMP: Final = -1
_PREFIX: Final = struct.Struct(">qiIbb")  # offset, size, crc, magic, attributes
_INT64: Final = struct.Struct(">q")
_INT32: Final = struct.Struct(">i")
_MIN_SIZE: Final = {0: 14, 1: 22}  # message_size with null key and null value
_LZ4_MAGIC: Final = b"\x04\x22\x4d\x18"

Buffer = bytes | bytearray | memoryview


@dataclass(frozen=True, slots=True, kw_only=True)
class LegacyMessage:
    """One (decompressed, inner) magic-0/1 message with its absolute offset."""

    offset: int
    magic: int
    timestamp: int  # -1 for magic 0
    timestamp_type: TimestampType
    key: bytes | None
    value: bytes | None


def detect_magic(buf: Buffer, pos: int = 0) -> int:
    """Magic byte (0, 1 or 2) of the message set or batch at ``pos`` (byte 16)."""
    if len(buf) - pos <= MAGIC_OFFSET:
        raise CorruptBatch("too short to hold a magic byte", position=pos)
    return int(buf[pos + MAGIC_OFFSET])


def iter_legacy_messages(buf: Buffer, pos: int = 0) -> Iterator[LegacyMessage]:
    """Yield every message of a magic-0/1 message set, unwrapping compressed ones.

    Stops without error at a trailing partial message, as fetch responses may end
    with one.

    Raises:
        CorruptBatch: bad CRC, magic, length or compressed payload.
    """
    yield from _iter_set(memoryview(buf), pos, inner=False)


def convert_legacy(
    buf: Buffer, *, base_offset: int = 0, compression: Compression = Compression.NONE
) -> bytes:
    """Convert a magic-0/1 message set into one v2 batch (produce up-conversion).

    Producers leave legacy offsets meaningless (the broker assigns them), so records
    get consecutive offsets from ``base_offset``; magic-0 timestamps stay -1.

    Raises:
        CorruptBatch: the set is damaged or holds no message.
    """
    messages = list(iter_legacy_messages(buf))
    if not messages:
        raise CorruptBatch("message set holds no complete message", position=0)
    return build_batch(
        [
            RecordInput(key=m.key, value=m.value, timestamp=m.timestamp)
            for m in messages
        ],
        base_offset=base_offset,
        compression=compression,
    )


def _iter_set(view: memoryview, pos: int, *, inner: bool) -> Iterator[LegacyMessage]:
    end = len(view)
    while end - pos >= _PREFIX.size:
        offset, size, crc, magic, attributes = _PREFIX.unpack_from(view, pos)
        if magic not in _MIN_SIZE:
            raise CorruptBatch(f"magic {magic} is not 0 or 1", position=pos)
        if size < _MIN_SIZE[magic]:
            raise CorruptBatch(f"message_size {size} too small", position=pos)
        stop = pos + 12 + size
        if stop > end:
            if inner:
                raise CorruptBatch("truncated message in wrapper", position=pos)
            return
        if zlib.crc32(view[pos + 16 : stop]) != crc:
            raise CorruptBatch("message crc mismatch", position=pos)
        cursor = pos + 18
        timestamp = NO_TIMESTAMP
        if magic == 1:
            (timestamp,) = _INT64.unpack_from(view, cursor)
            cursor += 8
        key, cursor = _read_bytes(view, cursor, stop, pos)
        value, cursor = _read_bytes(view, cursor, stop, pos)
        if cursor != stop:
            raise CorruptBatch("message_size disagrees with its fields", position=pos)
        ts_type = TimestampType((attributes >> 3) & 1 if magic == 1 else 0)
        codec = attributes & 0x07
        if codec == Compression.NONE:
            yield LegacyMessage(
                offset=offset,
                magic=magic,
                timestamp=timestamp,
                timestamp_type=ts_type,
                key=key,
                value=value,
            )
        elif inner:
            raise CorruptBatch("compressed message inside a wrapper", position=pos)
        else:
            yield from _unwrap(offset, magic, timestamp, ts_type, codec, value, pos)
        pos = stop


def _unwrap(
    offset: int,
    magic: int,
    timestamp: int,
    ts_type: TimestampType,
    codec: int,
    value: bytes | None,
    pos: int,
) -> Iterator[LegacyMessage]:
    if value is None:
        raise CorruptBatch("compressed wrapper with a null value", position=pos)
    try:
        compression = Compression(codec)
        if compression == Compression.LZ4 and magic == 0:
            value = _fix_lz4_header_checksum(value)
        data = decompress(compression, value)
    except (ValueError, ProtocolError) as exc:
        raise CorruptBatch(f"bad compressed wrapper: {exc}", position=pos) from exc
    messages = list(_iter_set(memoryview(data), 0, inner=True))
    if not messages:
        return
    shift = offset - messages[-1].offset if magic == 1 else 0
    for message in messages:
        append_time = magic == 1 and ts_type == TimestampType.LOG_APPEND_TIME
        yield LegacyMessage(
            offset=message.offset + shift,
            magic=message.magic,
            timestamp=timestamp if append_time else message.timestamp,
            timestamp_type=ts_type if magic == 1 else message.timestamp_type,
            key=message.key,
            value=message.value,
        )


def _read_bytes(
    view: memoryview, cursor: int, stop: int, pos: int
) -> tuple[bytes | None, int]:
    if cursor + 4 > stop:
        raise CorruptBatch("message field overruns the message", position=pos)
    (length,) = _INT32.unpack_from(view, cursor)
    cursor += 4
    if length == -1:
        return None, cursor
    if length < 0 or cursor + length > stop:
        raise CorruptBatch(f"field length {length} overruns the message", position=pos)
    return bytes(view[cursor : cursor + length]), cursor + length


def _fix_lz4_header_checksum(frame: bytes) -> bytes:
    """Recompute the LZ4 frame descriptor checksum that pre-KIP-57 clients got wrong.

    They hashed the magic number too; the spec hashes only FLG .. end of descriptor.
    """
    if len(frame) < 7 or frame[:4] != _LZ4_MAGIC:
        return frame
    end = 6 + (8 if frame[4] & 0x08 else 0)  # content size present
    if len(frame) <= end:
        return frame
    checksum = (xxh32(frame[4:end]) >> 8) & 0xFF
    return frame[:end] + bytes((checksum,)) + frame[end + 1 :]


_P1: Final = 2654435761
_P2: Final = 2246822519
_P3: Final = 3266489917
_P4: Final = 668265263
_P5: Final = 374761393
_MASK: Final = 0xFFFFFFFF


def _rotl(value: int, bits: int) -> int:
    return ((value << bits) | (value >> (32 - bits))) & _MASK


def xxh32(data: bytes, seed: int = 0) -> int:
    """XXH32 of a short input (under 16 bytes, as an LZ4 frame descriptor is)."""
    if len(data) >= 16:
        raise ValueError("xxh32 here only hashes inputs under 16 bytes")
    h = (seed + _P5 + len(data)) & _MASK
    pos = 0
    while pos + 4 <= len(data):
        word = int.from_bytes(data[pos : pos + 4], "little")
        h = (_rotl((h + word * _P3) & _MASK, 17) * _P4) & _MASK
        pos += 4
    for byte in data[pos:]:
        h = (_rotl((h + byte * _P5) & _MASK, 11) * _P1) & _MASK
    h ^= h >> 15
    h = (h * _P2) & _MASK
    h ^= h >> 13
    h = (h * _P3) & _MASK
    h ^= h >> 16
    return h
