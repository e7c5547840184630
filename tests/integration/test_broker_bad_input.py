"""Bad input over raw sockets: the right Kafka error or a closed connection, never harm."""

from __future__ import annotations

import random
import socket
import struct
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from protocol.codec import decode_response, encode_request
from protocol.error_codes import ErrorCode
from protocol.headers import RequestHeader
from protocol.messages.api_versions import ApiVersionsRequest, ApiVersionsResponse
from protocol.messages.metadata import MetadataRequest, MetadataRequestTopic
from protocol.messages.produce import (
    PartitionProduceData,
    ProduceRequest,
    ProduceResponse,
    TopicProduceData,
)
from protocol.record_builder import RecordInput, build_batch
from tests._broker import BrokerProcess, recv_frame, request

pytestmark = pytest.mark.integration


def _request(sock: socket.socket, api_key: int, version: int, body: object) -> object:
    return request(sock, api_key, version, body, client_id="raw-test")


def _assert_closed(sock: socket.socket) -> None:
    sock.settimeout(10)
    try:
        data = sock.recv(1)
    except ConnectionResetError:
        return
    assert data == b""


def _create_topic(broker: BrokerProcess, topic: str, *configs: str) -> None:
    with broker.connect() as sock:
        _request(
            sock,
            3,
            9,
            MetadataRequest(
                topics=(MetadataRequestTopic(name=topic),),
                allow_auto_topic_creation=True,
            ),
        )


def _client_still_works(broker: BrokerProcess) -> None:
    topic = f"alive-{random.randrange(1 << 30)}"
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    producer.produce(topic, key=b"k", value=b"alive", partition=0)
    assert producer.flush(10) == 0
    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": "x",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    msgs = []
    deadline = time.monotonic() + 10
    while not msgs and time.monotonic() < deadline:
        msgs = [m for m in consumer.consume(1, timeout=1) if m.error() is None]
    consumer.close()
    assert [m.value() for m in msgs] == [b"alive"]


def _produce(topic: str, records: bytes, acks: int = -1) -> ProduceRequest:
    return ProduceRequest(
        acks=acks,
        timeout_ms=5000,
        topic_data=(
            TopicProduceData(
                name=topic,
                partition_data=(PartitionProduceData(index=0, records=records),),
            ),
        ),
    )


def _end_offset(broker: BrokerProcess, topic: str) -> int:
    import json

    status, body = broker.http(f"/v1/topics/{topic}")
    assert status == 200
    return int(json.loads(body)["partitions"][0]["log_end_offset"])


def test_huge_size_prefix_closes_connection_without_allocating(
    broker: BrokerProcess,
) -> None:
    """A 200 MiB size prefix closes that connection with one warning; others go on."""
    with broker.connect() as other, broker.connect() as sock:
        sock.sendall(struct.pack(">i", 200 * 1024 * 1024) + b"\x00" * 100)
        _assert_closed(sock)
        resp = _request(other, 18, 3, ApiVersionsRequest(client_software_name="t"))
        assert isinstance(resp, ApiVersionsResponse)
        assert resp.error_code == 0
    warnings = broker.events("bad_request")
    assert [w["reason"] for w in warnings] == ["frame_too_large"]
    _client_still_works(broker)


def test_negative_size_prefix_closes_connection(broker: BrokerProcess) -> None:
    """A negative size prefix is a bad frame: the connection is closed."""
    with broker.connect() as sock:
        sock.sendall(struct.pack(">i", -5))
        _assert_closed(sock)


def test_truncated_and_fuzzed_frames_never_hurt_the_broker(
    broker: BrokerProcess,
) -> None:
    """Random bytes, truncated and mutated frames close at most their own connection."""
    rng = random.Random(1234)
    good = encode_request(
        RequestHeader(
            request_api_key=3, request_api_version=9, correlation_id=7, client_id="f"
        ),
        MetadataRequest(topics=None),
    )
    payloads = []
    for _ in range(40):
        mutated = bytearray(good)
        for _ in range(rng.randrange(1, 6)):
            mutated[rng.randrange(4, len(mutated))] = rng.randrange(256)
        payloads.append(bytes(mutated))
    payloads.extend(good[:cut] for cut in range(1, len(good)))
    for _ in range(20):
        body = rng.randbytes(rng.randrange(0, 200))
        payloads.append(struct.pack(">i", len(body)) + body)
    for payload in payloads:
        with broker.connect() as sock:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
            sock.settimeout(5)
            try:
                while sock.recv(65536):
                    pass
            except (ConnectionResetError, TimeoutError):
                pass
    assert broker.proc.poll() is None
    _client_still_works(broker)


