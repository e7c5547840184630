"""The codec entry points: headers, KIP-511, errors, zero-copy records."""

from __future__ import annotations

import struct

import pytest

from protocol import codec
from protocol.errors import DecodeError, EncodeError, UnsupportedVersion
from protocol.headers import RequestHeader
from protocol.messages import MODULES, load_all
from protocol.messages.api_versions import (
    ApiVersion,
    ApiVersionsRequest,
    ApiVersionsResponse,
)
from protocol.schema import REGISTRY

# Messages load lazily per API key; these tests cover every schema.
load_all()
assert len(REGISTRY) == 2 * len(MODULES)


def header(api_key: int, version: int, correlation_id: int = 42) -> RequestHeader:
    return RequestHeader(
        request_api_key=api_key,
        request_api_version=version,
        correlation_id=correlation_id,
        client_id="cli",
    )


def test_decodes_librdkafka_style_api_versions_v3() -> None:
    """A flexible ApiVersions v3 request uses header v2 with a classic client id."""
    frame = (
        struct.pack(">hhih", 18, 3, 1, 7)
        + b"rdkafka"
        + b"\x00"  # header tagged fields
        + b"\x0blibrdkafka"  # compact string, length + 1
        + b"\x062.6.0"
        + b"\x00"
    )
    got_header, request = codec.decode_request(frame)
    assert got_header == RequestHeader(
        request_api_key=18, request_api_version=3, correlation_id=1, client_id="rdkafka"
    )
    assert request == ApiVersionsRequest(
        client_software_name="librdkafka", client_software_version="2.6.0"
    )


@pytest.mark.parametrize("version", [0, 1, 2, 3, 4])
def test_api_versions_response_always_uses_header_v0(version: int) -> None:
    """ApiVersions responses carry header v0 even in flexible versions (KIP-511)."""
    response = ApiVersionsResponse(
        api_keys=(ApiVersion(api_key=18, min_version=0, max_version=4),)
    )
    data = b"".join(codec.encode_response(header(18, version, 99), response))
    body = codec.encode(response, version)
    assert data == struct.pack(">ii", 4 + len(body), 99) + body


def test_flexible_responses_use_header_v1() -> None:
    """Other flexible responses carry header v1 (an empty tagged-field section)."""
    api_key, version, cls = next(
        (key, v, cls)
        for (key, kind), cls in sorted(REGISTRY.items())
        if kind == "response" and key != 18
        for v in [cls.__kafka_message__.flexible.low]
        if v in cls.__kafka_message__.valid
    )
    response = cls()
    data = b"".join(codec.encode_response(header(api_key, version, 5), response))
    assert data[4:9] == struct.pack(">i", 5) + b"\x00"
    assert data[9:] == codec.encode(response, version)


def test_unknown_api_key_raises_unsupported_version_with_header_fields() -> None:
    """An unknown API key raises UnsupportedVersion carrying the correlation id."""
    frame = struct.pack(">hhih", 999, 0, 1234, 3) + b"abc"
    with pytest.raises(UnsupportedVersion) as info:
        codec.decode_request(frame)
    assert (info.value.api_key, info.value.api_version) == (999, 0)
    assert info.value.correlation_id == 1234
    assert info.value.client_id == "abc"


def test_too_new_version_raises_unsupported_version() -> None:
    """A version above the supported range raises UnsupportedVersion (KIP-511 path)."""
    frame = struct.pack(">hhih", 18, 99, 77, -1) + b"\x00\x00"
    with pytest.raises(UnsupportedVersion) as info:
        codec.decode_request(frame)
    assert info.value.correlation_id == 77
    assert info.value.client_id is None


def test_truncated_request_raises_decode_error() -> None:
    """A frame shorter than its header raises DecodeError."""
    with pytest.raises(DecodeError):
        codec.decode_request(b"\x00\x12\x00")
    with pytest.raises(DecodeError):
        codec.decode_request(struct.pack(">hhih", 18, 3, 1, 7) + b"rd")


def test_trailing_bytes_are_ignored_like_kafka() -> None:
    """Bytes after the request body are ignored, as Kafka's parser ignores them."""
    frame = struct.pack(">hhih", 18, 0, 1, -1) + b"junk"
    assert codec.decode_request(frame)[1] == ApiVersionsRequest()


