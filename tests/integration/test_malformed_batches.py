"""Malformed record batches are partition errors, never a dropped connection.

Raw Produce frames (no client writes such batches): partition 0 of each request
carries the bad payload, partition 1 a good batch. The bad partition gets
CORRUPT_MESSAGE (INVALID_RECORD for an intact batch Kafka's rules refuse from a
client) and nothing appended, the good one is appended, and the same
connection answers the next request — for plain, idempotent and transactional
batches alike (a well-formed transactional batch is appended; a client's control
batch is refused). A real client then produces and consumes as usual.
"""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import Callable, Iterator

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from protocol.error_codes import ErrorCode
from protocol.messages.init_producer_id import (
    InitProducerIdRequest,
    InitProducerIdResponse,
)
from protocol.messages.metadata import MetadataRequest, MetadataRequestTopic
from protocol.messages.produce import (
    PartitionProduceData,
    PartitionProduceResponse,
    ProduceRequest,
    ProduceResponse,
    TopicProduceData,
)
from protocol.messages.write_txn_markers import (
    WritableTxnMarker,
    WritableTxnMarkerTopic,
    WriteTxnMarkersRequest,
    WriteTxnMarkersResponse,
)
from protocol.record_builder import (
    ControlType,
    RecordInput,
    build_batch,
    build_control_batch,
)
from protocol.records import CRC_OFFSET
from tests._broker import BrokerProcess, request

pytestmark = pytest.mark.integration

TOPIC = "malformed"
_LENGTH = struct.Struct(">i")
_BATCH_LENGTH_AT = 8


@pytest.fixture
def broker2(
    broker_factory: Callable[..., BrokerProcess],
) -> Iterator[BrokerProcess]:
    b = broker_factory("--set", "num.partitions=2")
    with b.connect() as sock:
        request(
            sock,
            3,
            9,
            MetadataRequest(
                topics=(MetadataRequestTopic(name=TOPIC),),
                allow_auto_topic_creation=True,
            ),
        )
    yield b
    assert b.stop() == 0


def _producer_id(sock: socket.socket) -> tuple[int, int]:
    resp = request(
        sock,
        22,
        4,
        InitProducerIdRequest(transactional_id=None, transaction_timeout_ms=60000),
    )
    assert isinstance(resp, InitProducerIdResponse)
    assert resp.error_code == 0
    return resp.producer_id, resp.producer_epoch


def _batch(
    pid: int = -1,
    epoch: int = -1,
    seq: int = -1,
    *,
    n: int = 2,
    transactional: bool = False,
) -> bytes:
    return build_batch(
        [RecordInput(key=b"k", value=b"v" * 50) for _ in range(n)],
        producer_id=pid,
        producer_epoch=epoch,
        base_sequence=seq,
        is_transactional=transactional,
    )


def _set_length(batch: bytes, length: int) -> bytes:
    out = bytearray(batch)
    _LENGTH.pack_into(out, _BATCH_LENGTH_AT, length)
    return bytes(out)


def _flip_crc(batch: bytes) -> bytes:
    out = bytearray(batch)
    out[CRC_OFFSET] ^= 0x01
    return bytes(out)


def _produce(
    sock: socket.socket, bad: bytes, good: bytes
) -> tuple[PartitionProduceResponse, PartitionProduceResponse]:
    resp = request(
        sock,
        0,
        9,
        ProduceRequest(
            acks=-1,
            timeout_ms=5000,
            topic_data=(
                TopicProduceData(
                    name=TOPIC,
                    partition_data=(
                        PartitionProduceData(index=0, records=bad),
                        PartitionProduceData(index=1, records=good),
                    ),
                ),
            ),
        ),
    )
    assert isinstance(resp, ProduceResponse)
    parts = resp.responses[0].partition_responses
    return parts[0], parts[1]


def _end_offsets(broker: BrokerProcess) -> list[int]:
    status, body = broker.http(f"/v1/topics/{TOPIC}")
    assert status == 200
    return [int(p["log_end_offset"]) for p in json.loads(body)["partitions"]]


def _malformed(pid: int, epoch: int) -> dict[str, bytes]:
    """Bad payloads by name; each of the producer's ones starts at sequence 0."""
    one = _batch(pid, epoch, 0)
    two = _batch(pid, epoch, 2)
    txn = _batch(pid, epoch, 0, transactional=True)
    return {
        # a later batch of an idempotent payload lies about its length / magic
        "idempotent_second_length_too_small": one + _set_length(two, 10),
        "idempotent_second_length_negative": one + _set_length(two, -1000),
        "idempotent_second_magic": one + two[:16] + b"\x07" + two[17:],
        "idempotent_first_length_too_large": _set_length(one, len(one) + 500) + two,
        "idempotent_first_length_too_small": _set_length(one, len(one) - 40) + two,
        "idempotent_crc": _flip_crc(one),
        "idempotent_record_count": one[:57] + struct.pack(">i", 7) + one[61:],
        "transactional_length": txn + _set_length(_batch(pid, epoch, 2), 3),
        "transactional_crc": _flip_crc(txn),
        "plain_length": _set_length(_batch(), 20),
        "plain_second_length": _batch() + _set_length(_batch(), 30),
        "plain_crc": _flip_crc(_batch()),
    }


