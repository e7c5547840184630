"""The records of ``__transaction_state``: Kafka's transaction log key and value.

One record per change of a transactional id's state, in the layout of Kafka's
``TransactionLog`` (``TransactionLogKey.json``, ``TransactionLogValue.json``), so
that Kafka's own tools (``kafka-dump-log --transaction-log-decoder``) read what we
write::

    key     int16 version (0), string transactional_id
    value   int16 version (0 or 1), then
            int64  producer_id
            int16  producer_epoch
            int32  transaction_timeout_ms
            int8   transaction_status          (TxnState code)
            array  transaction_partitions      (nullable: null in Empty)
                   [string topic, array int32 partition_ids]
            int64  transaction_last_update_timestamp_ms
            int64  transaction_start_timestamp_ms
            v1 only (flexible: compact strings/arrays, tagged fields):
                   tag 0 int64 previous_producer_id  (default -1)
                   tag 1 int64 next_producer_id      (default -1)
                   tag 2 int16 client_transaction_version (default 0)
                   tag 100 compact array of compact strings: the consumer
                           groups of the transaction (ours, see below)

Kafka adds a group's ``__consumer_offsets`` partition to the transaction's
partitions (AddOffsetsToTxn) and its markers complete the group's offsets; this
broker completes a transaction's offsets through its group coordinator, which needs
the group ids, so a transaction with groups is written in version 1 with its group
ids in tag 100. Kafka's readers keep unknown tagged fields and ignore them.

Version 0 strings are int16-length, arrays int32-length (-1: null); version 1 uses
unsigned-varint lengths plus one (0: null) and ends the value and each partition
entry with a tagged-field section. We write version 0, as Kafka does until
``transaction.version`` 1 is enabled; both are read. A null value is a tombstone
(the transactional id expired).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Final

from protocol.errors import DecodeError, ProtocolError
from protocol.primitives import read_uvarint, uvarint
from protocol.record_builder import RecordInput, build_batch, iter_records
from protocol.records import Buffer, iter_batches

__all__ = [
    "TxnLogEntry",
    "TxnLogValue",
    "decode_key",
    "decode_value",
    "encode_key",
    "encode_value",
    "read_entries",
    "txn_log_batch",
]

KEY_VERSION: Final = 0
VALUE_VERSION: Final = 0
FLEXIBLE_VALUE_VERSION: Final = 1

_I8 = struct.Struct(">b")
_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")
_TAG_PREVIOUS_PRODUCER_ID = 0
_TAG_NEXT_PRODUCER_ID = 1
_TAG_CLIENT_TXN_VERSION = 2
_TAG_GROUPS = 100

# topic -> its partition ids, as the log groups them
TxnPartitions = tuple[tuple[str, tuple[int, ...]], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class TxnLogValue:
    """A transactional id's state as one log value holds it."""

    producer_id: int
    producer_epoch: int
    timeout_ms: int
    status: int  # TxnState code
    partitions: TxnPartitions | None  # None: null (Kafka writes null in Empty)
    last_update_ms: int
    start_ms: int
    # version 1 tagged fields (not written in version 0)
    previous_producer_id: int = -1
    next_producer_id: int = -1
    client_transaction_version: int = 0
    groups: tuple[str, ...] = ()  # version 1 only (tag 100)


@dataclass(frozen=True, slots=True, kw_only=True)
class TxnLogEntry:
    """One record of a transaction log partition: its offset, transactional id and
    value (None: a tombstone)."""

    offset: int
    transactional_id: str
    value: TxnLogValue | None


def _put_string(out: bytearray, text: str, flexible: bool) -> None:
    data = text.encode()
    if len(data) > 0x7FFF:
        raise ProtocolError(f"string of {len(data)} bytes is over 32767")
    out += uvarint(len(data) + 1) if flexible else _I16.pack(len(data))
    out += data


def _put_length(out: bytearray, n: int | None, flexible: bool) -> None:
    if flexible:
        out += uvarint(0 if n is None else n + 1)
    else:
        out += _I32.pack(-1 if n is None else n)


