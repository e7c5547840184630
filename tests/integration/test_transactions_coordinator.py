"""Transactional producers end to end against the transaction coordinator.

One broker for the module (each test its own topic and transactional ids, and a
short timeout sweep so that an abandoned transaction is aborted within a second):
confluent-kafka commits and aborts (read_committed consumers see only committed
records, read_uncommitted ones see all), a second producer with the same
transactional.id fences the first, an abandoned transaction times out and is
aborted; kafka-python, aiokafka and kafkajs transactional producers commit and
abort. A broker stopped between PrepareCommit and the markers (a test hook makes it
exit there) completes the transaction when it starts again.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaProducer

from broker.transactions.config import CRASH_AFTER_PREPARE_ENV, CRASH_EXIT_STATUS
from protocol.error_codes import ErrorCode
from protocol.messages.add_partitions_to_txn import (
    AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse,
    AddPartitionsToTxnTopic,
)
from protocol.messages.end_txn import EndTxnRequest, EndTxnResponse
from protocol.messages.init_producer_id import (
    InitProducerIdRequest,
    InitProducerIdResponse,
)
from protocol.messages.produce import (
    PartitionProduceData,
    ProduceRequest,
    ProduceResponse,
    TopicProduceData,
)
from tests import _txn
from tests._broker import ROOT, BrokerProcess, request, start_broker

pytestmark = pytest.mark.integration

TIMEOUT_S = 30.0


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    tmp: Path = tmp_path_factory.mktemp("txncoord")
    b = start_broker(
        tmp / "data",
        "--set",
        "transaction.abort.timed.out.transaction.cleanup.interval.ms=200",
        log_dir=tmp / "logs",
    )
    try:
        yield b
    finally:
        assert b.stop() == 0


def _create(broker: BrokerProcess, topic: str, partitions: int = 2) -> None:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(TIMEOUT_S)


def _producer(broker: BrokerProcess, txn_id: str, **config: object) -> Producer:
    return Producer(
        {"bootstrap.servers": broker.bootstrap, "transactional.id": txn_id, **config}
    )


def _read(
    broker: BrokerProcess, topic: str, isolation: str, partitions: int = 2
) -> list[bytes]:
    """Every record a consumer with ``isolation`` reads up to the end (for
    read_committed: the last stable offset), sorted."""
    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": f"{topic}-{isolation}",
            "isolation.level": isolation,
            "enable.partition.eof": True,
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got: list[bytes] = []
    eof: set[int] = set()
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while len(eof) < partitions:
            assert time.monotonic() < deadline, f"no end of {topic} seen"
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                assert err.code() == KafkaError._PARTITION_EOF, err
                eof.add(msg.partition())
                continue
            value = msg.value()
            assert value is not None
            got.append(value)
    finally:
        consumer.close()
    return sorted(got)


def _last_stable_offset(broker: BrokerProcess, topic: str, partition: int) -> int:
    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": "lso",
            "isolation.level": "read_committed",
        }
    )
    try:
        _, high = consumer.get_watermark_offsets(
            TopicPartition(topic, partition), timeout=TIMEOUT_S
        )
    finally:
        consumer.close()
    return int(high)


def test_confluent_commit_and_abort(broker: BrokerProcess) -> None:
    """A committed transaction is read by read_committed consumers, an aborted one
    only by read_uncommitted ones."""
    _create(broker, "cf")
    producer = _producer(broker, "cf-tx")
    producer.init_transactions(TIMEOUT_S)
    producer.begin_transaction()
    producer.produce("cf", b"c1", partition=0)
    producer.produce("cf", b"c2", partition=1)
    producer.commit_transaction(TIMEOUT_S)
    producer.begin_transaction()
    producer.produce("cf", b"a1", partition=0)
    producer.produce("cf", b"a2", partition=1)
    assert producer.flush(TIMEOUT_S) == 0  # sent, so that the abort has data to abort
    producer.abort_transaction(TIMEOUT_S)
    producer.begin_transaction()
    producer.produce("cf", b"c3", partition=0)
    producer.commit_transaction(TIMEOUT_S)
    assert _read(broker, "cf", "read_committed") == [b"c1", b"c2", b"c3"]
    assert _read(broker, "cf", "read_uncommitted") == [
        b"a1",
        b"a2",
        b"c1",
        b"c2",
        b"c3",
    ]


def test_second_producer_fences_the_first(broker: BrokerProcess) -> None:
    """init_transactions() of a second producer with the same transactional.id
    aborts the first one's open transaction and fences it: its commit fails with a
    fatal _FENCED error."""
    _create(broker, "fence")
    first = _producer(broker, "fence-tx")
    first.init_transactions(TIMEOUT_S)
    first.begin_transaction()
    first.produce("fence", b"old", partition=0)
    assert first.flush(TIMEOUT_S) == 0
    second = _producer(broker, "fence-tx")
    second.init_transactions(TIMEOUT_S)
    with pytest.raises(KafkaException) as info:
        first.commit_transaction(TIMEOUT_S)
    err = info.value.args[0]
    assert err.fatal()
    assert err.code() == KafkaError._FENCED
    second.begin_transaction()
    second.produce("fence", b"new", partition=1)
    second.commit_transaction(TIMEOUT_S)
    assert _read(broker, "fence", "read_committed") == [b"new"]
    assert _read(broker, "fence", "read_uncommitted") == [b"new", b"old"]


def test_abandoned_transaction_times_out_and_is_aborted(broker: BrokerProcess) -> None:
    """A transaction left open past transaction.timeout.ms is aborted by the
    coordinator (the last stable offset moves past it) and its producer fenced."""
    _create(broker, "tmo", partitions=1)
    producer = _producer(broker, "tmo-tx", **{"transaction.timeout.ms": 1000})
    producer.init_transactions(TIMEOUT_S)
    producer.begin_transaction()
    producer.produce("tmo", b"late", partition=0)
    assert producer.flush(TIMEOUT_S) == 0
    deadline = time.monotonic() + TIMEOUT_S
    while _last_stable_offset(broker, "tmo", 0) < 2:  # the record and its ABORT
        assert time.monotonic() < deadline, "the transaction was not aborted"
        time.sleep(0.2)
    assert _read(broker, "tmo", "read_committed", partitions=1) == []
    with pytest.raises(KafkaException):
        producer.commit_transaction(TIMEOUT_S)
    [event] = [
        e for e in broker.events("txn_timed_out") if e["transactional_id"] == "tmo-tx"
    ]
    assert event["timeout_ms"] == 1000


def test_kafka_python_transactional_producer(broker: BrokerProcess) -> None:
    """kafka-python's transactional producer commits and aborts."""
    _create(broker, "kp")
    producer = KafkaProducer(
        bootstrap_servers=broker.bootstrap, transactional_id="kp-tx"
    )
    try:
        producer.init_transactions()
        producer.begin_transaction()
        producer.send("kp", b"kc", partition=0)
        producer.commit_transaction()
        producer.begin_transaction()
        producer.send("kp", b"ka", partition=1)
        producer.flush()
        producer.abort_transaction()
    finally:
        producer.close(timeout=5)
    assert _read(broker, "kp", "read_committed") == [b"kc"]
    assert _read(broker, "kp", "read_uncommitted") == [b"ka", b"kc"]


