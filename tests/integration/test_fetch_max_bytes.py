"""Fetch ``max_bytes`` (KIP-74): only the first batch of a response may exceed it.

Four partitions hold ~40 KB batches. Raw Fetch requests check the rule on the
response itself — the first batch of the response may be larger than both limits,
every later partition gets only the whole batches that fit in what is left of
``max_bytes`` and in its ``partition_max_bytes`` — and librdkafka, which refuses a
response larger than ``receive.message.max.bytes``, consumes every record with a
small ``fetch.max.bytes`` and a larger ``max.partition.fetch.bytes``.
"""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, TopicPartition

from protocol.codec import decode_response, encode_request
from protocol.headers import RequestHeader
from protocol.messages.fetch import (
    FetchPartition,
    FetchRequest,
    FetchResponse,
    FetchTopic,
)
from protocol.messages.metadata import MetadataRequest, MetadataRequestTopic
from protocol.messages.produce import (
    PartitionProduceData,
    ProduceRequest,
    ProduceResponse,
    TopicProduceData,
)
from protocol.record_builder import RecordInput, build_batch
from protocol.records import iter_batches
from tests._broker import BrokerProcess, recv_frame, request, start_broker

pytestmark = pytest.mark.integration

TOPIC = "big-batches"
PARTITIONS = 4
BATCHES = 5  # per partition
RECORDS = 4  # per batch
VALUE = 10_000  # bytes per record value: a batch is a little over 40 KB


@pytest.fixture(scope="module")
def loaded(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[BrokerProcess, int]]:
    """A broker whose topic has BATCHES incompressible batches in each partition;
    also yields the size of one batch."""
    tmp = tmp_path_factory.mktemp("fetch-max-bytes")
    broker = start_broker(tmp / "data", "--set", f"num.partitions={PARTITIONS}")
    rng = random.Random(74)
    try:
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
            size = 0
            for b in range(BATCHES):
                parts = []
                for p in range(PARTITIONS):
                    batch = build_batch(
                        [
                            RecordInput(
                                key=f"{p}-{b}-{i}".encode(), value=rng.randbytes(VALUE)
                            )
                            for i in range(RECORDS)
                        ]
                    )
                    size = max(size, len(batch))
                    parts.append(PartitionProduceData(index=p, records=batch))
                resp = request(
                    sock,
                    0,
                    9,
                    ProduceRequest(
                        acks=-1,
                        timeout_ms=10_000,
                        topic_data=(
                            TopicProduceData(name=TOPIC, partition_data=tuple(parts)),
                        ),
                    ),
                )
                assert isinstance(resp, ProduceResponse)
                codes = [
                    part.error_code for part in resp.responses[0].partition_responses
                ]
                assert codes == [0] * PARTITIONS
        yield broker, size
    finally:
        assert broker.stop() == 0


def _fetch(
    broker: BrokerProcess,
    max_bytes: int,
    partition_max_bytes: int,
    offsets: dict[int, int],
) -> tuple[int, list[tuple[int, bytes]]]:
    """One Fetch v11: (response frame size, [(partition, records)] in order)."""
    body = FetchRequest(
        max_wait_ms=0,
        min_bytes=1,
        max_bytes=max_bytes,
        isolation_level=0,
        topics=(
            FetchTopic(
                topic=TOPIC,
                partitions=tuple(
                    FetchPartition(
                        partition=p,
                        fetch_offset=offset,
                        partition_max_bytes=partition_max_bytes,
                    )
                    for p, offset in offsets.items()
                ),
            ),
        ),
    )
    header = RequestHeader(
        request_api_key=1, request_api_version=11, correlation_id=9, client_id="t"
    )
    with socket.create_connection((broker.host, broker.port), timeout=10) as sock:
        sock.sendall(encode_request(header, body))
        frame = recv_frame(sock)
    _, resp = decode_response(1, 11, frame)
    assert isinstance(resp, FetchResponse)
    out = []
    for part in resp.responses[0].partitions:
        assert part.error_code == 0
        records = part.records
        assert records is None or isinstance(records, bytes | memoryview)
        out.append((part.partition_index, bytes(records or b"")))
    return len(frame), out


def _batch_sizes(records: bytes) -> list[int]:
    sizes = [h.size for _, h in iter_batches(records)]
    assert sum(sizes) == len(records)  # whole batches only
    return sizes


