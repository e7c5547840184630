"""Declarative message schemas: what a Kafka message holds, in which versions.

Every request and response is declared once, as one frozen dataclass across all its
versions (Tansu, franz-go), with the facts Kafka's own JSON message definitions give
for each field: its type, the versions it exists in, the versions in which it may be
null, and, for tagged fields, its tag. Version ranges use Kafka's own syntax ("0+",
"3-7", "none") so that a schema reads like the JSON it was transcribed from::

    @message(api_key=0, kind="request", valid="0-11", flexible="9+")
    @dataclass(frozen=True, slots=True, kw_only=True)
    class ProduceRequest:
        transactional_id: str | None = f(Nullable(STRING, "3+"), versions="3+")
        acks: int = f(INT16)
        timeout_ms: int = f(INT32)
        topic_data: tuple[TopicProduceData, ...] = f(Array(TopicProduceData))

Nested structures are plain dataclasses decorated with :func:`struct`. Field names are
Kafka's JSON names in snake_case, units kept (``timeout_ms``, ``throttle_time_ms``).
Arrays are tuples. This module only describes; :mod:`protocol.codec` compiles each
(message, version) into a fast encoder and decoder once, at import time.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Generic, Literal, TypeVar, cast

T = TypeVar("T")
S = TypeVar("S")

Kind = Literal["request", "response", "header"]

# The largest version any schema may declare; "N+" ranges are open up to it.
MAX_VERSION: Final = 32767


@dataclass(frozen=True, slots=True)
class VersionRange:
    """An inclusive range of versions, parsed from Kafka's "0+", "3-7", "5" or "none"."""

    low: int
    high: int

    @classmethod
    def parse(cls, text: str) -> VersionRange:
        text = text.strip()
        if text == "none":
            return NONE
        if m := re.fullmatch(r"(\d+)\+", text):
            return cls(int(m[1]), MAX_VERSION)
        if m := re.fullmatch(r"(\d+)-(\d+)", text):
            return cls(int(m[1]), int(m[2]))
        if m := re.fullmatch(r"(\d+)", text):
            return cls(int(m[1]), int(m[1]))
        raise ValueError(f"bad version range {text!r}")

    def __contains__(self, version: object) -> bool:
        return isinstance(version, int) and self.low <= version <= self.high

    def __str__(self) -> str:
        if self.low > self.high:
            return "none"
        if self.high == MAX_VERSION:
            return f"{self.low}+"
        return f"{self.low}-{self.high}"


NONE: Final = VersionRange(1, 0)
ALL: Final = VersionRange(0, MAX_VERSION)


@dataclass(frozen=True, slots=True)
class FieldType(Generic[T]):
    """A wire type. ``name`` is Kafka's type name; ``of`` the element type of an array.

    ``nullable`` is the version range in which a null is allowed on the wire.
    ``struct`` is the dataclass of a nested structure (``name == "struct"``).
    """

    name: str
    of: FieldType[object] | None = None
    struct: type | None = None
    nullable: VersionRange = NONE

    def zero(self) -> Callable[[], T]:
        """A factory for this type's default value (Kafka's implicit defaults)."""
        if self.name == "array":
            return cast("Callable[[], T]", tuple)
        if self.name == "struct":
            assert self.struct is not None
            return cast("Callable[[], T]", self.struct)
        value = _ZEROS[self.name]
        return lambda: cast("T", value)


_ZEROS: Final[dict[str, object]] = {
    "bool": False,
    "int8": 0,
    "int16": 0,
    "uint16": 0,
    "int32": 0,
    "uint32": 0,
    "int64": 0,
    "varint": 0,
    "varlong": 0,
    "float64": 0.0,
    "uuid": b"\x00" * 16,
    "string": "",
    "bytes": b"",
    "records": None,
}

BOOL: Final[FieldType[bool]] = FieldType("bool")
INT8: Final[FieldType[int]] = FieldType("int8")
INT16: Final[FieldType[int]] = FieldType("int16")
UINT16: Final[FieldType[int]] = FieldType("uint16")
INT32: Final[FieldType[int]] = FieldType("int32")
UINT32: Final[FieldType[int]] = FieldType("uint32")
INT64: Final[FieldType[int]] = FieldType("int64")
FLOAT64: Final[FieldType[float]] = FieldType("float64")
# A UUID is kept as its 16 raw bytes; the all-zero UUID is Kafka's "no topic id".
UUID: Final[FieldType[bytes]] = FieldType("uuid")
STRING: Final[FieldType[str]] = FieldType("string")
BYTES: Final[FieldType[bytes]] = FieldType("bytes")
# Record batches: opaque bytes, nullable in every version, decoded as a zero-copy
# memoryview into the frame. An encoder also takes a sequence of buffers (segment
# slices), written one after another without joining them.
Buffer = bytes | bytearray | memoryview
RECORDS: Final[FieldType[Buffer | tuple[Buffer, ...] | None]] = FieldType(
    "records", nullable=ALL
)