def test_malformed_batches_get_corrupt_message_and_keep_the_connection(
    broker2: BrokerProcess,
) -> None:
    """Every malformed payload answers CORRUPT_MESSAGE for its partition only, appends
    nothing there, and the connection goes on serving."""
    with broker2.connect() as sock:
        pid, epoch = _producer_id(sock)
        cases = _malformed(pid, epoch)
        for appended, (name, bad) in enumerate(cases.items(), start=1):
            bad_part, good_part = _produce(sock, bad, _batch(n=1))
            assert bad_part.error_code == ErrorCode.CORRUPT_MESSAGE, name
            assert bad_part.base_offset == -1, name
            assert bad_part.error_message, name
            assert good_part.error_code == ErrorCode.NONE, name
            assert good_part.base_offset == appended - 1, name
        # the producer's state was not touched: its first real batch is sequence 0
        first, _ = _produce(sock, _batch(pid, epoch, 0), _batch(n=1))
        assert first.error_code == ErrorCode.NONE
        assert first.base_offset == 0
    assert broker2.proc.poll() is None
    assert _end_offsets(broker2) == [2, len(cases) + 1]
    assert not broker2.events("handler_failed")


def test_batches_breaking_kafkas_client_rules_get_invalid_record(
    broker2: BrokerProcess,
) -> None:
    """Intact batches Kafka's LogValidator refuses from a client (a negative
    sequence of an idempotent batch, a control batch) answer INVALID_RECORD with
    Kafka's message for their partition only; nothing is appended there."""
    with broker2.connect() as sock:
        pid, epoch = _producer_id(sock)
        cases = {
            "Invalid sequence number -5": _batch(pid, epoch, -5),
            "Clients are not allowed to write control records": build_batch(
                [RecordInput(key=b"k", value=b"v")], is_control=True
            ),
        }
        for appended, (message, bad) in enumerate(cases.items(), start=1):
            bad_part, good_part = _produce(sock, bad, _batch(n=1))
            assert bad_part.error_code == ErrorCode.INVALID_RECORD, message
            assert bad_part.error_message is not None
            assert bad_part.error_message.startswith(message)
            assert bad_part.error_message.endswith(f"in topic partition {TOPIC}-0")
            assert bad_part.record_errors == ()
            assert good_part.base_offset == appended - 1
    assert _end_offsets(broker2) == [0, len(cases)]


def test_damaged_retry_of_an_appended_batch_is_not_acknowledged(
    broker2: BrokerProcess,
) -> None:
    """A retry of an appended idempotent batch with a bad CRC is CORRUPT_MESSAGE, not a
    duplicate answered with the original offsets; the intact retry still is."""
    with broker2.connect() as sock:
        pid, epoch = _producer_id(sock)
        batch = _batch(pid, epoch, 0)
        first, _ = _produce(sock, batch, _batch(n=1))
        assert (first.error_code, first.base_offset) == (ErrorCode.NONE, 0)
        damaged, _ = _produce(sock, _flip_crc(batch), _batch(n=1))
        assert damaged.error_code == ErrorCode.CORRUPT_MESSAGE
        again, _ = _produce(sock, batch, _batch(n=1))
        assert (again.error_code, again.base_offset) == (ErrorCode.NONE, 0)
    assert _end_offsets(broker2) == [2, 3]


def test_transactional_batch_is_appended_and_a_client_control_batch_refused(
    broker2: BrokerProcess,
) -> None:
    """A well-formed transactional batch passes the idempotence checks and is
    appended (its transaction is then committed with WriteTxnMarkers); a control
    batch from a client is INVALID_RECORD (Kafka's LogValidator) with a message, nothing appended."""
    with broker2.connect() as sock:
        pid, epoch = _producer_id(sock)
        txn, good = _produce(
            sock, _batch(pid, epoch, 0, transactional=True), _batch(n=1)
        )
        assert (txn.error_code, txn.base_offset) == (ErrorCode.NONE, 0)
        assert good.error_code == ErrorCode.NONE
        marker = build_control_batch(
            ControlType.COMMIT, producer_id=pid, producer_epoch=epoch
        )
        refused, _ = _produce(sock, marker, _batch(n=1))
        assert refused.error_code == ErrorCode.INVALID_RECORD
        assert refused.error_message is not None  # a marker carries no sequence
        resp = request(
            sock,
            27,
            1,
            WriteTxnMarkersRequest(
                markers=(
                    WritableTxnMarker(
                        producer_id=pid,
                        producer_epoch=epoch,
                        transaction_result=True,
                        topics=(
                            WritableTxnMarkerTopic(name=TOPIC, partition_indexes=(0,)),
                        ),
                        coordinator_epoch=0,
                    ),
                )
            ),
        )
        assert isinstance(resp, WriteTxnMarkersResponse)
        assert resp.markers[0].topics[0].partitions[0].error_code == ErrorCode.NONE
    assert _end_offsets(broker2) == [3, 2]


def test_real_client_is_unaffected_after_malformed_batches(
    broker2: BrokerProcess,
) -> None:
    """After malformed idempotent payloads, an idempotent librdkafka producer writes
    and a consumer reads every record, in order."""
    with broker2.connect() as sock:
        pid, epoch = _producer_id(sock)
        for bad in _malformed(pid, epoch).values():
            _produce(sock, bad, _batch(n=1))
    producer = Producer(
        {"bootstrap.servers": broker2.bootstrap, "enable.idempotence": True}
    )
    for i in range(20):
        producer.produce(TOPIC, value=f"m{i}".encode(), partition=0)
    assert producer.flush(15) == 0
    consumer = Consumer(
        {
            "bootstrap.servers": broker2.bootstrap,
            "group.id": "m",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(TOPIC, 0, 0)])
    got: list[bytes] = []
    for _ in range(30):
        if len(got) >= 20:
            break
        got.extend(
            m.value() for m in consumer.consume(20, timeout=0.5) if m.error() is None
        )
    consumer.close()
    assert got == [f"m{i}".encode() for i in range(20)]
