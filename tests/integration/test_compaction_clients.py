"""Log compaction seen by real clients: kafka-python produces keyed records to a
``cleanup.policy=compact`` topic with small segments, the broker's cleaner runs
(``log.cleaner.backoff.ms=200``), and confluent-kafka consumers from offset 0 read
the latest value of each key at its original offset, while cleaning runs too.
The status shows in the admin API, ``topic describe`` and ``/metrics``."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, TopicPartition
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic

from tests._broker import ROOT, BrokerProcess, start_broker

pytestmark = pytest.mark.integration

KEYS = 10


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    b = start_broker(
        tmp_path_factory.mktemp("compaction") / "data",
        "--set",
        "log.cleaner.backoff.ms=200",
    )
    yield b
    assert b.stop() == 0


def create_topic(broker: BrokerProcess, **configs: str) -> str:
    topic = f"compact-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        admin.create_topics(
            [
                NewTopic(
                    topic,
                    num_partitions=1,
                    replication_factor=1,
                    topic_configs={
                        "cleanup.policy": "compact",
                        "segment.bytes": "2048",
                        "min.cleanable.dirty.ratio": "0.01",
                        **configs,
                    },
                )
            ]
        )
    finally:
        admin.close()
    return topic


def produce(
    broker: BrokerProcess, topic: str, count: int, start: int = 0
) -> dict[int, tuple[bytes, bytes]]:
    """``count`` records over KEYS keys, values counting up; offset -> (key, value)."""
    producer = KafkaProducer(
        bootstrap_servers=broker.bootstrap, acks="all", linger_ms=0
    )
    try:
        futures = [
            (
                b"key-%d" % (i % KEYS),
                b"value-%06d" % i,
                producer.send(
                    topic,
                    key=b"key-%d" % (i % KEYS),
                    value=b"value-%06d" % i,
                    partition=0,
                ),
            )
            for i in range(start, start + count)
        ]
        producer.flush(timeout=30)
        return {f.get(timeout=30).offset: (k, v) for k, v, f in futures}
    finally:
        producer.close(timeout=10)


def consume_all(broker: BrokerProcess, topic: str) -> list[tuple[int, bytes, bytes]]:
    """Every record from offset 0 to the high watermark, by a confluent-kafka
    consumer (assigned, no group)."""
    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex[:6]}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    try:
        _, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        consumer.assign([TopicPartition(topic, 0, 0)])
        out: list[tuple[int, bytes, bytes]] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == -191:  # _PARTITION_EOF
                    if msg.offset() >= high:
                        return out
                    continue
                raise AssertionError(msg.error())
            out.append((msg.offset(), msg.key(), msg.value()))
            if msg.offset() + 1 >= high:
                return out
        raise AssertionError(f"consumer did not reach {high} in time: {out[-3:]}")
    finally:
        consumer.close()


def compaction(broker: BrokerProcess, topic: str) -> dict[str, object]:
    status, body = broker.http(f"/v1/topics/{topic}")
    assert status == 200
    found = json.loads(body)["partitions"][0]["compaction"]
    assert isinstance(found, dict)
    return found


def wait_cleaned_past(
    broker: BrokerProcess, topic: str, offset: int
) -> dict[str, object]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = compaction(broker, topic)
        cleaned = found["last_cleaned_offset"]
        assert isinstance(cleaned, int)
        if cleaned >= offset:
            return found
        time.sleep(0.1)
    raise AssertionError(f"not cleaned past {offset}: {compaction(broker, topic)}")


def test_consumers_read_the_latest_values_at_their_original_offsets(
    broker: BrokerProcess,
) -> None:
    """After cleaning, a consumer from offset 0 gets one record per key below the
    cleaned offset, each the latest one there, at the offset it was produced at."""
    topic = create_topic(broker)
    produced = produce(broker, topic, 400)
    produce(
        broker, topic, 40, start=400
    )  # more, so the first 400 are in closed segments
    status = wait_cleaned_past(broker, topic, 300)
    cleaned = int(str(status["last_cleaned_offset"]))
    assert status["state"] in ("idle", "cleaning")
    assert int(str(status["bytes_cleaned"])) > 0
    records = consume_all(broker, topic)
    offsets = [o for o, _, _ in records]
    assert offsets == sorted(set(offsets))
    below = [(o, k, v) for o, k, v in records if o < cleaned]
    assert len(below) <= KEYS
    latest_below: dict[bytes, int] = {}
    for offset in sorted(produced):
        if offset < cleaned:
            latest_below[produced[offset][0]] = offset
    for offset, key, value in records:
        if offset in produced:
            assert produced[offset] == (key, value)  # original offsets kept
    assert sorted(o for o, _, _ in below) == sorted(latest_below.values())
    # the CLI's describe shows the cleaner's status
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "broker",
            "--brokers",
            broker.bootstrap,
            "--admin-url",
            broker.admin_url,
            "--format",
            "json",
            "topic",
            "describe",
            topic,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    described = json.loads(out.stdout)["partitions"][0]["compaction"]
    assert described["last_cleaned_offset"] >= cleaned
    assert broker.events("log_cleaned")
    assert not broker.events("log_cleaner_failed")
    _, metrics = broker.http("/metrics")
    assert (
        f'ailurus_log_cleaner_rounds_total{{topic="{topic}",partition="0"}}'
        in metrics.decode()
    )


def test_a_consumer_never_sees_a_value_go_backwards_while_cleaning(
    broker: BrokerProcess,
) -> None:
    """Consumers reading from offset 0 again and again while a producer writes and
    the cleaner swaps segments see offsets and each key's values only increase, and
    the last value of every key."""
    topic = create_topic(broker)
    stop = threading.Event()
    written: dict[int, tuple[bytes, bytes]] = {}

    def writer() -> None:
        n = 0
        while not stop.is_set() and n < 2000:
            written.update(produce(broker, topic, 100, start=n))
            n += 100

    thread = threading.Thread(target=writer)
    thread.start()
    passes = 0
    try:
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and (passes < 3 or thread.is_alive()):
            records = consume_all(broker, topic)
            passes += 1
            last: dict[bytes, bytes] = {}
            previous = -1
            for offset, key, value in records:
                assert offset > previous
                previous = offset
                assert value > last.get(key, b"")  # values count up per key
                last[key] = value
    finally:
        stop.set()
        thread.join(timeout=60)
    assert passes >= 3
    assert compaction(broker, topic)["rounds"]
    final = {k: v for _, k, v in consume_all(broker, topic)}
    latest = {}
    for offset in sorted(written):
        key, value = written[offset]
        latest[key] = value
    assert final == latest
