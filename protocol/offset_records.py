"""The records of ``__consumer_offsets``: Kafka's offset-commit key and value schemas.

A committed offset is one record of a group's ``__consumer_offsets`` partition, in
the layout of Kafka's ``GroupMetadataManager`` (``OffsetCommitKey.json``,
``OffsetCommitValue.json``), so that Kafka's own tools (``kafka-console-consumer
--formatter ...OffsetsMessageFormatter``) read what we write::

    key     int16 version (0 or 1: offset commit; 2: group metadata)
            version 0/1: string group, string topic, int32 partition
            version 2:   string group
    value   int16 version, then
            v0: int64 offset, string metadata, int64 commit_timestamp
            v1: int64 offset, string metadata, int64 commit_timestamp,
                int64 expire_timestamp
            v2: int64 offset, string metadata, int64 commit_timestamp
            v3: int64 offset, int32 leader_epoch, string metadata,
                int64 commit_timestamp

Strings are int16-length UTF-8 (non-flexible versions: no tagged fields). We write
key version 1 and value version 3, or value version 1 when the commit carries an
explicit expiry (OffsetCommit v2–4 ``retention_time_ms``), as Kafka does. A null
value is a tombstone: the offset was deleted (DeleteGroups, OffsetDelete). A group
metadata record (key version 2) holds the group's membership
(:mod:`protocol.group_metadata_records`); its tombstone deletes the group.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Final

from protocol.errors import DecodeError, ProtocolError
from protocol.group_metadata_records import GroupMetadataValue, decode_group_value
from protocol.record_builder import RecordInput, build_batch, iter_records
from protocol.records import Buffer, iter_batches

__all__ = [
    "GroupMetadataKey",
    "OffsetCommitKey",
    "OffsetCommitValue",
    "OffsetsLogEntry",
    "TxnMarkerEntry",
    "decode_key",
    "decode_value",
    "encode_group_key",
    "encode_key",
    "encode_value",
    "offsets_batch",
    "read_entries",
]

KEY_VERSION: Final = 1
GROUP_KEY_VERSION: Final = 2
VALUE_VERSION: Final = 3
VALUE_VERSION_WITH_EXPIRY: Final = 1

_CONTROL_KEY_SIZE: Final = 4  # version int16, type int16 (0 ABORT, 1 COMMIT)
_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")


@dataclass(frozen=True, slots=True, kw_only=True)
class OffsetCommitKey:
    """The key of a committed offset: which group, topic and partition."""

    group: str
    topic: str
    partition: int


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupMetadataKey:
    """The key of a group's metadata record (key version 2)."""

    group: str


@dataclass(frozen=True, slots=True, kw_only=True)
class OffsetCommitValue:
    """The value of a committed offset."""

    offset: int
    leader_epoch: int = -1
    metadata: str = ""
    commit_timestamp: int = -1
    expire_timestamp: int | None = None  # value v1 only (explicit retention)


@dataclass(frozen=True, slots=True, kw_only=True)
class OffsetsLogEntry:
    """One record of an offsets partition: its log offset, key and value (None:
    a tombstone; a group metadata key's value is a :class:`GroupMetadataValue`), and
    the record's timestamp."""

    offset: int
    key: OffsetCommitKey | GroupMetadataKey
    value: OffsetCommitValue | GroupMetadataValue | None
    timestamp: int = -1
    producer_id: int = -1  # >= 0: a transactional record of this producer
    producer_epoch: int = -1


@dataclass(frozen=True, slots=True, kw_only=True)
class TxnMarkerEntry:
    """A transaction marker of an offsets partition: the producer's transaction
    committed (or aborted) at this log offset."""

    offset: int
    producer_id: int
    producer_epoch: int
    commit: bool


def _put_string(out: bytearray, text: str) -> None:
    data = text.encode()
    if len(data) > 0x7FFF:
        raise ProtocolError(f"string of {len(data)} bytes is over 32767")
    out += _I16.pack(len(data))
    out += data


def encode_key(group: str, topic: str, partition: int) -> bytes:
    """An offset commit key (version 1)."""
    out = bytearray(_I16.pack(KEY_VERSION))
    _put_string(out, group)
    _put_string(out, topic)
    out += _I32.pack(partition)
    return bytes(out)


def encode_group_key(group: str) -> bytes:
    """A group metadata key (version 2), for the tombstone of a deleted group."""
    out = bytearray(_I16.pack(GROUP_KEY_VERSION))
    _put_string(out, group)
    return bytes(out)


