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

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from kafka import KafkaConsumer
from kafka import TopicPartition as KafkaTopicPartition

from protocol.error_codes import ErrorCode
from protocol.messages.fetch import (
    AbortedTransaction,
    FetchPartition,
    FetchRequest,
    FetchResponse,
    FetchTopic,
)
from protocol.messages.init_producer_id import (
    InitProducerIdRequest,
    InitProducerIdResponse,
)
from protocol.messages.list_offsets import (
    ListOffsetsPartition,
    ListOffsetsRequest,
    ListOffsetsResponse,
    ListOffsetsTopic,
)
from protocol.messages.metadata import MetadataRequest, MetadataRequestTopic
from protocol.messages.produce import (
    PartitionProduceData,
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
from protocol.record_builder import RecordInput, build_batch
from protocol.records import iter_batches
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
        p1, p2 = _producer_id(sock), _producer_id(sock)
        assert _produce(sock, _plain(b"p0")) == 0
        assert _produce(sock, _txn(p1, 0, b"c1a", b"c1b")) == 1
        assert _produce(sock, _txn(p2, 0, b"a1")) == 3
        assert _produce(sock, _plain(b"p1")) == 4
        assert _markers(sock, (p1, True, 0), (p2, False, 0)) == [0, 0]
        assert _produce(sock, _plain(b"p2")) == 7
        assert _produce(sock, _txn(p1, 2, b"c2")) == 8
        assert _produce(sock, _plain(b"p3")) == 9
    return p1, p2


def _producer_id(sock: socket.socket) -> int:
    resp = request(
        sock,
        22,
        4,
        InitProducerIdRequest(transactional_id=None, transaction_timeout_ms=60000),
    )
    assert isinstance(resp, InitProducerIdResponse)
    assert resp.error_code == 0
    assert resp.producer_epoch == 0
    return resp.producer_id


def _plain(value: bytes) -> bytes:
    return build_batch([RecordInput(key=None, value=value)])


def _txn(pid: int, seq: int, *values: bytes) -> bytes:
    return build_batch(
        [RecordInput(key=None, value=v) for v in values],
        producer_id=pid,
        producer_epoch=0,
        base_sequence=seq,
        is_transactional=True,
    )


def _produce(sock: socket.socket, records: bytes) -> int:
    resp = request(
        sock,
        0,
        9,
        ProduceRequest(
            acks=-1,
            timeout_ms=10000,
            topic_data=(
                TopicProduceData(
                    name=TOPIC,
                    partition_data=(PartitionProduceData(index=0, records=records),),
                ),
            ),
        ),
    )
    assert isinstance(resp, ProduceResponse)
    part = resp.responses[0].partition_responses[0]
    assert part.error_code == ErrorCode.NONE, part
    return part.base_offset


def _markers(sock: socket.socket, *markers: tuple[int, bool, int]) -> list[int]:
    """WriteTxnMarkers v1 for partition 0: (producer id, commit, coordinator epoch)."""
    resp = request(
        sock,
        27,
        1,
        WriteTxnMarkersRequest(
            markers=tuple(
                WritableTxnMarker(
                    producer_id=pid,
                    producer_epoch=0,
                    transaction_result=commit,
                    topics=(
                        WritableTxnMarkerTopic(name=TOPIC, partition_indexes=(0,)),
                    ),
                    coordinator_epoch=coordinator_epoch,
                )
                for pid, commit, coordinator_epoch in markers
            )
        ),
    )
    assert isinstance(resp, WriteTxnMarkersResponse)
    assert [m.producer_id for m in resp.markers] == [m[0] for m in markers]
    return [m.topics[0].partitions[0].error_code for m in resp.markers]


def _latest(sock: socket.socket, isolation_level: int) -> int:
    resp = request(
        sock,
        2,
        7,
        ListOffsetsRequest(
            replica_id=-1,
            isolation_level=isolation_level,
            topics=(
                ListOffsetsTopic(
                    name=TOPIC,
                    partitions=(ListOffsetsPartition(partition_index=0, timestamp=-1),),
                ),
            ),
        ),
    )
    assert isinstance(resp, ListOffsetsResponse)
    part = resp.topics[0].partitions[0]
    assert part.error_code == ErrorCode.NONE
    return part.offset


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
        assert _latest(sock, 1) == LSO_OPEN
        assert _latest(sock, 0) == END_OPEN


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
            resp = request(
                sock,
                1,
                11,
                FetchRequest(
                    max_wait_ms=0,
                    min_bytes=0,
                    isolation_level=level,
                    topics=(
                        FetchTopic(
                            topic=TOPIC,
                            partitions=(
                                FetchPartition(
                                    partition=0,
                                    fetch_offset=0,
                                    partition_max_bytes=1 << 20,
                                ),
                            ),
                        ),
                    ),
                ),
            )
            assert isinstance(resp, FetchResponse)
            part = resp.responses[0].partitions[0]
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
        assert _markers(sock, (p1, True, 5)) == [ErrorCode.NONE]
        assert _latest(sock, 1) == _latest(sock, 0) == END_OPEN + 1
        assert _markers(sock, (p1, True, 4)) == [
            ErrorCode.TRANSACTION_COORDINATOR_FENCED
        ]
    committed = [v for v in EVERYTHING if v != b"a1"]
    assert _confluent(broker, "read_committed", len(committed)) == committed
    assert _kafka_python(broker, "read_committed", len(committed)) == committed