def test_aiokafka_transactional_producer(broker: BrokerProcess) -> None:
    """aiokafka's transactional producer commits and aborts."""
    _create(broker, "aio")

    async def run() -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=broker.bootstrap, transactional_id="aio-tx"
        )
        await producer.start()
        try:
            async with producer.transaction():
                await producer.send_and_wait("aio", b"ac", partition=0)
            await producer.begin_transaction()
            await producer.send_and_wait("aio", b"aa", partition=1)
            await producer.abort_transaction()
        finally:
            await producer.stop()

    asyncio.run(asyncio.wait_for(run(), TIMEOUT_S))
    assert _read(broker, "aio", "read_committed") == [b"ac"]
    assert _read(broker, "aio", "read_uncommitted") == [b"aa", b"ac"]


_KAFKAJS = """
const { Kafka, logLevel } = require('kafkajs');
const kafka = new Kafka({ brokers: [process.argv[1]], logLevel: logLevel.NOTHING });
const producer = kafka.producer({
  transactionalId: 'js-tx', maxInFlightRequests: 1, idempotent: true,
});
(async () => {
  await producer.connect();
  let txn = await producer.transaction();
  await txn.send({ topic: 'js', messages: [{ value: 'jc', partition: 0 }] });
  await txn.commit();
  txn = await producer.transaction();
  await txn.send({ topic: 'js', messages: [{ value: 'ja', partition: 1 }] });
  await txn.abort();
  await producer.disconnect();
  console.log(JSON.stringify({ ok: true }));
  process.exit(0);
})().catch((e) => {
  console.log(JSON.stringify({ name: e.name, type: e.type, message: e.message }));
  process.exit(1);
});
"""


def test_kafkajs_transactional_producer(broker: BrokerProcess) -> None:
    """kafkajs' transactional producer commits and aborts."""
    _create(broker, "js")
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
    assert _read(broker, "js", "read_committed") == [b"jc"]
    assert _read(broker, "js", "read_uncommitted") == [b"ja", b"jc"]


def test_restart_between_prepare_and_markers_completes_the_commit(
    tmp_path: Path,
) -> None:
    """A broker that stops right after writing PrepareCommit (the test hook) writes
    the markers when it starts again: the transaction is committed."""
    data = tmp_path / "data"
    flag = tmp_path / "crash-flag"
    flag.touch()
    first = start_broker(
        data, log_dir=tmp_path / "logs", env={CRASH_AFTER_PREPARE_ENV: str(flag)}
    )
    try:
        _create(first, "crash")
        producer = _producer(first, "crash-tx", **{"message.timeout.ms": 10000})
        producer.init_transactions(TIMEOUT_S)
        producer.begin_transaction()
        producer.produce("crash", b"x0", partition=0)
        producer.produce("crash", b"x1", partition=1)
        assert producer.flush(TIMEOUT_S) == 0
        with pytest.raises(KafkaException):
            producer.commit_transaction(3)  # the broker exits before answering
        assert first.proc.wait(TIMEOUT_S) == CRASH_EXIT_STATUS
        assert not flag.exists()
    finally:
        if first.proc.poll() is None:
            first.kill()
    second = start_broker(data, log_dir=tmp_path / "logs")
    try:
        assert _read(second, "crash", "read_committed") == [b"x0", b"x1"]
        [event] = second.events("txn_completed")
        assert (event["transactional_id"], event["state"]) == (
            "crash-tx",
            "CompleteCommit",
        )
    finally:
        assert second.stop() == 0