def test_unsupported_api_versions_version_gets_v0_error_body(
    broker: BrokerProcess,
) -> None:
    """ApiVersions at an unknown version is answered in the v0 format with UNSUPPORTED_VERSION."""
    header = struct.pack(">hhih", 18, 99, 42, 1) + b"x"
    with broker.connect() as sock:
        sock.sendall(struct.pack(">i", len(header)) + header)
        frame = recv_frame(sock)
    resp_header, resp = decode_response(18, 0, frame)
    assert resp_header.correlation_id == 42
    assert isinstance(resp, ApiVersionsResponse)
    assert resp.error_code == ErrorCode.UNSUPPORTED_VERSION
    keys = {k.api_key: (k.min_version, k.max_version) for k in resp.api_keys}
    assert keys[18] == (0, 4)
    assert {0, 1, 3} <= set(keys)


def test_unknown_api_key_closes_connection(broker: BrokerProcess) -> None:
    """A request for an API we do not implement closes the connection."""
    header = struct.pack(">hhih", 999, 0, 1, 1) + b"x"
    with broker.connect() as sock:
        sock.sendall(struct.pack(">i", len(header)) + header)
        _assert_closed(sock)


def test_corrupt_crc_gets_corrupt_message_and_appends_nothing(
    broker: BrokerProcess,
) -> None:
    """A batch with a bad CRC is refused with CORRUPT_MESSAGE; the log is unchanged."""
    topic = "crc"
    _create_topic(broker, topic)
    batch = bytearray(build_batch([RecordInput(key=b"k", value=b"v" * 100)]))
    batch[-1] ^= 0xFF  # flip a payload byte: the CRC no longer matches
    with broker.connect() as sock:
        resp = _request(sock, 0, 9, _produce(topic, bytes(batch)))
        assert isinstance(resp, ProduceResponse)
        part = resp.responses[0].partition_responses[0]
        assert part.error_code == ErrorCode.CORRUPT_MESSAGE
        ok = _request(
            sock, 0, 9, _produce(topic, build_batch([RecordInput(value=b"ok")]))
        )
        assert isinstance(ok, ProduceResponse)
        assert ok.responses[0].partition_responses[0].error_code == 0
        assert ok.responses[0].partition_responses[0].base_offset == 0
    assert _end_offset(broker, topic) == 1
    _client_still_works(broker)


def test_record_over_max_message_bytes_gets_message_too_large(
    broker: BrokerProcess,
) -> None:
    """A batch above max.message.bytes is refused with MESSAGE_TOO_LARGE."""
    topic = "big"
    _create_topic(broker, topic)
    batch = build_batch([RecordInput(value=b"x" * 1_100_000)])
    with broker.connect() as sock:
        resp = _request(sock, 0, 9, _produce(topic, batch))
        assert isinstance(resp, ProduceResponse)
        assert resp.responses[0].partition_responses[0].error_code == (
            ErrorCode.MESSAGE_TOO_LARGE
        )
    assert _end_offset(broker, topic) == 0
    _client_still_works(broker)


def test_unknown_topic_and_partition_errors(broker: BrokerProcess) -> None:
    """Produce to a missing topic or partition gets UNKNOWN_TOPIC_OR_PARTITION."""
    _create_topic(broker, "one")
    batch = build_batch([RecordInput(value=b"x")])
    req = ProduceRequest(
        acks=1,
        timeout_ms=1000,
        topic_data=(
            TopicProduceData(
                name="missing",
                partition_data=(PartitionProduceData(index=0, records=batch),),
            ),
            TopicProduceData(
                name="one",
                partition_data=(PartitionProduceData(index=5, records=batch),),
            ),
        ),
    )
    with broker.connect() as sock:
        resp = _request(sock, 0, 9, req)
    assert isinstance(resp, ProduceResponse)
    codes = [r.partition_responses[0].error_code for r in resp.responses]
    assert codes == [ErrorCode.UNKNOWN_TOPIC_OR_PARTITION] * 2


