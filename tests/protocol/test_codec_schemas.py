"""The compiler on test-only schemas: every wire type, nesting, tags, nulls."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings

from protocol.compiler import DECODE_FAILURES, decoder_for_struct, encoder_for_struct
from protocol.errors import DecodeError
from protocol.primitives import join_parts
from protocol.schema import (
    BOOL,
    BYTES,
    FLOAT64,
    INT8,
    INT16,
    INT32,
    INT64,
    RECORDS,
    STRING,
    UINT16,
    UINT32,
    UUID,
    Array,
    FieldType,
    Nullable,
    Struct,
    f,
    struct,
)
from tests.strategies import messages

VARINT: FieldType[int] = FieldType("varint")
VARLONG: FieldType[int] = FieldType("varlong")


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class Leaf:
    a: int = f(INT32)
    note: str | None = f(Nullable(STRING), versions="1+", tag=0)


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class Inner:
    leaf: Leaf = f(Struct(Leaf), versions="1+", tag=5)
    leaves: tuple[Leaf, ...] = f(Array(Leaf))
    flag: bool = f(BOOL, versions="1+", tag=1, default=True)


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class Everything:
    b: bool = f(BOOL)
    i8: int = f(INT8)
    i16: int = f(INT16)
    u16: int = f(UINT16)
    i32: int = f(INT32)
    u32: int = f(UINT32)
    i64: int = f(INT64)
    vi: int = f(VARINT)
    vl: int = f(VARLONG)
    d: float = f(FLOAT64)
    uid: bytes = f(UUID)
    s: str = f(STRING)
    ns: str | None = f(Nullable(STRING))
    by: bytes = f(BYTES)
    nby: bytes | None = f(Nullable(BYTES))
    recs: object = f(RECORDS)
    ints: tuple[int, ...] = f(Array(INT64))
    nints: tuple[int, ...] | None = f(Nullable(Array(INT32)))
    flags: tuple[bool, ...] = f(Array(BOOL))
    uids: tuple[bytes, ...] = f(Array(UUID))
    names: tuple[str, ...] = f(Array(STRING))
    inner: Inner = f(Struct(Inner))
    maybe: Inner | None = f(Nullable(Struct(Inner)))
    tagged_inner: Inner = f(Struct(Inner), versions="1+", tag=3)
    tagged_ints: tuple[int, ...] = f(Array(INT32), versions="1+", tag=1)


def round_trip(obj: object, version: int, flexible: bool) -> object:
    enc = encoder_for_struct(Everything, version, flexible)
    parts: list[object] = []
    data = join_parts(enc(obj, bytearray(), parts), parts)  # type: ignore[arg-type]
    got, pos = decoder_for_struct(Everything, version, flexible)(memoryview(data), 0)
    assert pos == len(data)
    return got


@settings(max_examples=60, deadline=None)
@given(messages(Everything, 1))
def test_every_type_round_trips_flexible(obj: Everything) -> None:
    """Every wire type, nested and tagged structs round-trip in a flexible version."""
    assert round_trip(obj, 1, True) == obj


@settings(max_examples=60, deadline=None)
@given(messages(Everything, 0))
def test_every_type_round_trips_classic(obj: Everything) -> None:
    """Every wire type round-trips in a non-flexible version."""
    assert round_trip(obj, 0, False) == obj


def test_nested_tag_sections_do_not_clobber_each_other() -> None:
    """A tagged struct whose own tag section is non-empty decodes correctly."""
    leaf = Leaf(a=7, note="x" * 200)
    inner = Inner(leaf=leaf, leaves=(leaf,), flag=False)
    obj = Everything(
        uid=b"u" * 16,
        inner=inner,
        tagged_inner=inner,
        tagged_ints=(1, 2, 3),
    )
    assert round_trip(obj, 1, True) == obj


def test_unknown_tags_are_skipped() -> None:
    """A tagged field with an unknown tag is skipped on decode."""
    dec = decoder_for_struct(Leaf, 1, True)
    # a=1, then 2 tagged fields: tag 9 (unknown, 3 bytes), tag 0 (note="hi")
    data = b"\x00\x00\x00\x01" + b"\x02" + b"\x09\x03abc" + b"\x00\x03\x03hi"
    got, pos = dec(memoryview(data), 0)
    assert got == Leaf(a=1, note="hi")
    assert pos == len(data)


@pytest.mark.parametrize(
    "data",
    [
        b"\x00\x00\x00\x01\x01\x00\xff\xff\xff\xff\x0f",  # varint size too long
        b"\x00\x00\x00\x01\x01\x00\x10ab",  # tag size past the end
        b"\x00\x00\x00\x01",  # missing tag section
    ],
)
def test_malformed_tag_sections_fail_cleanly(data: bytes) -> None:
    """Bad tag sections raise DecodeError or a DECODE_FAILURES exception."""
    dec = decoder_for_struct(Leaf, 1, True)
    with pytest.raises((DecodeError, *DECODE_FAILURES)):
        dec(memoryview(data), 0)
