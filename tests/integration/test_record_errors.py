"""Per-record errors in Produce (KIP-467) through real clients and raw requests.

A compacted topic refuses records without a key (INVALID_RECORD) and a topic with
CreateTime bounds refuses timestamps outside them (INVALID_TIMESTAMP); Produce v8+
names each offending record's index in its batch in ``record_errors`` and says why
in ``error_message``. confluent-kafka reports it in the delivery report of each
message, kafka-python in the exception of each send's future.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaProducer
from kafka.errors import InvalidRecordError, InvalidTimestampError
from kafka.errors import KafkaError as KafkaError_

from protocol.error_codes import ErrorCode
from protocol.messages.produce import (
    PartitionProduceData,
    ProduceRequest,
    ProduceResponse,
    TopicProduceData,
)
from protocol.record_builder import RecordInput, build_batch
from tests._broker import BrokerProcess, request, start_broker

pytestmark = pytest.mark.integration

COMPACTED = "compacted"
BOUNDED = "bounded"
AFTER_MS = 60_000


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    root: Path = tmp_path_factory.mktemp("record-errors")
    b = start_broker(root / "data", log_dir=root / "logs")
    try:
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        futures = admin.create_topics(
            [
                NewTopic(COMPACTED, 1, 1, config={"cleanup.policy": "compact"}),
                NewTopic(
                    BOUNDED,
                    1,
                    1,
                    config={
                        "message.timestamp.after.max.ms": str(AFTER_MS),
                        "message.timestamp.before.max.ms": "3600000",
                    },
                ),
            ]
        )
        for future in futures.values():
            future.result(timeout=30)
        yield b
    finally:
        assert b.stop() == 0


def _raw_produce(
    b: BrokerProcess, topic: str, batch: bytes, version: int
) -> ProduceResponse:
    with b.connect() as sock:
        resp = request(
            sock,
            0,
            version,
            ProduceRequest(
                acks=1,
                timeout_ms=5000,
                topic_data=(
                    TopicProduceData(
                        name=topic,
                        partition_data=(PartitionProduceData(index=0, records=batch),),
                    ),
                ),
            ),
        )
    assert isinstance(resp, ProduceResponse)
    return resp


@pytest.mark.parametrize("version", [8, 9, 12])
def test_raw_produce_names_each_keyless_record(
    broker: BrokerProcess, version: int
) -> None:
    """Produce v8+ to a compacted topic: INVALID_RECORD, one record error per
    keyless record with its index in the batch, Kafka's messages."""
    keys = [b"a", None, b"c", None, None]
    batch = build_batch([RecordInput(key=k, value=b"v") for k in keys])
    part = _raw_produce(broker, COMPACTED, batch, version).responses[0]
    answer = part.partition_responses[0]
    assert answer.error_code == ErrorCode.INVALID_RECORD
    assert answer.base_offset == -1
    assert [e.batch_index for e in answer.record_errors] == [1, 3, 4]
    assert all(
        e.batch_index_error_message
        == "Compacted topic cannot accept message without key in topic partition "
        f"{COMPACTED}-0."
        for e in answer.record_errors
    )
    assert answer.error_message is not None
    assert "3 record errors in total" in answer.error_message


def test_raw_produce_v7_gets_the_code_without_record_errors(
    broker: BrokerProcess,
) -> None:
    """Before v8 the response has no record errors: only the partition's code."""
    batch = build_batch([RecordInput(key=None, value=b"v")])
    answer = _raw_produce(broker, COMPACTED, batch, 7).responses[0]
    assert answer.partition_responses[0].error_code == ErrorCode.INVALID_RECORD
    assert answer.partition_responses[0].record_errors == ()


