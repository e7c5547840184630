"""Transactions on the partition side, end to end: read_committed consumers.

Transactional batches are produced with raw Produce requests (batches built with
``protocol.record_builder``) and closed with WriteTxnMarkers, as a transaction
coordinator would. Then librdkafka (confluent-kafka) and kafka-python consumers with
``read_committed`` see only committed and plain records, and stop at the last
stable offset while a transaction is open; with ``read_uncommitted`` they see every
data record. ListOffsets answers the last stable offset or the high watermark as
latest, by isolation level, and a raw read_committed Fetch lists the aborted
transaction. One broker for the module; every test reads what the first wrote.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from kafka import KafkaConsumer
from kafka import TopicPartition as KafkaTopicPartition

from protocol.error_codes import ErrorCode
from protocol.messages.fetch import AbortedTransaction
from protocol.messages.metadata import MetadataRequest, MetadataRequestTopic
from protocol.records import iter_batches
from tests import _txn
from tests._broker import BrokerProcess, request, start_broker

pytestmark = pytest.mark.integration

TOPIC = "txn"
# What the module's log holds once the first test ran (offset: value):
#   0 p0 | 1-2 c1a c1b (P1) | 3 a1 (P2) | 4 p1 | 5 COMMIT P1 | 6 ABORT P2 | 7 p2
#   8 c2 (P1, open until test_commit...) | 9 p3
COMMITTED_BEFORE = [b"p0", b"c1a", b"c1b", b"p1", b"p2"]
EVERYTHING = [b"p0", b"c1a", b"c1b", b"a1", b"p1", b"p2", b"c2", b"p3"]
LSO_OPEN, END_OPEN = 8, 10
TIMEOUT_S = 30.0


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    tmp: Path = tmp_path_factory.mktemp("txn")
    b = start_broker(tmp / "data", log_dir=tmp / "logs")
    try:
        yield b
    finally:
        assert b.stop() == 0


@pytest.fixture(scope="module")
def producers(broker: BrokerProcess) -> tuple[int, int]:
    """Writes the module's log (see the top); returns the two producer ids."""
    with broker.connect() as sock:
        request(
            sock,
            3,
            9,
            MetadataRequest(
                topics=(MetadataRequestTopic(name=TOPIC),),
                allow_auto_topic_creation=True,
            ),
        )
        p1, p2 = _txn.producer_id(sock), _txn.producer_id(sock)
        assert _txn.produce(sock, TOPIC, _txn.plain(b"p0")) == 0
        assert _txn.produce(sock, TOPIC, _txn.txn(p1, 0, b"c1a", b"c1b")) == 1
        assert _txn.produce(sock, TOPIC, _txn.txn(p2, 0, b"a1")) == 3
        assert _txn.produce(sock, TOPIC, _txn.plain(b"p1")) == 4
        assert _txn.markers(sock, TOPIC, (p1, True, 0), (p2, False, 0)) == [0, 0]
        assert _txn.produce(sock, TOPIC, _txn.plain(b"p2")) == 7
        assert _txn.produce(sock, TOPIC, _txn.txn(p1, 2, b"c2")) == 8
        assert _txn.produce(sock, TOPIC, _txn.plain(b"p3")) == 9
    return p1, p2


def _confluent(
    broker: BrokerProcess, isolation: str, count: int, linger_s: float = 0.0
) -> list[bytes]:
    """The data records a librdkafka consumer gets from offset 0: the first
    ``count``, and whatever more arrives in the next ``linger_s`` seconds."""
    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": f"c-{isolation}",
            "enable.auto.commit": False,
            "isolation.level": isolation,
        }
    )
    try:
        consumer.assign([TopicPartition(TOPIC, 0, 0)])
        got: list[bytes] = []
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                value = msg.value()
                assert value is not None
                got.append(value)
            if len(got) >= count:
                deadline = min(deadline, time.monotonic() + linger_s)
                if linger_s == 0:
                    break
        return got
    finally:
        consumer.close()


