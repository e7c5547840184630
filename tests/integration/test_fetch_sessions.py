"""Incremental fetch sessions (KIP-227) on a running broker: raw Fetch requests,
eviction from a one-slot cache, and a kafka-python consumer of many partitions
whose fetches are incremental (``ailurus_fetch_incremental_total``)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaConsumer, TopicPartition

from protocol.error_codes import ErrorCode
from protocol.messages.fetch import (
    FetchPartition,
    FetchRequest,
    FetchResponse,
    FetchTopic,
    ForgottenTopic,
)
from protocol.messages.metadata import MetadataRequest, MetadataResponse
from protocol.messages.produce import (
    PartitionProduceData,
    ProduceRequest,
    ProduceResponse,
    TopicProduceData,
)
from protocol.record_builder import RecordInput, build_batch
from tests._broker import BrokerProcess, request, start_broker

pytestmark = pytest.mark.integration

TOPIC = "sessions"
PARTITIONS = 4
MANY = "many-partitions"
MANY_PARTITIONS = 100


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    root: Path = tmp_path_factory.mktemp("fetch-sessions")
    b = start_broker(root / "data", log_dir=root / "logs")
    try:
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        futures = admin.create_topics(
            [NewTopic(TOPIC, PARTITIONS, 1), NewTopic(MANY, MANY_PARTITIONS, 1)]
        )
        for future in futures.values():
            future.result(timeout=30)
        yield b
    finally:
        assert b.stop() == 0


def produce(b: BrokerProcess, topic: str, partition: int, count: int = 1) -> None:
    batch = build_batch([RecordInput(value=b"v") for _ in range(count)])
    with b.connect() as sock:
        resp = request(
            sock,
            0,
            9,
            ProduceRequest(
                acks=-1,
                timeout_ms=10_000,
                topic_data=(
                    TopicProduceData(
                        name=topic,
                        partition_data=(
                            PartitionProduceData(index=partition, records=batch),
                        ),
                    ),
                ),
            ),
        )
    assert isinstance(resp, ProduceResponse)
    assert resp.responses[0].partition_responses[0].error_code == 0


def fetch(
    sock: socket.socket,
    session_id: int,
    epoch: int,
    offsets: dict[int, int],
    *,
    forgotten: tuple[int, ...] = (),
    version: int = 12,
    topic_id: bytes = bytes(16),
    max_wait_ms: int = 0,
) -> FetchResponse:
    parts = tuple(
        FetchPartition(partition=p, fetch_offset=o, partition_max_bytes=1 << 20)
        for p, o in offsets.items()
    )
    resp = request(
        sock,
        1,
        version,
        FetchRequest(
            max_wait_ms=max_wait_ms,
            min_bytes=1,
            isolation_level=0,
            session_id=session_id,
            session_epoch=epoch,
            topics=(FetchTopic(topic=TOPIC, topic_id=topic_id, partitions=parts),)
            if parts
            else (),
            forgotten_topics_data=(
                ForgottenTopic(topic=TOPIC, topic_id=topic_id, partitions=forgotten),
            )
            if forgotten
            else (),
            rack_id="",
        ),
    )
    assert isinstance(resp, FetchResponse)
    return resp


def answered(resp: FetchResponse) -> dict[int, int]:
    """partition -> high watermark of each partition in the response."""
    return {
        p.partition_index: p.high_watermark
        for t in resp.responses
        for p in t.partitions
    }


def metric(b: BrokerProcess, name: str) -> int:
    status, body = b.http("/metrics")
    assert status == 200
    for line in body.decode().splitlines():
        if line.startswith(f"{name} "):
            return int(float(line.split()[1]))
    raise AssertionError(f"{name} not exposed")


def topic_id(b: BrokerProcess, name: str) -> bytes:
    with b.connect() as sock:
        resp = request(sock, 3, 12, MetadataRequest(topics=None))
    assert isinstance(resp, MetadataResponse)
    return next(t.topic_id for t in resp.topics if t.name == name)


def test_incremental_fetches_carry_only_partitions_with_news(
    broker: BrokerProcess,
) -> None:
    """The full fetch (epoch 0) creates a session and answers every partition;
    incremental fetches then answer only a partition with new records or a moved
    high watermark, and a forgotten partition is not answered again."""
    with broker.connect() as sock:
        full = fetch(sock, 0, 0, dict.fromkeys(range(PARTITIONS), 0))
        assert full.error_code == 0
        assert full.session_id != 0
        assert set(answered(full)) == set(range(PARTITIONS))
        sid = full.session_id
        assert answered(fetch(sock, sid, 1, {})) == {}
        start = answered(full)[2]
        produce(broker, TOPIC, 2)
        news = fetch(sock, sid, 2, {})
        assert news.session_id == sid
        assert answered(news) == {2: start + 1}
        assert news.responses[0].partitions[0].records
        # the consumer moves on: the partition is sent, nothing new is answered
        assert answered(fetch(sock, sid, 3, {2: start + 1})) == {}
        assert answered(fetch(sock, sid, 4, {}, forgotten=(3,))) == {}
        produce(broker, TOPIC, 3)
        assert answered(fetch(sock, sid, 5, {})) == {}
        produce(broker, TOPIC, 1)
        assert set(answered(fetch(sock, sid, 6, {}))) == {1}


def test_incremental_long_poll_waits_for_news(broker: BrokerProcess) -> None:
    """An incremental fetch with nothing new waits max_wait_ms and answers no
    partitions; one waiting when a record arrives answers at once, with only that
    partition."""
    with broker.connect() as sock:
        full = fetch(sock, 0, 0, dict.fromkeys(range(PARTITIONS), 0))
        sid = full.session_id
        ends = answered(full)
        offsets = dict(ends)
        assert answered(fetch(sock, sid, 1, offsets)) == {}
        started = time.monotonic()
        quiet = fetch(sock, sid, 2, {}, max_wait_ms=600)
        assert time.monotonic() - started >= 0.5
        assert answered(quiet) == {}
        timer = threading.Timer(0.3, produce, (broker, TOPIC, 0))
        timer.start()
        try:
            started = time.monotonic()
            woken = fetch(sock, sid, 3, {}, max_wait_ms=20_000)
            elapsed = time.monotonic() - started
        finally:
            timer.join()
        assert elapsed < 15
        assert answered(woken) == {0: ends[0] + 1}


def test_session_errors(broker: BrokerProcess) -> None:
    """Unknown session: FETCH_SESSION_ID_NOT_FOUND; wrong epoch:
    INVALID_FETCH_SESSION_EPOCH; a v13 request on a session made without topic ids:
    FETCH_SESSION_TOPIC_ID_ERROR; the final epoch closes the session."""
    tid = topic_id(broker, TOPIC)
    with broker.connect() as sock:
        sid = fetch(sock, 0, 0, {0: 0}).session_id
        assert sid != 0
        unknown = fetch(sock, sid ^ 0x5A5A, 1, {})
        assert unknown.error_code == ErrorCode.FETCH_SESSION_ID_NOT_FOUND
        assert (unknown.session_id, unknown.responses) == (0, ())
        assert fetch(sock, sid, 9, {}).error_code == (
            ErrorCode.INVALID_FETCH_SESSION_EPOCH
        )
        by_id = fetch(sock, sid, 1, {}, version=13, topic_id=tid)
        assert by_id.error_code == ErrorCode.FETCH_SESSION_TOPIC_ID_ERROR
        closed = fetch(sock, sid, -1, {0: 0})
        assert (closed.error_code, closed.session_id) == (0, 0)
        assert fetch(sock, sid, 1, {}).error_code == (
            ErrorCode.FETCH_SESSION_ID_NOT_FOUND
        )
        # a v13 session keyed by topic id works the same way
        v13 = fetch(sock, 0, 0, {0: 0}, version=13, topic_id=tid)
        assert v13.session_id != 0
        assert v13.responses[0].topic_id == tid
        assert (
            fetch(sock, v13.session_id, 1, {}, version=13, topic_id=tid).error_code == 0
        )


def test_eviction_from_a_one_slot_cache(
    broker_factory: Callable[..., BrokerProcess],
) -> None:
    """With one slot and no minimum age, a new session evicts the old one, whose
    next fetch is FETCH_SESSION_ID_NOT_FOUND; the eviction is counted."""
    small = broker_factory(
        "--set",
        "max.incremental.fetch.session.cache.slots=1",
        "--set",
        "min.incremental.fetch.session.eviction.ms=0",
    )
    admin = AdminClient({"bootstrap.servers": small.bootstrap})
    for future in admin.create_topics([NewTopic(TOPIC, 2, 1)]).values():
        future.result(timeout=30)
    with small.connect() as first, small.connect() as second:
        old = fetch(first, 0, 0, {0: 0}).session_id
        assert old != 0
        time.sleep(0.01)  # the old session is then unused for longer than 0 ms
        new = fetch(second, 0, 0, {1: 0}).session_id
        assert new not in (0, old)
        assert fetch(first, old, 1, {}).error_code == (
            ErrorCode.FETCH_SESSION_ID_NOT_FOUND
        )
        assert fetch(second, new, 1, {}).error_code == 0
    assert metric(small, "ailurus_fetch_sessions_evicted_total") == 1
    assert metric(small, "ailurus_fetch_sessions") == 1
    assert small.stop() == 0


def test_kafka_python_consumer_of_many_partitions_fetches_incrementally(
    broker: BrokerProcess,
) -> None:
    """kafka-python (which implements KIP-227) reads 100 partitions through a
    session: every record arrives, and its later fetches are incremental."""
    for p in range(MANY_PARTITIONS):
        produce(broker, MANY, p)
    before = metric(broker, "ailurus_fetch_incremental_total")
    consumer = KafkaConsumer(
        bootstrap_servers=broker.bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=100,
    )
    try:
        consumer.assign([TopicPartition(MANY, p) for p in range(MANY_PARTITIONS)])
        seen: set[int] = set()
        deadline = time.monotonic() + 60
        while len(seen) < MANY_PARTITIONS and time.monotonic() < deadline:
            for tp, records in consumer.poll(timeout_ms=500).items():
                if records:
                    seen.add(tp.partition)
        assert len(seen) == MANY_PARTITIONS
        produce(broker, MANY, 42, count=3)
        late = 0
        deadline = time.monotonic() + 30
        while late < 3 and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                late += len(records)
        assert late == 3
        # caught up: each later fetch goes on through the session
        deadline = time.monotonic() + 30
        while (
            metric(broker, "ailurus_fetch_incremental_total") - before < 5
            and time.monotonic() < deadline
        ):
            assert not consumer.poll(timeout_ms=300)
    finally:
        consumer.close()
    assert metric(broker, "ailurus_fetch_incremental_total") - before >= 5
    assert metric(broker, "ailurus_fetch_sessions") >= 1
