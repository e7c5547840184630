"""Every request and response frame we encode equals kio's encoding, byte for byte.

kio (a test-only oracle generated from Kafka's JSON message definitions) has one
dataclass per API version. Our objects are mapped onto kio's generically, by walking
kio's dataclass fields and their ``kafka_type`` metadata: ``*_ms`` fields that kio
turns into timedeltas/datetimes, error codes into kio's enum, UUIDs into ``uuid.UUID``,
nested structures recursively. Values kio cannot represent (unknown error codes,
timestamps beyond datetime's range) are first normalised in our object too, so both
sides encode the same message. API versions kio lacks are not compared (see
``UNCOMPARED``).
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kio.index import KioIndexError, load_request_schema, load_response_schema
from kio.schema.errors import ErrorCode as KioErrorCode
from kio.serial import entity_writer
from kio.serial._introspect import (
    EntityField,
    EntityTupleField,
    PrimitiveTupleField,
    classify_field,
)

from protocol import codec
from protocol.headers import RequestHeader
from protocol.messages import MODULES, load_all
from protocol.schema import REGISTRY, message_spec
from tests.strategies import messages

# Messages load lazily per API key; these tests cover every schema.
load_all()
assert len(REGISTRY) == 2 * len(MODULES)

_KIO_CODES = sorted(int(c) for c in KioErrorCode)


def _kio_class(api_key: int, kind: str, version: int) -> type | None:
    load = load_request_schema if kind == "request" else load_response_schema
    try:
        return load(api_key, version)
    except (KioIndexError, ImportError):
        return None


def _cases() -> tuple[list[object], list[str]]:
    cases, missing = [], []
    for (api_key, kind), cls in sorted(REGISTRY.items()):
        valid = message_spec(cls).valid
        for version in range(valid.low, valid.high + 1):
            kio_cls = _kio_class(api_key, kind, version)
            if kio_cls is None:
                missing.append(f"{cls.__name__} v{version}")
                continue
            cases.append(
                pytest.param(cls, kio_cls, version, id=f"{cls.__name__}-v{version}")
            )
    return cases, missing


CASES, UNCOMPARED = _cases()


def _scalar(value: object, kafka_type: str) -> tuple[object, object]:
    """(our normalised value, kio's value) for one primitive."""
    match kafka_type:
        case "error_code":
            assert isinstance(value, int)
            code = _KIO_CODES[value % len(_KIO_CODES)]
            return code, KioErrorCode(code)
        case "timedelta_i32" | "timedelta_i64":
            assert isinstance(value, int)
            ms = value if kafka_type == "timedelta_i32" else value % 2**40
            return ms, datetime.timedelta(milliseconds=ms)
        case "datetime_i64":
            assert isinstance(value, int)
            if value == -1:
                return -1, None
            ms = value % 2**42
            return ms, datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)
        case "uuid":
            assert isinstance(value, bytes)
            return value, uuid.UUID(bytes=value)
        case "bytes" | "records":
            assert isinstance(value, bytes | memoryview)
            return value, bytes(value)
        case _:
            return value, value


def to_kio(obj: object, kio_cls: type) -> tuple[object, object]:
    """(our object normalised, the equal kio object)."""
    ours = {f.name for f in dataclasses.fields(obj)}  # type: ignore[arg-type]
    our_kw, kio_kw = {}, {}
    for kf in dataclasses.fields(kio_cls):
        name = kf.name if kf.name in ours else f"{kf.name}_ms"
        assert name in ours, f"{type(obj).__name__} lacks kio's {kf.name}"
        value = getattr(obj, name)
        kafka_type = kf.metadata.get("kafka_type", "")
        shape = classify_field(kf)
        if value is None:
            our_v, kio_v = None, None
        elif isinstance(shape, EntityField):
            our_v, kio_v = to_kio(value, shape.type_)
        elif isinstance(shape, EntityTupleField | PrimitiveTupleField):
            pairs = [
                to_kio(v, shape.type_)
                if isinstance(shape, EntityTupleField)
                else _scalar(v, kafka_type)
                for v in value
            ]
            our_v = tuple(p[0] for p in pairs)
            kio_v = tuple(p[1] for p in pairs)
        else:
            our_v, kio_v = _scalar(value, kafka_type)
        our_kw[name], kio_kw[kf.name] = our_v, kio_v
    return dataclasses.replace(obj, **our_kw), kio_cls(**kio_kw)  # type: ignore[type-var]


def kio_bytes(entity: object) -> bytes:
    buffer = io.BytesIO()
    entity_writer(type(entity))(buffer, entity)  # type: ignore[arg-type]
    return buffer.getvalue()


ORACLE = settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@pytest.mark.parametrize(("cls", "kio_cls", "version"), CASES)
def test_frame_matches_kio(cls: type, kio_cls: type, version: int) -> None:
    """Our frame (header and body) is byte-identical to kio's for the same message."""
    spec = message_spec(cls)

    @ORACLE
    @given(
        messages(cls, version),
        st.integers(0, 2**31 - 1),
        st.none() | st.text(max_size=8),
    )
    def check(obj: object, correlation_id: int, client_id: str | None) -> None:
        ours, theirs = to_kio(obj, kio_cls)
        header = RequestHeader(
            request_api_key=spec.api_key,
            request_api_version=version,
            correlation_id=correlation_id,
            client_id=client_id,
        )
        kio_header_cls = kio_cls.__header_schema__  # type: ignore[attr-defined]
        if spec.kind == "request":
            kio_header = kio_header_cls(
                request_api_key=spec.api_key,
                request_api_version=version,
                correlation_id=correlation_id,
                client_id=client_id,
            )
            got = codec.encode_request(header, ours)
        else:
            kio_header = kio_header_cls(correlation_id=correlation_id)
            got = b"".join(codec.encode_response(header, ours))
        body = kio_bytes(kio_header) + kio_bytes(theirs)
        assert got[4:].hex() == body.hex()
        assert int.from_bytes(got[:4], "big") == len(body)

    check()


def test_oracle_covers_the_core_apis() -> None:
    """kio covers every version of the APIs a client needs first."""
    compared = {p.id.rsplit("-v", 1)[0] for p in CASES}  # type: ignore[attr-defined]
    for name in ("ApiVersionsRequest", "ApiVersionsResponse"):
        assert name in compared


@pytest.mark.parametrize("size", [126, 127, 128, 300])
@pytest.mark.parametrize("version", [1, 9, 12])
def test_long_strings_and_arrays_match_kio(size: int, version: int) -> None:
    """Strings and arrays of 127+ items (two-byte compact lengths) match kio."""
    from protocol.messages.metadata import (
        MetadataResponse,
        MetadataResponseBroker,
        MetadataResponsePartition,
        MetadataResponseTopic,
    )

    partition = MetadataResponsePartition(
        partition_index=3,
        leader_id=1,
        replica_nodes=tuple(range(size)),
        isr_nodes=tuple(range(size - 1)),
    )
    response = MetadataResponse(
        brokers=(MetadataResponseBroker(node_id=1, host="h" * size, port=9092),),
        topics=(MetadataResponseTopic(name="t" * size, partitions=(partition,) * 2),),
    )
    kio_cls = load_response_schema(3, version)
    ours, theirs = to_kio(response, kio_cls)
    assert codec.encode(ours, version) == kio_bytes(theirs)
    assert codec.decode(MetadataResponse, version, codec.encode(ours, version)) == ours