def test_encoding_null_into_non_nullable_field_raises() -> None:
    """None where the version allows no null raises EncodeError, not garbage."""
    bad = ApiVersionsRequest(client_software_name=None)  # type: ignore[arg-type]
    with pytest.raises(EncodeError):
        codec.encode(bad, 3)
    with pytest.raises(EncodeError):
        codec.encode_request(header(18, 3), bad)


def test_encoding_out_of_range_integer_raises() -> None:
    """An int16 field holding 2**15 raises EncodeError."""
    bad = ApiVersionsResponse(error_code=2**15)
    with pytest.raises(EncodeError):
        codec.encode_response(header(18, 0), bad)


def test_encoding_the_wrong_response_class_raises() -> None:
    """A response object of another API raises EncodeError."""
    with pytest.raises(EncodeError):
        codec.encode_response(header(18, 0), ApiVersionsRequest())


def test_supported_versions_lists_api_versions() -> None:
    """supported_versions reports each API's range from the registry."""
    assert codec.supported_versions()[18] == (0, 4)
    assert codec.request_class(18) is ApiVersionsRequest
    assert codec.response_class(18) is ApiVersionsResponse


def test_produce_records_decode_as_a_view_into_the_frame() -> None:
    """A Produce request's records are a zero-copy memoryview slice of the frame."""
    from protocol.messages.produce import (
        PartitionProduceData,
        ProduceRequest,
        TopicProduceData,
    )

    records = bytes(range(256)) * 64
    request = ProduceRequest(
        acks=-1,
        timeout_ms=1000,
        topic_data=(
            TopicProduceData(
                name="t",
                partition_data=(PartitionProduceData(index=0, records=records),),
            ),
        ),
    )
    for version in (3, 9):
        frame = memoryview(codec.encode_request(header(0, version), request))[4:]
        _, got = codec.decode_request(frame)
        view = got.topic_data[0].partition_data[0].records  # type: ignore[attr-defined]
        assert isinstance(view, memoryview)
        assert view.obj is frame.obj
        assert view == records


@pytest.mark.parametrize("version", [4, 11, 12])
def test_fetch_records_are_passed_through_uncopied(version: int) -> None:
    """Large record buffers appear in encode_response's output as the same objects."""
    from protocol.messages.fetch import (
        FetchableTopicResponse,
        FetchResponse,
        PartitionData,
    )

    first, second = memoryview(b"a" * 4096), b"b" * 8192
    response = FetchResponse(
        responses=(
            FetchableTopicResponse(
                topic="t",
                partitions=(
                    PartitionData(partition_index=0, records=(first, second)),
                    PartitionData(partition_index=1, records=b"tiny"),
                ),
            ),
        ),
    )
    parts = codec.encode_response(header(1, version), response)
    assert any(p is first for p in parts)
    assert any(p is second for p in parts)
    data = b"".join(parts)
    assert int.from_bytes(data[:4], "big") == len(data) - 4
    _, decoded = codec.decode_response(1, version, data[4:])
    partitions = decoded.responses[0].partitions  # type: ignore[attr-defined]
    assert partitions[0].records == b"a" * 4096 + b"b" * 8192
    assert partitions[1].records == b"tiny"


@pytest.mark.parametrize("version", [0, 8, 9, 12, 13])
def test_an_encoded_response_is_sent_like_the_object(version: int) -> None:
    """A response body encoded once answers later requests with their own header
    (correlation id, flexible header) exactly as encoding the object would."""
    from protocol.messages.metadata import (
        MetadataResponse,
        MetadataResponseBroker,
        MetadataResponsePartition,
        MetadataResponseTopic,
    )

    response = MetadataResponse(
        brokers=(MetadataResponseBroker(node_id=1, host="h", port=9092, rack=None),),
        cluster_id="c",
        controller_id=1,
        topics=(
            MetadataResponseTopic(
                error_code=0,
                name="t",
                topic_id=b"\x01" * 16,
                partitions=(
                    MetadataResponsePartition(
                        error_code=0,
                        partition_index=0,
                        leader_id=1,
                        leader_epoch=3,
                        replica_nodes=(1, 2),
                        isr_nodes=(1,),
                        offline_replicas=(2,),
                    ),
                ),
            ),
        ),
    )
    encoded = codec.encode_response_body(3, version, response)
    for correlation in (1, 77):
        h = header(3, version, correlation)
        assert b"".join(codec.encode_response(h, encoded)) == b"".join(
            codec.encode_response(h, response)
        )
    with pytest.raises(EncodeError):
        codec.encode_response(header(3, 1 if version != 1 else 2), encoded)