def test_raw_produce_out_of_bounds_timestamp(broker: BrokerProcess) -> None:
    """A record stamped beyond now + after.max.ms is INVALID_TIMESTAMP, named by
    its index; the records around it do not appear."""
    now = int(time.time() * 1000)
    stamps = [now, now + 10 * AFTER_MS, now]
    batch = build_batch([RecordInput(value=b"v", timestamp=t) for t in stamps])
    answer = _raw_produce(broker, BOUNDED, batch, 9).responses[0]
    part = answer.partition_responses[0]
    assert part.error_code == ErrorCode.INVALID_TIMESTAMP
    assert [e.batch_index for e in part.record_errors] == [1]
    message = part.record_errors[0].batch_index_error_message
    assert message is not None
    assert message.startswith(f"Timestamp {now + 10 * AFTER_MS} of message")
    assert part.error_message == (
        "One or more records have been rejected due to invalid timestamp"
    )


def test_confluent_kafka_delivery_reports_carry_the_record_error(
    broker: BrokerProcess,
) -> None:
    """librdkafka fails the keyless message with INVALID_RECORD, and its
    batch-mates too (nothing of the batch is written: INVALID_RECORD, or
    _INVALID_DIFFERENT_RECORD where librdkafka maps record_errors per message);
    a message with a key then goes through."""
    reports: dict[bytes, KafkaError | None] = {}

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        value = msg.value()
        assert value is not None
        reports[value] = err

    producer = Producer(
        {"bootstrap.servers": broker.bootstrap, "linger.ms": 200, "acks": "all"}
    )
    producer.produce(COMPACTED, key=b"k1", value=b"first", on_delivery=on_delivery)
    producer.produce(COMPACTED, value=b"keyless", on_delivery=on_delivery)
    producer.produce(COMPACTED, key=b"k3", value=b"third", on_delivery=on_delivery)
    assert producer.flush(30) == 0
    bad = reports[b"keyless"]
    assert bad is not None
    assert bad.code() == KafkaError.INVALID_RECORD
    assert not bad.retriable()
    for other in (b"first", b"third"):
        err = reports[other]
        assert err is not None
        assert err.code() in (
            KafkaError.INVALID_RECORD,
            KafkaError._INVALID_DIFFERENT_RECORD,
        )
    producer.produce(COMPACTED, key=b"k", value=b"fine", on_delivery=on_delivery)
    assert producer.flush(30) == 0
    assert reports[b"fine"] is None


def test_confluent_kafka_timestamp_out_of_bounds(broker: BrokerProcess) -> None:
    """A message stamped an hour ahead fails with INVALID_TIMESTAMP."""
    errors: list[KafkaError | None] = []
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    ahead = int(time.time() * 1000) + 3_600_000
    producer.produce(
        BOUNDED,
        value=b"future",
        timestamp=ahead,
        on_delivery=lambda err, _msg: errors.append(err),
    )
    assert producer.flush(30) == 0
    assert len(errors) == 1
    assert errors[0] is not None
    assert errors[0].code() == KafkaError.INVALID_TIMESTAMP


def _kafka_python_send(broker: BrokerProcess, topic: str, **send: Any) -> Any:
    """One send from a fresh kafka-python producer (it treats a refused batch of
    its idempotent producer as fatal); the future's result or exception."""
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=0)
    try:
        future = producer.send(topic, **send)
        try:
            return future.get(timeout=30)
        except KafkaError_ as exc:
            return exc
    finally:
        producer.close(timeout=10)


def test_kafka_python_send_fails_with_the_error_code(broker: BrokerProcess) -> None:
    """kafka-python raises InvalidRecordError (87) with the broker's message for
    the keyless record and InvalidTimestampError (32) for the out-of-bounds one;
    a keyed record succeeds."""
    keyless = _kafka_python_send(broker, COMPACTED, value=b"keyless")
    assert isinstance(keyless, InvalidRecordError)
    assert keyless.errno == ErrorCode.INVALID_RECORD
    assert "without key" in str(keyless)
    ahead = _kafka_python_send(
        broker,
        BOUNDED,
        value=b"ahead",
        timestamp_ms=int(time.time() * 1000) + 3_600_000,
    )
    assert isinstance(ahead, InvalidTimestampError)
    assert ahead.errno == ErrorCode.INVALID_TIMESTAMP
    ok = _kafka_python_send(broker, COMPACTED, key=b"k", value=b"v")
    assert ok.offset >= 0
