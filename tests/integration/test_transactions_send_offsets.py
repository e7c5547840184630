"""Consume-transform-produce with the group's offsets sent in the transaction.

One broker for the module, each test its own topics, group and transactional id.
A confluent-kafka application reads an input topic in a group, writes what it read
(upper-cased) to an output topic and sends the group's positions with
``send_offsets_to_transaction``: after a commit the group's committed offsets
(OffsetFetch through kafka-python's admin client) have moved, after an abort they
have not, and a read_committed consumer of the output sees only the committed
output. aiokafka's ``send_offsets_to_transaction`` and kafkajs' ``sendOffsets`` do
the same with their own transactions.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.structs import TopicPartition as AioTopicPartition
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaAdminClient
from kafka import TopicPartition as KafkaTopicPartition

from tests._broker import ROOT, BrokerProcess, start_broker

pytestmark = pytest.mark.integration

TIMEOUT_S = 30.0


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    tmp: Path = tmp_path_factory.mktemp("sendoffsets")
    b = start_broker(tmp / "data", log_dir=tmp / "logs")
    try:
        yield b
    finally:
        assert b.stop() == 0


def _create(broker: BrokerProcess, *topics: str) -> None:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    for future in admin.create_topics([NewTopic(t, 1, 1) for t in topics]).values():
        future.result(TIMEOUT_S)


def _fill(broker: BrokerProcess, topic: str, count: int) -> None:
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(count):
        producer.produce(topic, f"in-{i}".encode(), partition=0)
    assert producer.flush(TIMEOUT_S) == 0


def _committed(broker: BrokerProcess, group: str, topic: str) -> int | None:
    """The group's committed offset of partition 0 (OffsetFetch), None if none."""
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        offsets = admin.list_group_offsets({group: None})[group]
    finally:
        admin.close()
    meta = offsets.get(KafkaTopicPartition(topic, 0))
    return None if meta is None or meta.offset < 0 else int(meta.offset)


def _read(broker: BrokerProcess, topic: str, isolation: str) -> list[bytes]:
    """Every record of partition 0 a consumer with ``isolation`` reads to its end."""
    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": f"{topic}-{isolation}",
            "isolation.level": isolation,
            "enable.partition.eof": True,
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    got: list[bytes] = []
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while True:
            assert time.monotonic() < deadline, f"no end of {topic} seen"
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                assert err.code() == KafkaError._PARTITION_EOF, err
                return got
            value = msg.value()
            assert value is not None
            got.append(value)
    finally:
        consumer.close()


def _poll_batch(consumer: Consumer, count: int) -> list[bytes]:
    got: list[bytes] = []
    deadline = time.monotonic() + TIMEOUT_S
    while len(got) < count:
        assert time.monotonic() < deadline, f"read {len(got)} of {count}"
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        assert msg.error() is None, msg.error()
        value = msg.value()
        assert value is not None
        got.append(value)
    return got


def test_confluent_send_offsets_commit_moves_and_abort_keeps(
    broker: BrokerProcess,
) -> None:
    """A committed transaction moves the group's offset and its output is read; an
    aborted one leaves the offset, and read_committed consumers never see its
    output; the application resumes from the committed offset."""
    _create(broker, "cf-in", "cf-out")
    _fill(broker, "cf-in", 10)
    group = "cf-app"
    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "max.poll.interval.ms": 60000,
        }
    )
    producer = Producer(
        {"bootstrap.servers": broker.bootstrap, "transactional.id": "cf-app-tx"}
    )
    try:
        consumer.subscribe(["cf-in"])
        producer.init_transactions(TIMEOUT_S)

        def transform(count: int, commit: bool) -> None:
            values = _poll_batch(consumer, count)
            producer.begin_transaction()
            for value in values:
                producer.produce("cf-out", value.upper(), partition=0)
            producer.send_offsets_to_transaction(
                consumer.position(consumer.assignment()),
                consumer.consumer_group_metadata(),
                TIMEOUT_S,
            )
            if commit:
                producer.commit_transaction(TIMEOUT_S)
            else:
                assert producer.flush(TIMEOUT_S) == 0
                producer.abort_transaction(TIMEOUT_S)

        transform(4, commit=True)
        assert _committed(broker, group, "cf-in") == 4
        transform(3, commit=False)
        assert _committed(broker, group, "cf-in") == 4
        # As an application does after an abort: rewind to the committed offsets.
        committed = consumer.committed(consumer.assignment(), TIMEOUT_S)
        assert [tp.offset for tp in committed] == [4]
        for tp in committed:
            consumer.seek(tp)
        transform(6, commit=True)
        assert _committed(broker, group, "cf-in") == 10
    finally:
        consumer.close()
    committed_out = [f"IN-{i}".encode() for i in range(10)]
    assert _read(broker, "cf-out", "read_committed") == committed_out
    everything = _read(broker, "cf-out", "read_uncommitted")
    assert sorted(everything) == sorted([*committed_out, b"IN-4", b"IN-5", b"IN-6"])