def _check_kip74(
    parts: list[tuple[int, bytes]], max_bytes: int, partition_max_bytes: int
) -> int:
    """Assert Kafka's rule on a response; returns the records' total size."""
    total = 0
    for _, records in parts:
        sizes = _batch_sizes(records)
        if not sizes:
            continue
        limit = min(partition_max_bytes, max_bytes - total)
        if total == 0:
            # the first batch of the response may exceed both limits, the rest not
            assert sum(sizes[1:]) == 0 or sum(sizes) <= limit
        else:
            assert sum(sizes) <= limit
        total += sum(sizes)
    return total


def test_later_partitions_get_only_what_fits_in_max_bytes(
    loaded: tuple[BrokerProcess, int],
) -> None:
    """max_bytes 100 KB over four partitions of 40 KB batches: the first partition
    gets the two batches that fit, the others nothing; the response stays small."""
    broker, size = loaded
    frame, parts = _fetch(broker, 100_000, 200_000, dict.fromkeys(range(4), 0))
    assert [len(_batch_sizes(r)) for _, r in parts] == [2, 0, 0, 0]
    assert _check_kip74(parts, 100_000, 200_000) == 2 * size
    assert frame <= 100_000 + 1024


def test_first_batch_larger_than_max_bytes_comes_alone(
    loaded: tuple[BrokerProcess, int],
) -> None:
    """max_bytes below one batch: the response holds exactly the first batch."""
    broker, size = loaded
    frame, parts = _fetch(broker, 10_000, 10_000, dict.fromkeys(range(4), 0))
    assert [len(_batch_sizes(r)) for _, r in parts] == [1, 0, 0, 0]
    assert frame <= size + 1024


def test_first_batch_of_the_response_may_come_from_a_later_partition(
    loaded: tuple[BrokerProcess, int],
) -> None:
    """A partition with nothing new does not use up the exemption: the next
    partition's first batch is returned even when larger than max_bytes."""
    broker, _ = loaded
    end = BATCHES * RECORDS
    _, parts = _fetch(broker, 10_000, 10_000, {0: end, 1: 0, 2: 0, 3: 0})
    assert [len(_batch_sizes(r)) for _, r in parts] == [0, 1, 0, 0]


def test_partition_max_bytes_caps_each_partition(
    loaded: tuple[BrokerProcess, int],
) -> None:
    """With room in max_bytes, each partition gets the whole batches that fit in its
    partition_max_bytes (one 40 KB batch in 50 KB)."""
    broker, size = loaded
    _, parts = _fetch(broker, 1_000_000, 50_000, dict.fromkeys(range(4), 0))
    assert [len(_batch_sizes(r)) for _, r in parts] == [1, 1, 1, 1]
    assert _check_kip74(parts, 1_000_000, 50_000) == 4 * size


def test_librdkafka_consumes_every_partition_with_small_fetch_max_bytes(
    loaded: tuple[BrokerProcess, int],
) -> None:
    """librdkafka (fetch.max.bytes 100 KB, max.partition.fetch.bytes 200 KB,
    receive.message.max.bytes just above) reads every record of every partition."""
    broker, _ = loaded
    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": "kip74",
            "enable.auto.commit": False,
            "fetch.max.bytes": 100_000,
            "message.max.bytes": 100_000,
            "max.partition.fetch.bytes": 200_000,
            "receive.message.max.bytes": 100_000 + 512,
            "fetch.error.backoff.ms": 100,
        }
    )
    errors: list[str] = []
    got: dict[int, list[bytes]] = {p: [] for p in range(PARTITIONS)}
    want = BATCHES * RECORDS
    try:
        consumer.assign([TopicPartition(TOPIC, p, 0) for p in range(PARTITIONS)])
        deadline = time.monotonic() + 30
        while any(len(v) < want for v in got.values()) and time.monotonic() < deadline:
            for m in consumer.consume(50, timeout=0.5):
                if m.error() is not None:
                    errors.append(str(m.error()))
                    continue
                got[m.partition()].append(m.key())
    finally:
        consumer.close()
    assert errors == []
    for p in range(PARTITIONS):
        assert got[p] == [
            f"{p}-{b}-{i}".encode() for b in range(BATCHES) for i in range(RECORDS)
        ]
    assert not broker.events("handler_failed")