def encode_key(transactional_id: str) -> bytes:
    """A transaction log key (version 0)."""
    out = bytearray(_I16.pack(KEY_VERSION))
    _put_string(out, transactional_id, False)
    return bytes(out)


def encode_value(value: TxnLogValue, *, version: int = VALUE_VERSION) -> bytes:
    """A transaction log value, version 0 (default) or 1.

    Raises:
        ProtocolError: an unknown version, or a topic name over 32767 bytes.
    """
    if version not in (VALUE_VERSION, FLEXIBLE_VALUE_VERSION):
        raise ProtocolError(f"unknown transaction log value version {version}")
    flexible = version == FLEXIBLE_VALUE_VERSION
    out = bytearray(_I16.pack(version))
    out += _I64.pack(value.producer_id)
    out += _I16.pack(value.producer_epoch)
    out += _I32.pack(value.timeout_ms)
    out += _I8.pack(value.status)
    parts = value.partitions
    _put_length(out, None if parts is None else len(parts), flexible)
    for topic, ids in parts or ():
        _put_string(out, topic, flexible)
        _put_length(out, len(ids), flexible)
        for pid in ids:
            out += _I32.pack(pid)
        if flexible:
            out += uvarint(0)  # no tagged fields
    out += _I64.pack(value.last_update_ms)
    out += _I64.pack(value.start_ms)
    if flexible:
        tags: list[tuple[int, bytes]] = []
        if value.previous_producer_id != -1:
            tags.append(
                (_TAG_PREVIOUS_PRODUCER_ID, _I64.pack(value.previous_producer_id))
            )
        if value.next_producer_id != -1:
            tags.append((_TAG_NEXT_PRODUCER_ID, _I64.pack(value.next_producer_id)))
        if value.client_transaction_version != 0:
            tags.append(
                (_TAG_CLIENT_TXN_VERSION, _I16.pack(value.client_transaction_version))
            )
        if value.groups:
            names = bytearray(uvarint(len(value.groups) + 1))
            for group in value.groups:
                _put_string(names, group, True)
            tags.append((_TAG_GROUPS, bytes(names)))
        out += uvarint(len(tags))
        for tag, data in tags:
            out += uvarint(tag)
            out += uvarint(len(data))
            out += data
    return bytes(out)


class _Reader:
    __slots__ = ("data", "flexible", "pos", "view")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.view = memoryview(data)
        self.pos = 0
        self.flexible = False

    def _take(self, fmt: struct.Struct) -> int:
        try:
            (value,) = fmt.unpack_from(self.data, self.pos)
        except struct.error as exc:
            raise DecodeError("transaction log record is truncated") from exc
        self.pos += fmt.size
        return int(value)

    def int8(self) -> int:
        return self._take(_I8)

    def int16(self) -> int:
        return self._take(_I16)

    def int32(self) -> int:
        return self._take(_I32)

    def int64(self) -> int:
        return self._take(_I64)

    def uvarint(self) -> int:
        try:
            value, self.pos = read_uvarint(self.view, self.pos)
        except (IndexError, ValueError, ProtocolError) as exc:
            raise DecodeError("transaction log varint is truncated") from exc
        return value

    def length(self) -> int | None:
        """An array length (None: null)."""
        n = self.uvarint() - 1 if self.flexible else self.int32()
        if n < 0:
            return None
        if n > len(self.data) - self.pos:
            raise DecodeError(f"transaction log array length {n} overruns")
        return n

    def string(self) -> str:
        size = self.uvarint() - 1 if self.flexible else self.int16()
        if size < 0 or self.pos + size > len(self.data):
            raise DecodeError(f"transaction log string length {size} overruns")
        raw = self.data[self.pos : self.pos + size]
        self.pos += size
        try:
            return raw.decode()
        except UnicodeDecodeError as exc:
            raise DecodeError("transaction log string is not UTF-8") from exc

    def tagged(self) -> dict[int, bytes]:
        fields: dict[int, bytes] = {}
        for _ in range(self.uvarint()):
            tag = self.uvarint()
            size = self.uvarint()
            if self.pos + size > len(self.data):
                raise DecodeError("transaction log tagged field overruns")
            fields[tag] = self.data[self.pos : self.pos + size]
            self.pos += size
        return fields