def _kafka_python(
    broker: BrokerProcess, isolation: str, count: int, linger_s: float = 0.0
) -> list[bytes]:
    """The data records a kafka-python consumer gets from offset 0: the first
    ``count``, and whatever more arrives in the next ``linger_s`` seconds."""
    consumer = KafkaConsumer(
        bootstrap_servers=broker.bootstrap,
        enable_auto_commit=False,
        isolation_level=isolation,
    )
    try:
        tp = KafkaTopicPartition(TOPIC, 0)
        consumer.assign([tp])
        consumer.seek(tp, 0)
        got: list[bytes] = []
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=200).values():
                got.extend(r.value for r in records)
            if len(got) >= count:
                deadline = min(deadline, time.monotonic() + linger_s)
                if linger_s == 0:
                    break
        return got
    finally:
        consumer.close()


def test_list_offsets_latest_is_the_lso_for_read_committed(
    broker: BrokerProcess, producers: tuple[int, int]
) -> None:
    """While P1's second transaction is open, latest is its first offset for
    read_committed and the high watermark for read_uncommitted."""
    with broker.connect() as sock:
        assert _txn.latest(sock, TOPIC, 1) == LSO_OPEN
        assert _txn.latest(sock, TOPIC, 0) == END_OPEN


def test_raw_read_committed_fetch_stops_at_the_lso_and_lists_the_abort(
    broker: BrokerProcess, producers: tuple[int, int]
) -> None:
    """A read_committed Fetch returns batches below the LSO only, says the LSO, and
    lists P2's aborted transaction (producer id, first offset); read_uncommitted
    returns everything and no list."""
    _, p2 = producers
    with broker.connect() as sock:
        for level, end, aborted in (
            (1, LSO_OPEN, (AbortedTransaction(producer_id=p2, first_offset=3),)),
            (0, END_OPEN, None),
        ):
            part = _txn.fetch(sock, TOPIC, level)
            assert part.error_code == ErrorCode.NONE
            assert (part.high_watermark, part.last_stable_offset) == (
                END_OPEN,
                LSO_OPEN,
            )
            assert part.aborted_transactions == aborted
            data = part.records
            assert isinstance(data, bytes | memoryview)
            headers = [h for _, h in iter_batches(bytes(data))]
            assert headers[-1].next_offset == end


def test_consumers_see_committed_records_only_then_the_rest_after_commit(
    broker: BrokerProcess, producers: tuple[int, int]
) -> None:
    """read_committed consumers (librdkafka, kafka-python) skip the aborted record
    and stop at the open transaction; read_uncommitted ones see every data record;
    once the transaction commits read_committed consumers see it and what follows.
    A marker from an older coordinator epoch is then fenced."""
    p1, _ = producers
    assert _confluent(broker, "read_uncommitted", len(EVERYTHING)) == EVERYTHING
    assert _kafka_python(broker, "read_uncommitted", len(EVERYTHING)) == EVERYTHING
    # only the committed prefix arrives while P1's transaction is open
    n = len(COMMITTED_BEFORE)
    assert _confluent(broker, "read_committed", n, linger_s=2) == COMMITTED_BEFORE
    assert _kafka_python(broker, "read_committed", n, linger_s=2) == COMMITTED_BEFORE
    with broker.connect() as sock:
        assert _txn.markers(sock, TOPIC, (p1, True, 5)) == [ErrorCode.NONE]
        assert _txn.latest(sock, TOPIC, 1) == _txn.latest(sock, TOPIC, 0) == 11
        assert _txn.markers(sock, TOPIC, (p1, True, 4)) == [
            ErrorCode.TRANSACTION_COORDINATOR_FENCED
        ]
    committed = [v for v in EVERYTHING if v != b"a1"]
    assert _confluent(broker, "read_committed", len(committed)) == committed
    assert _kafka_python(broker, "read_committed", len(committed)) == committed
