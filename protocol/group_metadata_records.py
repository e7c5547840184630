"""The group metadata record of ``__consumer_offsets`` (Kafka's GroupMetadataValue).

Kafka's ``GroupMetadataManager.storeGroup`` writes one of these under the group's
key (key version 2, :func:`protocol.offset_records.encode_group_key`) whenever a
generation completes or the group empties; a null value is the group's tombstone.
Value layout (``GroupMetadataValue.json``; strings int16-length UTF-8, nullable
ones -1 for null, bytes int32-length; v4 is the flexible form, which we read)::

    int16   version (0..4)
    string  protocol_type
    int32   generation
    string? protocol
    string? leader
    int64   current_state_timestamp     (v2+; -1 when absent)
    array   members (int32 count), each:
        string  member_id
        string? group_instance_id       (v3+)
        string  client_id
        string  client_host
        int32   rebalance_timeout_ms    (v1+; the session timeout before)
        int32   session_timeout_ms
        bytes   subscription
        bytes   assignment

We write version 3, as Kafka does for a group without tagged fields.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from protocol.errors import DecodeError, ProtocolError

__all__ = [
    "GROUP_VALUE_VERSION",
    "GroupMetadataValue",
    "MemberMetadataValue",
    "decode_group_value",
    "encode_group_value",
]

GROUP_VALUE_VERSION: Final = 3

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberMetadataValue:
    """One member of a stored group."""

    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    rebalance_timeout_ms: int
    session_timeout_ms: int
    subscription: bytes
    assignment: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupMetadataValue:
    """A group's metadata as of its last completed generation (or emptying)."""

    protocol_type: str
    generation: int
    protocol: str | None
    leader: str | None
    current_state_timestamp: int
    members: tuple[MemberMetadataValue, ...]


def _string(out: bytearray, text: str | None) -> None:
    if text is None:
        out += _I16.pack(-1)
        return
    data = text.encode()
    if len(data) > 0x7FFF:
        raise ProtocolError(f"string of {len(data)} bytes is over 32767")
    out += _I16.pack(len(data))
    out += data


def _bytes(out: bytearray, data: bytes) -> None:
    out += _I32.pack(len(data))
    out += data


def encode_group_value(value: GroupMetadataValue) -> bytes:
    """The value of a group metadata record, version 3."""
    out = bytearray(_I16.pack(GROUP_VALUE_VERSION))
    _string(out, value.protocol_type)
    out += _I32.pack(value.generation)
    _string(out, value.protocol)
    _string(out, value.leader)
    out += _I64.pack(value.current_state_timestamp)
    out += _I32.pack(len(value.members))
    for m in value.members:
        _string(out, m.member_id)
        _string(out, m.group_instance_id)
        _string(out, m.client_id)
        _string(out, m.client_host)
        out += _I32.pack(m.rebalance_timeout_ms)
        out += _I32.pack(m.session_timeout_ms)
        _bytes(out, m.subscription)
        _bytes(out, m.assignment)
    return bytes(out)


class _Reader:
    __slots__ = ("data", "flexible", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.flexible = False

    def _take(self, fmt: struct.Struct) -> int:
        try:
            (value,) = fmt.unpack_from(self.data, self.pos)
        except struct.error as exc:
            raise DecodeError("group metadata record is truncated") from exc
        self.pos += fmt.size
        return int(value)

    def int32(self) -> int:
        return self._take(_I32)

    def int64(self) -> int:
        return self._take(_I64)

    def uvarint(self) -> int:
        shift = value = 0
        while True:
            if self.pos >= len(self.data) or shift > 28:
                raise DecodeError("group metadata record varint is malformed")
            byte = self.data[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7

    def _raw(self, size: int) -> bytes:
        if size < 0 or self.pos + size > len(self.data):
            raise DecodeError(f"group metadata record length {size} overruns")
        raw = self.data[self.pos : self.pos + size]
        self.pos += size
        return raw

    def nullable_string(self) -> str | None:
        size = self.uvarint() - 1 if self.flexible else self._take(_I16)
        if size < 0:
            return None
        try:
            return self._raw(size).decode()
        except UnicodeDecodeError as exc:
            raise DecodeError("group metadata string is not UTF-8") from exc

    def string(self) -> str:
        text = self.nullable_string()
        if text is None:
            raise DecodeError("group metadata string is null")
        return text

    def bytes_(self) -> bytes:
        size = self.uvarint() - 1 if self.flexible else self.int32()
        if size < 0:
            raise DecodeError("group metadata bytes are null")
        return self._raw(size)

    def count(self) -> int:
        return self.uvarint() - 1 if self.flexible else self.int32()

    def skip_tags(self) -> None:
        if self.flexible:
            for _ in range(self.uvarint()):
                self.uvarint()
                self._raw(self.uvarint())


def decode_group_value(data: bytes) -> GroupMetadataValue:
    """Decode a group metadata value, versions 0–4.

    Raises:
        DecodeError: malformed, or a version this broker does not know.
    """
    r = _Reader(data)
    version = r._take(_I16)
    if not 0 <= version <= 4:
        raise DecodeError(f"unknown group metadata value version {version}")
    r.flexible = version >= 4
    protocol_type = r.string()
    generation = r.int32()
    protocol = r.nullable_string()
    leader = r.nullable_string()
    timestamp = r.int64() if version >= 2 else -1
    count = r.count()
    if count < 0:
        raise DecodeError("group metadata members are null")
    members = []
    for _ in range(count):
        member_id = r.string()
        instance = r.nullable_string() if version >= 3 else None
        client_id = r.string()
        client_host = r.string()
        rebalance = r.int32() if version >= 1 else None
        session = r.int32()
        members.append(
            MemberMetadataValue(
                member_id=member_id,
                group_instance_id=instance,
                client_id=client_id,
                client_host=client_host,
                rebalance_timeout_ms=session if rebalance is None else rebalance,
                session_timeout_ms=session,
                subscription=r.bytes_(),
                assignment=r.bytes_(),
            )
        )
        r.skip_tags()
    r.skip_tags()
    return GroupMetadataValue(
        protocol_type=protocol_type,
        generation=generation,
        protocol=protocol,
        leader=leader,
        current_state_timestamp=timestamp,
        members=tuple(members),
    )
