"""Checks the message schemas (produce, fetch, metadata, group APIs...) against kio.

For every class declared and every version kio generates, the fields present in that
version must match kio's dataclass fields: names in order, wire types, tags,
nullability and Kafka's non-zero defaults, recursing into nested structures; and every
version must round-trip through protocol.codec with every field set. Versions kio lacks (Kafka 4 dropped
them: Produce v0–2, Fetch v0–3, ListOffsets v0, OffsetCommit v0–1, OffsetFetch v0)
are checked field by field against kafka-python's hand-written schemas for them.
"""

from __future__ import annotations

import importlib
import typing
import warnings
from collections.abc import Iterator

import pytest

from protocol.codec import decode, encode
from protocol.schema import FieldType, field_specs, message_spec
from tests.protocol._kio_compare import KioOracle, present

# module name -> (request class name, response class name)
MODULES: dict[str, tuple[str, str]] = {
    "produce": ("ProduceRequest", "ProduceResponse"),
    "fetch": ("FetchRequest", "FetchResponse"),
    "metadata": ("MetadataRequest", "MetadataResponse"),
    "list_offsets": ("ListOffsetsRequest", "ListOffsetsResponse"),
    "find_coordinator": ("FindCoordinatorRequest", "FindCoordinatorResponse"),
    "join_group": ("JoinGroupRequest", "JoinGroupResponse"),
    "sync_group": ("SyncGroupRequest", "SyncGroupResponse"),
    "heartbeat": ("HeartbeatRequest", "HeartbeatResponse"),
    "leave_group": ("LeaveGroupRequest", "LeaveGroupResponse"),
    "offset_commit": ("OffsetCommitRequest", "OffsetCommitResponse"),
    "offset_fetch": ("OffsetFetchRequest", "OffsetFetchResponse"),
    "list_groups": ("ListGroupsRequest", "ListGroupsResponse"),
}

# module name -> (API key, lowest and highest version it must cover at least)
REQUIRED: dict[str, tuple[int, int, int]] = {
    "produce": (0, 0, 11),
    "fetch": (1, 0, 13),
    "metadata": (3, 0, 13),
    "list_offsets": (2, 0, 8),
    "find_coordinator": (10, 0, 4),
    "join_group": (11, 0, 9),
    "sync_group": (14, 0, 5),
    "heartbeat": (12, 0, 4),
    "leave_group": (13, 0, 5),
    "offset_commit": (8, 0, 8),
    "offset_fetch": (9, 0, 8),
    "list_groups": (16, 0, 4),
}

ORACLE = KioOracle(names=MODULES)


@pytest.mark.parametrize(("mod", "kind", "version"), ORACLE.cases())
def test_fields_match_kio(mod: str, kind: int, version: int) -> None:
    """Our fields in this version are kio's: names, types, tags, nullability."""
    ORACLE.check_fields(mod, kind, version)


@pytest.mark.parametrize(("mod", "kind", "version"), ORACLE.cases())
def test_flexibility_matches_kio(mod: str, kind: int, version: int) -> None:
    """A version is flexible in our schema exactly when kio says so."""
    ORACLE.check_flexibility(mod, kind, version)


@pytest.mark.parametrize("mod", list(MODULES))
def test_declares_required_versions(mod: str) -> None:
    """Each module registers its API key and covers at least the required range."""
    key, low, high = REQUIRED[mod]
    for kind, name in enumerate(("request", "response")):
        spec = message_spec(ORACLE.ours(mod, kind))
        assert spec.api_key == key
        assert spec.kind == name
        assert spec.valid.low <= low
        assert spec.valid.high >= high
        # every version above the lowest kio has is covered by kio (checked above)
        kio_versions = [
            v
            for v in range(spec.valid.low, spec.valid.high + 1)
            if ORACLE.kio(mod, v, kind) is not None
        ]
        assert kio_versions == list(range(kio_versions[0], spec.valid.high + 1))


# Versions Kafka 4 dropped, so kio lacks them: (module, kafka-python module, version).
OLD_VERSIONS = [
    ("produce", "produce", 0),
    ("produce", "produce", 1),
    ("produce", "produce", 2),
    ("fetch", "fetch", 0),
    ("fetch", "fetch", 1),
    ("fetch", "fetch", 2),
    ("fetch", "fetch", 3),
    ("list_offsets", "list_offsets", 0),
    ("offset_commit", "commit", 0),
    ("offset_commit", "commit", 1),
    ("offset_fetch", "commit", 0),
]

# kafka-python's type classes, by the wire type name we use.
KAFKA_PYTHON_TYPES = {
    "Int8": "int8",
    "Int16": "int16",
    "Int32": "int32",
    "Int64": "int64",
    "String": "string",
    "Bytes": "bytes",
    "Boolean": "bool",
}