def test_aiokafka_send_offsets_to_transaction(broker: BrokerProcess) -> None:
    """aiokafka's send_offsets_to_transaction commits the group's offset with the
    transaction and leaves it on abort."""
    _create(broker, "aio-in", "aio-out")
    group = "aio-app"

    async def run() -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=broker.bootstrap, transactional_id="aio-app-tx"
        )
        await producer.start()
        tp = AioTopicPartition("aio-in", 0)
        try:
            async with producer.transaction():
                await producer.send_and_wait("aio-out", b"A0", partition=0)
                await producer.send_offsets_to_transaction({tp: 7}, group)
            await producer.begin_transaction()
            await producer.send_and_wait("aio-out", b"A1", partition=0)
            await producer.send_offsets_to_transaction({tp: 9}, group)
            await producer.abort_transaction()
        finally:
            await producer.stop()

    asyncio.run(asyncio.wait_for(run(), TIMEOUT_S))
    assert _committed(broker, group, "aio-in") == 7
    assert _read(broker, "aio-out", "read_committed") == [b"A0"]
    assert _read(broker, "aio-out", "read_uncommitted") == [b"A0", b"A1"]


_KAFKAJS = """
const { Kafka, logLevel } = require('kafkajs');
const kafka = new Kafka({ brokers: [process.argv[1]], logLevel: logLevel.NOTHING });
const producer = kafka.producer({
  transactionalId: 'js-app-tx', maxInFlightRequests: 1, idempotent: true,
});
const offsets = (offset) => ({
  consumerGroupId: 'js-app',
  topics: [{ topic: 'js-in', partitions: [{ partition: 0, offset: String(offset) }] }],
});
(async () => {
  await producer.connect();
  let txn = await producer.transaction();
  await txn.send({ topic: 'js-out', messages: [{ value: 'J0', partition: 0 }] });
  await txn.sendOffsets(offsets(5));
  await txn.commit();
  txn = await producer.transaction();
  await txn.send({ topic: 'js-out', messages: [{ value: 'J1', partition: 0 }] });
  await txn.sendOffsets(offsets(8));
  await txn.abort();
  await producer.disconnect();
  console.log(JSON.stringify({ ok: true }));
  process.exit(0);
})().catch((e) => {
  console.log(JSON.stringify({ name: e.name, type: e.type, message: e.message }));
  process.exit(1);
});
"""


def test_kafkajs_send_offsets(broker: BrokerProcess) -> None:
    """kafkajs' transaction.sendOffsets commits the group's offset with the
    transaction and leaves it on abort."""
    _create(broker, "js-in", "js-out")
    out = subprocess.run(
        ["node", "-e", _KAFKAJS, broker.bootstrap],
        cwd=Path(ROOT) / "tests" / "js",
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"ok": True}
    assert _committed(broker, "js-app", "js-in") == 5
    assert _read(broker, "js-out", "read_committed") == [b"J0"]
    assert _read(broker, "js-out", "read_uncommitted") == [b"J0", b"J1"]