def test_transaction_state_topic_is_internal(broker: BrokerProcess) -> None:
    """__transaction_state exists once a transactional producer came, marked
    internal, with one partition on a single node."""
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    topics = admin.list_topics(timeout=TIMEOUT_S).topics
    assert "__transaction_state" in topics
    assert len(topics["__transaction_state"].partitions) == 1


def _raw_produce(sock: socket.socket, topic: str, records: bytes) -> int:
    resp = request(
        sock,
        0,
        9,
        ProduceRequest(
            acks=-1,
            timeout_ms=10000,
            topic_data=(
                TopicProduceData(
                    name=topic,
                    partition_data=(PartitionProduceData(index=0, records=records),),
                ),
            ),
        ),
    )
    assert isinstance(resp, ProduceResponse)
    return resp.responses[0].partition_responses[0].error_code


def _add(
    sock: socket.socket, version: int, pid: int, epoch: int, *parts: tuple[str, int]
) -> dict[tuple[str, int], int]:
    topics: dict[str, list[int]] = {}
    for topic, index in parts:
        topics.setdefault(topic, []).append(index)
    resp = request(
        sock,
        24,
        version,
        AddPartitionsToTxnRequest(
            v3_and_below_transactional_id="raw-tx",
            v3_and_below_producer_id=pid,
            v3_and_below_producer_epoch=epoch,
            v3_and_below_topics=tuple(
                AddPartitionsToTxnTopic(name=t, partitions=tuple(ps))
                for t, ps in topics.items()
            ),
        ),
    )
    assert isinstance(resp, AddPartitionsToTxnResponse)
    return {
        (t.name, r.partition_index): r.partition_error_code
        for t in resp.results_by_topic_v3_and_below
        for r in t.results_by_partition
    }


def _end(sock: socket.socket, pid: int, epoch: int, commit: bool) -> int:
    resp = request(
        sock,
        26,
        3,
        EndTxnRequest(
            transactional_id="raw-tx",
            producer_id=pid,
            producer_epoch=epoch,
            committed=commit,
        ),
    )
    assert isinstance(resp, EndTxnResponse)
    return resp.error_code


def test_raw_requests_get_kafkas_answers(broker: BrokerProcess) -> None:
    """Raw AddPartitionsToTxn/EndTxn/Produce get Kafka's error codes: a partition
    outside the transaction is refused (KIP-890), unknown partitions and stale
    epochs are refused, and a retried EndTxn answers as Kafka."""
    _create(broker, "raw", partitions=1)
    with broker.connect() as sock:
        init = request(
            sock,
            22,
            4,
            InitProducerIdRequest(
                transactional_id="raw-tx", transaction_timeout_ms=60000
            ),
        )
        assert isinstance(init, InitProducerIdResponse)
        assert init.error_code == ErrorCode.NONE
        pid, epoch = init.producer_id, init.producer_epoch
        batch = _txn.txn(pid, 0, b"r0")
        assert _raw_produce(sock, "raw", batch) == ErrorCode.INVALID_TXN_STATE
        assert _add(sock, 3, pid, epoch, ("raw", 0), ("nope", 0)) == {
            ("raw", 0): ErrorCode.OPERATION_NOT_ATTEMPTED,
            ("nope", 0): ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
        }
        assert _add(sock, 3, pid, epoch + 1, ("raw", 0)) == {
            ("raw", 0): ErrorCode.PRODUCER_FENCED
        }
        assert _add(sock, 1, pid, epoch + 1, ("raw", 0)) == {
            ("raw", 0): ErrorCode.INVALID_PRODUCER_EPOCH
        }
        assert _add(sock, 3, pid + 1, epoch, ("raw", 0)) == {
            ("raw", 0): ErrorCode.INVALID_PRODUCER_ID_MAPPING
        }
        assert _add(sock, 3, pid, epoch, ("raw", 0)) == {("raw", 0): ErrorCode.NONE}
        assert _raw_produce(sock, "raw", batch) == ErrorCode.NONE
        assert _end(sock, pid, epoch, commit=True) == ErrorCode.NONE
        deadline = time.monotonic() + TIMEOUT_S
        while (code := _end(sock, pid, epoch, commit=True)) != ErrorCode.NONE:
            assert code == ErrorCode.CONCURRENT_TRANSACTIONS
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert _end(sock, pid, epoch, commit=False) == ErrorCode.INVALID_TXN_STATE
    assert _read(broker, "raw", "read_committed", partitions=1) == [b"r0"]