def Array(of: FieldType[S] | type[S]) -> FieldType[tuple[S, ...]]:
    """An array of a wire type or of a nested structure (a :func:`struct` class)."""
    element = of if isinstance(of, FieldType) else Struct(of)
    result: FieldType[tuple[S, ...]] = FieldType(
        "array", of=cast("FieldType[object]", element)
    )
    return result


def Struct(cls: type[S]) -> FieldType[S]:
    """A single nested structure (not an array of them)."""
    result: FieldType[S] = FieldType("struct", struct=cls)
    return result


def Nullable(t: FieldType[S], versions: str = "0+") -> FieldType[S | None]:
    """``t`` that may be null in ``versions`` (Kafka's ``nullableVersions``)."""
    result: FieldType[S | None] = FieldType(
        t.name, of=t.of, struct=t.struct, nullable=VersionRange.parse(versions)
    )
    return result


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """The wire facts of one dataclass field, kept in its ``metadata``."""

    type: FieldType[object]
    versions: VersionRange
    tag: int | None
    tagged: VersionRange
    # Kafka's per-field "flexibleVersions" override: the versions in which this field
    # uses the compact encoding. None means "whenever the message is flexible". Only
    # the request header's client_id needs it ("none": always a classic string).
    flexible: VersionRange | None = None


_META_KEY: Final = "kafka"
_MISSING: Final = object()


def f(
    t: FieldType[T],
    *,
    versions: str = "0+",
    tag: int | None = None,
    tagged: str | None = None,
    default: object = _MISSING,
    flexible: str | None = None,
) -> T:
    """Declare a field: its wire type, the versions it exists in, its tag if tagged.

    ``default`` is used when a version lacks the field (Kafka's ``default``); without
    it the type's zero is used (0, "", empty tuple, None for nullable types).
    The return type lies on purpose (as ``dataclasses.field`` does): a class body
    reads ``acks: int = f(INT16)``. ``flexible`` overrides the message's flexible
    versions for this one field (Kafka's per-field ``flexibleVersions``).
    """
    if tag is not None and tagged is None:
        tagged = versions
    spec = FieldSpec(
        type=cast("FieldType[object]", t),
        versions=VersionRange.parse(versions),
        tag=tag,
        tagged=VersionRange.parse(tagged) if tagged is not None else NONE,
        flexible=VersionRange.parse(flexible) if flexible is not None else None,
    )
    metadata = {_META_KEY: spec}
    if default is not _MISSING:
        if isinstance(default, tuple | list | dict | set):
            raise TypeError("use the type's zero for containers")
        return cast("T", dataclasses.field(default=default, metadata=metadata))
    if t.nullable != NONE:
        return cast("T", dataclasses.field(default=None, metadata=metadata))
    if t.name in ("array", "struct"):
        return dataclasses.field(default_factory=t.zero(), metadata=metadata)
    return dataclasses.field(default=t.zero()(), metadata=metadata)


def field_specs(cls: type) -> list[tuple[str, FieldSpec]]:
    """The (name, spec) of each declared field of a schema dataclass, in order."""
    specs = []
    for fld in dataclasses.fields(cls):
        spec = fld.metadata.get(_META_KEY)
        if spec is None:
            raise TypeError(f"{cls.__name__}.{fld.name} is not declared with f()")
        specs.append((fld.name, spec))
    return specs


@dataclass(frozen=True, slots=True)
class MessageSpec:
    """The wire facts of a whole message: its API key, kind and version ranges."""

    api_key: int
    kind: Kind
    valid: VersionRange
    flexible: VersionRange


_SPEC_ATTR: Final = "__kafka_message__"
REGISTRY: Final[dict[tuple[int, Kind], type]] = {}


def message(
    *, api_key: int, kind: Kind, valid: str, flexible: str = "none"
) -> Callable[[type[S]], type[S]]:
    """Register a top-level request, response or header dataclass."""

    def register(cls: type[S]) -> type[S]:
        field_specs(cls)  # fail at import if a field is undeclared
        spec = MessageSpec(
            api_key=api_key,
            kind=kind,
            valid=VersionRange.parse(valid),
            flexible=VersionRange.parse(flexible),
        )
        setattr(cls, _SPEC_ATTR, spec)
        if kind != "header":
            key = (api_key, kind)
            if key in REGISTRY:
                raise TypeError(f"{kind} for api key {api_key} declared twice")
            REGISTRY[key] = cls
        return cls

    return register


def struct(cls: type[S]) -> type[S]:
    """Mark a nested structure; it takes its flexibility from the enclosing message."""
    field_specs(cls)
    return cls


def message_spec(cls: type) -> MessageSpec:
    """The :class:`MessageSpec` of a class registered with :func:`message`."""
    spec = getattr(cls, _SPEC_ATTR, None)
    if not isinstance(spec, MessageSpec):
        raise TypeError(f"{cls.__name__} is not a registered message")
    return spec
