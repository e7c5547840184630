"""Runtime helpers the generated codecs call: varints, tagged-field skipping, records.

Kafka's unsigned varint is LEB128 (7 bits a byte, low group first), at most 5 bytes
for 32-bit values; ``varint``/``varlong`` are zigzag-encoded signed 32/64-bit values
(at most 5/10 bytes), as in ``org.apache.kafka.common.utils.ByteUtils``. The generated
code inlines the one-byte fast path and calls these for the rest.
"""

from __future__ import annotations

import struct
from typing import Final

from protocol.errors import DecodeError, EncodeError
from protocol.schema import Buffer

_INT32: Final = struct.Struct(">i")
# Record buffers at most this long are copied into the surrounding bytearray: an
# extra buffer costs the transport more than copying a few hundred bytes.
SMALL_RECORDS: Final = 512


def read_uvarint(buf: memoryview, pos: int) -> tuple[int, int]:
    """Read an unsigned varint (at most 5 bytes) at ``pos``; return (value, new pos)."""
    result = 0
    shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            if result > 0xFFFFFFFF:
                raise DecodeError("unsigned varint exceeds 32 bits")
            return result, pos
        shift += 7
        if shift > 28:
            raise DecodeError("unsigned varint longer than 5 bytes")


def read_varint(buf: memoryview, pos: int) -> tuple[int, int]:
    """Read a zigzag varint (signed 32-bit) at ``pos``."""
    raw, pos = read_uvarint(buf, pos)
    return (raw >> 1) ^ -(raw & 1), pos


def read_varlong(buf: memoryview, pos: int) -> tuple[int, int]:
    """Read a zigzag varlong (signed 64-bit, at most 10 bytes) at ``pos``."""
    raw = 0
    shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        raw |= (byte & 0x7F) << shift
        if byte < 0x80:
            if raw > 0xFFFFFFFFFFFFFFFF:
                raise DecodeError("varlong exceeds 64 bits")
            return (raw >> 1) ^ -(raw & 1), pos
        shift += 7
        if shift > 63:
            raise DecodeError("varlong longer than 10 bytes")


def uvarint(value: int) -> bytes:
    """Encode an unsigned varint (0 ≤ value < 2**32)."""
    if not 0 <= value <= 0xFFFFFFFF:
        raise EncodeError(f"unsigned varint out of range: {value}")
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def varint(value: int) -> bytes:
    """Encode a zigzag varint (signed 32-bit)."""
    if not -0x80000000 <= value <= 0x7FFFFFFF:
        raise EncodeError(f"varint out of range: {value}")
    return uvarint((value << 1) ^ (value >> 31))


def varlong(value: int) -> bytes:
    """Encode a zigzag varlong (signed 64-bit)."""
    if not -(1 << 63) <= value < (1 << 63):
        raise EncodeError(f"varlong out of range: {value}")
    raw = ((value << 1) ^ (value >> 63)) & 0xFFFFFFFFFFFFFFFF
    out = bytearray()
    while raw >= 0x80:
        out.append((raw & 0x7F) | 0x80)
        raw >>= 7
    out.append(raw)
    return bytes(out)


def skip_tagged_fields(buf: memoryview, pos: int) -> int:
    """Skip a tagged-field section none of whose tags we know; return the new pos."""
    count, pos = read_uvarint(buf, pos)
    end = len(buf)
    for _ in range(count):
        _tag, pos = read_uvarint(buf, pos)
        size, pos = read_uvarint(buf, pos)
        pos += size
        if pos > end:
            raise DecodeError("tagged field runs past the end of the frame")
    return pos


def _as_bytes_view(part: Buffer) -> Buffer:
    if isinstance(part, memoryview) and (part.format != "B" or part.ndim != 1):
        return part.cast("B")
    if not isinstance(part, bytes | bytearray | memoryview):
        raise EncodeError(f"records must be bytes-like, not {type(part).__name__}")
    return part


def put_records(
    value: object, out: bytearray, parts: list[Buffer], compact: bool
) -> bytearray:
    """Write a records field: its length, then its buffers, uncopied when large.

    ``value`` is None, one buffer, or a tuple/list of buffers (segment slices). Large
    buffers are appended to ``parts`` as they are, after ``out``; the caller then
    continues in the fresh bytearray returned.
    """
    if value is None:
        if compact:
            out.append(0)
        else:
            out += b"\xff\xff\xff\xff"
        return out
    if isinstance(value, tuple | list):
        chunks = [_as_bytes_view(p) for p in value]
    else:
        chunks = [_as_bytes_view(value)]  # type: ignore[arg-type]
    total = sum(len(c) for c in chunks)
    if compact:
        out += uvarint(total + 1)
    else:
        if total > 0x7FFFFFFF:
            raise EncodeError("records longer than 2 GiB")
        out += _INT32.pack(total)
    if total <= SMALL_RECORDS:
        for c in chunks:
            out += c
        return out
    parts.append(out)
    parts.extend(chunks)
    return bytearray()