def test_pipelined_requests_are_answered_in_order(broker: BrokerProcess) -> None:
    """Responses come back in request order even when acks=all ones wait for fsync."""
    _create_topic(broker, "pipe")
    frames = []
    for i in range(50):
        api = 0 if i % 2 else 18
        header = RequestHeader(
            request_api_key=api,
            request_api_version=9 if api == 0 else 3,
            correlation_id=1000 + i,
            client_id="p",
        )
        body: object = (
            _produce("pipe", build_batch([RecordInput(value=b"%d" % i)]))
            if api == 0
            else ApiVersionsRequest(client_software_name="p")
        )
        frames.append(encode_request(header, body))
    acks0 = encode_request(
        RequestHeader(
            request_api_key=0, request_api_version=9, correlation_id=5000, client_id="p"
        ),
        _produce("pipe", build_batch([RecordInput(value=b"z")]), acks=0),
    )
    with broker.connect() as sock:
        sock.sendall(b"".join(frames[:25]) + acks0 + b"".join(frames[25:]))
        seen = [struct.unpack_from(">i", recv_frame(sock))[0] for _ in range(50)]
    assert seen == [1000 + i for i in range(50)]
    assert _end_offset(broker, "pipe") == 26


def _legacy_set(magic: int, *values: bytes) -> bytes:
    """A magic-0/1 message set as a pre-0.11 client sends it (kafka-python's builder)."""
    from kafka.record.legacy_records import LegacyRecordBatchBuilder

    builder = LegacyRecordBatchBuilder(
        magic=magic, compression_type=0, batch_size=1 << 20
    )
    for i, value in enumerate(values):
        builder.append(
            i,
            timestamp=None if magic == 0 else 1_700_000_000_000,
            key=None,
            value=value,
        )
    return bytes(builder.build())


@pytest.mark.parametrize("version", [0, 1, 2])
def test_produce_v0_to_v2_gets_unsupported_version_in_its_own_format(
    broker: BrokerProcess, version: int
) -> None:
    """Produce v0-2 is advertised (librdkafka, KAFKA-18659) but refused: every
    partition answers UNSUPPORTED_VERSION in that version's response format,
    nothing is appended and the connection stays usable."""
    topic = f"legacy-v{version}"
    _create_topic(broker, topic)
    records = _legacy_set(0 if version < 2 else 1, b"old-1", b"old-2")
    with broker.connect() as sock:
        resp = _request(sock, 0, version, _produce(topic, records))
        assert isinstance(resp, ProduceResponse)
        [topic_resp] = resp.responses
        assert topic_resp.name == topic
        [part] = topic_resp.partition_responses
        assert (part.index, part.error_code, part.base_offset) == (
            0,
            ErrorCode.UNSUPPORTED_VERSION,
            -1,
        )
        # The same connection still serves a current request.
        ok = _request(
            sock, 0, 9, _produce(topic, build_batch([RecordInput(value=b"new")]))
        )
        assert isinstance(ok, ProduceResponse)
        assert ok.responses[0].partition_responses[0].error_code == 0
        assert ok.responses[0].partition_responses[0].base_offset == 0
    assert _end_offset(broker, topic) == 1


@pytest.mark.parametrize("magic", [0, 1])
def test_legacy_message_set_in_produce_v3_plus_is_refused(
    broker: BrokerProcess, magic: int
) -> None:
    """A magic-0/1 message set inside Produce v3+ gets INVALID_RECORD (Kafka's
    ProduceRequest.validateRecords) and nothing is appended."""
    topic = f"legacy-magic{magic}"
    _create_topic(broker, topic)
    with broker.connect() as sock:
        for version in (3, 9):
            resp = _request(sock, 0, version, _produce(topic, _legacy_set(magic, b"x")))
            assert isinstance(resp, ProduceResponse)
            part = resp.responses[0].partition_responses[0]
            assert part.error_code == ErrorCode.INVALID_RECORD
            assert part.base_offset == -1
        ok = _request(
            sock, 0, 9, _produce(topic, build_batch([RecordInput(value=b"v2")]))
        )
        assert isinstance(ok, ProduceResponse)
        assert ok.responses[0].partition_responses[0].base_offset == 0
    assert _end_offset(broker, topic) == 1