def decode_key(data: bytes) -> str:
    """The transactional id of a transaction log key.

    Raises:
        DecodeError: malformed, or a key version this broker does not know.
    """
    r = _Reader(data)
    version = r.int16()
    if version != KEY_VERSION:
        raise DecodeError(f"unknown transaction log key version {version}")
    return r.string()


def decode_value(data: bytes) -> TxnLogValue:
    """Decode a transaction log value (version 0 or 1; unknown tagged fields are
    ignored, as Kafka ignores them).

    Raises:
        DecodeError: malformed, or a value version this broker does not know.
    """
    r = _Reader(data)
    version = r.int16()
    if version not in (VALUE_VERSION, FLEXIBLE_VALUE_VERSION):
        raise DecodeError(f"unknown transaction log value version {version}")
    r.flexible = version == FLEXIBLE_VALUE_VERSION
    producer_id = r.int64()
    epoch = r.int16()
    timeout = r.int32()
    status = r.int8()
    n = r.length()
    partitions: TxnPartitions | None = None
    if n is not None:
        entries = []
        for _ in range(n):
            topic = r.string()
            count = r.length() or 0
            entries.append((topic, tuple(r.int32() for _ in range(count))))
            if r.flexible:
                r.tagged()
        partitions = tuple(entries)
    last_update = r.int64()
    start = r.int64()
    previous, following, client_version = -1, -1, 0
    groups: tuple[str, ...] = ()
    if r.flexible:
        tags = r.tagged()
        if (raw := tags.get(_TAG_GROUPS)) is not None:
            sub = _Reader(raw)
            sub.flexible = True
            groups = tuple(sub.string() for _ in range(sub.length() or 0))
        try:
            if (raw := tags.get(_TAG_PREVIOUS_PRODUCER_ID)) is not None:
                (previous,) = _I64.unpack(raw)
            if (raw := tags.get(_TAG_NEXT_PRODUCER_ID)) is not None:
                (following,) = _I64.unpack(raw)
            if (raw := tags.get(_TAG_CLIENT_TXN_VERSION)) is not None:
                (client_version,) = _I16.unpack(raw)
        except struct.error as exc:
            raise DecodeError("transaction log tagged field has a bad size") from exc
    return TxnLogValue(
        producer_id=producer_id,
        producer_epoch=epoch,
        timeout_ms=timeout,
        status=status,
        partitions=partitions,
        last_update_ms=last_update,
        start_ms=start,
        previous_producer_id=previous,
        next_producer_id=following,
        client_transaction_version=client_version,
        groups=groups,
    )


def txn_log_batch(
    records: Iterable[tuple[bytes, bytes | None]], *, timestamp: int | None = None
) -> bytes:
    """One v2 record batch of (key, value or None) records, uncompressed.

    Raises:
        RecordBatchError: no records.
    """
    return build_batch(
        [RecordInput(key=k, value=v, timestamp=timestamp) for k, v in records]
    )


def read_entries(buf: Buffer) -> Iterator[TxnLogEntry | DecodeError]:
    """The records of whole batches read from a transaction log partition, in log
    order; a record that does not decode comes out as its :class:`DecodeError`
    (counted and skipped by the reader); control batches and keyless records are
    skipped.

    Raises:
        RecordBatchError: a batch is corrupt (CRC, lengths).
    """
    for pos, header in iter_batches(buf):
        if header.is_control:
            continue
        for record in iter_records(buf, pos):
            if record.key is None:
                continue
            try:
                txn_id = decode_key(record.key)
                value = None if record.value is None else decode_value(record.value)
            except DecodeError as exc:
                yield exc
                continue
            yield TxnLogEntry(
                offset=record.offset, transactional_id=txn_id, value=value
            )