def join_parts(out: bytearray, parts: list[Buffer]) -> bytes:
    """Join what an encoder produced (``parts`` then the last ``out``) into bytes."""
    if not parts:
        return bytes(out)
    return b"".join([*parts, out])


# Arrays of fixed-size primitives are packed and unpacked with one Struct per
# element count, cached for the counts that occur often.
_CACHED_COUNTS: Final = 128


class ArrayStructs(dict[int, struct.Struct]):
    """``cache[n]``: the Struct of ``n`` elements of one code (e.g. ``i``)."""

    def __init__(self, code: str, prefix: str = "") -> None:
        super().__init__()
        self.code = code
        self.prefix = prefix

    def __missing__(self, count: int) -> struct.Struct:
        packer = struct.Struct(f">{self.prefix}{count}{self.code}")
        if count < _CACHED_COUNTS:
            self[count] = packer
        return packer


class _LongCompactArray:
    """Packs ``count + 1`` as an unsigned varint, then the elements (count ≥ 127)."""

    __slots__ = ("elements",)

    def __init__(self, elements: struct.Struct) -> None:
        self.elements = elements

    def pack(self, length_plus_one: int, *values: object) -> bytes:
        return uvarint(length_plus_one) + self.elements.pack(*values)


class CompactArrayStructs(dict[int, "struct.Struct | _LongCompactArray"]):
    """``cache[n].pack(n + 1, *values)``: a compact array's length and elements."""

    def __init__(self, code: str) -> None:
        super().__init__()
        self.code = code

    def __missing__(self, count: int) -> struct.Struct | _LongCompactArray:
        packer: struct.Struct | _LongCompactArray
        if count < 127:
            packer = struct.Struct(f">B{count}{self.code}")
        else:
            packer = _LongCompactArray(struct.Struct(f">{count}{self.code}"))
        if count < _CACHED_COUNTS:
            self[count] = packer
        return packer


# One item of a packed run: ("fixed", code), ("array", element code, compact) or
# ("string", "", compact) (bytes too). Arrays and strings carry their length prefix:
# int32/int16 when classic, an unsigned varint of length + 1 when compact.
RunItem = tuple[str, str, bool]
_MAX_RUN_FORMATS: Final = 4096


class _SlowRun:
    """Packs a run whose compact lengths need multi-byte varints (length ≥ 127)."""

    __slots__ = ("counts", "items")

    def __init__(self, items: tuple[RunItem, ...], counts: tuple[int, ...]) -> None:
        self.items = items
        self.counts = counts

    def pack(self, *args: object) -> bytes:
        out = bytearray()
        it = iter(args)
        counts = iter(self.counts)
        for kind, code, compact in self.items:
            if kind == "fixed":
                out += struct.pack(">" + code, next(it))
                continue
            count = next(counts)
            length = next(it)
            assert isinstance(length, int)
            if compact:
                out += uvarint(length)
            else:
                out += struct.pack(">h" if kind == "string" else ">i", length)
            if kind == "string":
                data = next(it)
                assert isinstance(data, bytes)
                out += data
            else:
                out += struct.pack(f">{count}{code}", *(next(it) for _ in range(count)))
        return bytes(out)


class RunStructs(dict[tuple[int, ...], "struct.Struct | _SlowRun"]):
    """``cache[counts].pack(...)``: one pack for a run with arrays or strings in it.

    ``counts`` are the element counts (byte lengths for strings) of the run's
    variable items, in order; the Struct is built once per distinct ``counts``.
    """

    def __init__(self, items: tuple[RunItem, ...]) -> None:
        super().__init__()
        self.run = items

    def __missing__(self, counts: tuple[int, ...]) -> struct.Struct | _SlowRun:
        fmt = [">"]
        remaining = iter(counts)
        packer: struct.Struct | _SlowRun | None = None
        for kind, code, compact in self.run:
            if kind == "fixed":
                fmt.append(code)
                continue
            count = next(remaining)
            if compact and count >= 127:
                packer = _SlowRun(self.run, counts)
                break
            prefix = "B" if compact else ("h" if kind == "string" else "i")
            fmt.append(f"{prefix}{count}{'s' if kind == 'string' else code}")
        if packer is None:
            packer = struct.Struct("".join(fmt))
        if len(self) < _MAX_RUN_FORMATS:
            self[counts] = packer
        return packer