def _shape_ours(cls: type, version: int) -> list[tuple[str, object]]:
    """Our fields at ``version`` as (name, wire type or nested shape)."""
    shape: list[tuple[str, object]] = []
    for name, spec in present(cls, version):
        t: FieldType[object] = spec.type
        element = t.of if t.name == "array" else t
        assert element is not None
        inner: object
        if element.struct is not None:
            inner = _shape_ours(element.struct, version)
        else:
            inner = "bytes" if element.name == "records" else element.name
        shape.append((name, ("array", inner) if t.name == "array" else inner))
    return shape


def _shape_kafka_python(schema: object) -> object:
    """A kafka-python ``Schema``/``Array``/primitive as the same nested shape."""
    kind = type(schema).__name__
    if kind == "Schema":
        names = typing.cast("tuple[str, ...]", schema.names)  # type: ignore[attr-defined]
        fields = typing.cast("tuple[object, ...]", schema.fields)  # type: ignore[attr-defined]
        return [
            (n, _shape_kafka_python(fl)) for n, fl in zip(names, fields, strict=True)
        ]
    if kind == "Array":
        return ("array", _shape_kafka_python(schema.array_of))  # type: ignore[attr-defined]
    name = schema.__name__ if isinstance(schema, type) else kind
    return KAFKA_PYTHON_TYPES[name]


@pytest.mark.parametrize(("mod", "old", "version"), OLD_VERSIONS)
@pytest.mark.parametrize("kind", [0, 1])
def test_old_versions_match_kafka_python(
    mod: str, old: str, version: int, kind: int
) -> None:
    """Versions kio lacks match kafka-python's schemas: names, order, wire types."""
    assert ORACLE.kio(mod, version, kind) is None
    with warnings.catch_warnings():
        # importing kafka-python reads its resources with a deprecated API
        warnings.simplefilter("ignore", DeprecationWarning)
        module = importlib.import_module(f"kafka.protocol.old.{old}")
    theirs = getattr(module, f"{MODULES[mod][kind]}_v{version}").SCHEMA
    assert _shape_ours(ORACLE.ours(mod, kind), version) == _shape_kafka_python(theirs)


def test_old_fields_removed_later() -> None:
    """Fields of dropped versions end where Kafka's older definitions end them."""
    from protocol.messages.list_offsets import (
        ListOffsetsPartition,
        ListOffsetsPartitionResponse,
    )
    from protocol.messages.offset_commit import (
        OffsetCommitRequest,
        OffsetCommitRequestPartition,
    )

    specs = dict(field_specs(ListOffsetsPartition))
    assert str(specs["max_num_offsets"].versions) == "0-0"
    assert ListOffsetsPartition().max_num_offsets == 1
    specs = dict(field_specs(ListOffsetsPartitionResponse))
    assert str(specs["old_style_offsets"].versions) == "0-0"
    specs = dict(field_specs(OffsetCommitRequestPartition))
    assert str(specs["commit_timestamp"].versions) == "1-1"
    specs = dict(field_specs(OffsetCommitRequest))
    assert str(specs["retention_time_ms"].versions) == "2-4"
    assert OffsetCommitRequest().retention_time_ms == -1


# A non-default value of each wire type, to fill every field a version carries.
SAMPLES: dict[str, object] = {
    "int8": 7,
    "int16": 3,
    "uint16": 9,
    "int32": 100,
    "int64": 1234567890123,
    "bool": True,
    "string": "s",
    "bytes": b"xy",
    "uuid": bytes(range(16)),
    "records": b"records",
    "float64": 1.5,
}


def _sample(t: FieldType[object], version: int, null: bool) -> object:
    if null and version in t.nullable and t.name != "records":
        return None
    if t.name == "array":
        assert t.of is not None
        return tuple(_sample(t.of, version, null) for _ in range(2))
    if t.name == "struct":
        assert t.struct is not None
        return _filled(t.struct, version, null)
    return SAMPLES[t.name]


def _filled(cls: type, version: int, null: bool) -> object:
    """An instance with every field present in ``version`` set (or null if it may be)."""
    values = {
        name: _sample(spec.type, version, null)
        for name, spec in field_specs(cls)
        if version in spec.versions
    }
    return cls(**values)


def _all_versions() -> Iterator[tuple[str, int, int]]:
    for mod in MODULES:
        for kind in (0, 1):
            spec = message_spec(ORACLE.ours(mod, kind))
            for version in range(spec.valid.low, spec.valid.high + 1):
                yield mod, kind, version


@pytest.mark.parametrize(("mod", "kind", "version"), list(_all_versions()))
@pytest.mark.parametrize("null", [False, True])
def test_round_trips_through_codec(
    mod: str, kind: int, version: int, null: bool
) -> None:
    """A message with every field of its version set decodes back to itself."""
    cls = ORACLE.ours(mod, kind)
    obj = _filled(cls, version, null)
    assert decode(cls, version, encode(obj, version)) == obj