def encode_value(value: OffsetCommitValue) -> bytes:
    """An offset commit value: version 3, or version 1 with an explicit expiry."""
    if value.expire_timestamp is not None:
        out = bytearray(_I16.pack(VALUE_VERSION_WITH_EXPIRY))
        out += _I64.pack(value.offset)
        _put_string(out, value.metadata)
        out += _I64.pack(value.commit_timestamp)
        out += _I64.pack(value.expire_timestamp)
        return bytes(out)
    out = bytearray(_I16.pack(VALUE_VERSION))
    out += _I64.pack(value.offset)
    out += _I32.pack(value.leader_epoch)
    _put_string(out, value.metadata)
    out += _I64.pack(value.commit_timestamp)
    return bytes(out)


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def _take(self, fmt: struct.Struct) -> int:
        try:
            (value,) = fmt.unpack_from(self.data, self.pos)
        except struct.error as exc:
            raise DecodeError("offsets record is truncated") from exc
        self.pos += fmt.size
        return int(value)

    def int16(self) -> int:
        return self._take(_I16)

    def int32(self) -> int:
        return self._take(_I32)

    def int64(self) -> int:
        return self._take(_I64)

    def string(self) -> str:
        size = self.int16()
        if size < 0 or self.pos + size > len(self.data):
            raise DecodeError(f"offsets record string length {size} overruns")
        raw = self.data[self.pos : self.pos + size]
        self.pos += size
        try:
            return raw.decode()
        except UnicodeDecodeError as exc:
            raise DecodeError("offsets record string is not UTF-8") from exc


def decode_key(data: bytes) -> OffsetCommitKey | GroupMetadataKey:
    """Decode a ``__consumer_offsets`` key.

    Raises:
        DecodeError: malformed, or a key version this broker does not know.
    """
    r = _Reader(data)
    version = r.int16()
    if version in (0, 1):
        return OffsetCommitKey(group=r.string(), topic=r.string(), partition=r.int32())
    if version == GROUP_KEY_VERSION:
        return GroupMetadataKey(group=r.string())
    raise DecodeError(f"unknown offsets key version {version}")


def decode_value(data: bytes) -> OffsetCommitValue:
    """Decode an offset commit value (versions 0–3; later bytes are ignored, as
    Kafka ignores the tagged fields of newer versions).

    Raises:
        DecodeError: malformed, or a value version this broker does not know.
    """
    r = _Reader(data)
    version = r.int16()
    if version in (0, 2):
        return OffsetCommitValue(
            offset=r.int64(), metadata=r.string(), commit_timestamp=r.int64()
        )
    if version == 1:
        return OffsetCommitValue(
            offset=r.int64(),
            metadata=r.string(),
            commit_timestamp=r.int64(),
            expire_timestamp=r.int64(),
        )
    if version == VALUE_VERSION:
        return OffsetCommitValue(
            offset=r.int64(),
            leader_epoch=r.int32(),
            metadata=r.string(),
            commit_timestamp=r.int64(),
        )
    raise DecodeError(f"unknown offsets value version {version}")


def offsets_batch(
    records: Iterable[tuple[bytes, bytes | None]],
    *,
    timestamp: int | None = None,
    producer_id: int = -1,
    producer_epoch: int = -1,
) -> bytes:
    """One v2 record batch of (key, value or None) records, uncompressed; with a
    producer id, a transactional batch of that producer (sequence 0, as Kafka's
    ``GroupMetadataManager.storeOffsets`` writes it).

    Raises:
        RecordBatchError: no records.
    """
    txn = producer_id >= 0
    return build_batch(
        [RecordInput(key=k, value=v, timestamp=timestamp) for k, v in records],
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=0 if txn else -1,
        is_transactional=txn,
    )


def _marker(buf: Buffer, pos: int) -> bool | None:
    """COMMIT (True) or ABORT (False) of a control batch; None for another kind."""
    for record in iter_records(buf, pos):
        key = record.key
        if key is None or len(key) < _CONTROL_KEY_SIZE:
            return None
        kind = _I16.unpack_from(key, 2)[0]
        return {0: False, 1: True}.get(kind)
    return None


def read_entries(
    buf: Buffer,
) -> Iterator[OffsetsLogEntry | TxnMarkerEntry | DecodeError]:
    """The records and transaction markers of whole batches read from an offsets
    partition, in log order.

    A record whose key or value does not decode (an unknown schema version, a
    foreign record) comes out as its :class:`DecodeError` so that the reader can
    count and skip it; records without a key and control batches other than a
    transactional COMMIT/ABORT are skipped.

    Raises:
        RecordBatchError: a batch is corrupt (CRC, lengths).
    """
    for pos, header in iter_batches(buf):
        txn = header.is_transactional and header.producer_id >= 0
        if header.is_control:
            commit = _marker(buf, pos) if txn else None
            if commit is not None:
                yield TxnMarkerEntry(
                    offset=header.base_offset,
                    producer_id=header.producer_id,
                    producer_epoch=header.producer_epoch,
                    commit=commit,
                )
            continue
        for record in iter_records(buf, pos):
            if record.key is None:
                continue
            try:
                key = decode_key(record.key)
                value: OffsetCommitValue | GroupMetadataValue | None
                if record.value is None:
                    value = None
                elif isinstance(key, GroupMetadataKey):
                    value = decode_group_value(bytes(record.value))
                else:
                    value = decode_value(record.value)
            except DecodeError as exc:
                yield exc
                continue
            yield OffsetsLogEntry(
                offset=record.offset,
                key=key,
                value=value,
                timestamp=record.timestamp,
                producer_id=header.producer_id if txn else -1,
                producer_epoch=header.producer_epoch if txn else -1,
            )
