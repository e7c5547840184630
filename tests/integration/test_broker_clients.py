"""Real clients (kafka-python, confluent-kafka, kcat) produce to and consume from the broker."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewPartitions, NewTopic
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KTopicPartition
from kafka.admin import NewPartitions as KNewPartitions
from kafka.admin import NewTopic as KNewTopic

from tests._broker import BrokerProcess, start_broker

pytestmark = pytest.mark.integration

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


@pytest.fixture(scope="module")
def shared_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    base = tmp_path_factory.mktemp("clients")
    b = start_broker(base / "data", log_dir=base / "logs")
    yield b
    assert b.stop() == 0


def _topic(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _expected(
    n: int, partitions: int
) -> dict[int, list[tuple[bytes, bytes, list, int]]]:
    base_ts = 1_700_000_000_000
    out: dict[int, list[tuple[bytes, bytes, list, int]]] = {
        p: [] for p in range(partitions)
    }
    for i in range(n):
        out[i % partitions].append(
            (
                b"key-%d" % i,
                b"value-%d-" % i + bytes(range(i % 50)),
                [("h1", b"x%d" % i), ("h2", b"")],
                base_ts + i,
            )
        )
    return out


@pytest.mark.parametrize("codec", CODECS)
def test_kafka_python_round_trips_records_in_each_codec(
    shared_broker: BrokerProcess, codec: str
) -> None:
    """kafka-python reads back, per partition and in order, what it produced."""
    topic = _topic(f"kp-{codec}")
    admin = KafkaAdminClient(bootstrap_servers=shared_broker.bootstrap)
    admin.create_topics([KNewTopic(topic, 2, 1)])
    admin.close()
    expected = _expected(1000, 2)
    producer = KafkaProducer(
        bootstrap_servers=shared_broker.bootstrap,
        acks="all",
        compression_type=None if codec == "none" else codec,
        enable_idempotence=False,
        linger_ms=5,
    )
    for p, records in expected.items():
        for key, value, headers, ts in records:
            producer.send(
                topic,
                key=key,
                value=value,
                headers=headers,
                partition=p,
                timestamp_ms=ts,
            )
    producer.flush(30)
    producer.close()

    consumer = KafkaConsumer(
        bootstrap_servers=shared_broker.bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
    )
    consumer.assign([KTopicPartition(topic, p) for p in expected])
    got: dict[int, list[tuple[bytes, bytes, list, int]]] = {p: [] for p in expected}
    for msg in consumer:
        got[msg.partition].append(
            (msg.key, msg.value, list(msg.headers), msg.timestamp)
        )
        if sum(len(v) for v in got.values()) == 1000:
            break
    assert got == expected

    # From an explicit offset.
    tp = KTopicPartition(topic, 1)
    consumer.assign([tp])
    consumer.seek(tp, 400)
    msg = next(iter(consumer))
    assert (msg.offset, msg.key) == (400, expected[1][400][0])
    consumer.close()


@pytest.mark.parametrize("codec", CODECS)
def test_confluent_round_trips_10000_records_in_each_codec(
    shared_broker: BrokerProcess, codec: str
) -> None:
    """librdkafka (confluent-kafka) reads back, per partition and in order, what it produced."""
    topic = _topic(f"ck-{codec}")
    admin = AdminClient({"bootstrap.servers": shared_broker.bootstrap})
    for fut in admin.create_topics([NewTopic(topic, 3, 1)]).values():
        fut.result(10)
    expected = _expected(10_000, 3)
    producer = Producer(
        {
            "bootstrap.servers": shared_broker.bootstrap,
            "compression.type": codec,
            "linger.ms": 5,
            "acks": "all",
        }
    )
    for p, records in expected.items():
        for key, value, headers, ts in records:
            producer.produce(
                topic, key=key, value=value, headers=headers, partition=p, timestamp=ts
            )
    assert producer.flush(30) == 0

    consumer = Consumer(
        {
            "bootstrap.servers": shared_broker.bootstrap,
            "group.id": "unused",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in expected])
    got: dict[int, list[tuple[bytes, bytes, list, int]]] = {p: [] for p in expected}
    deadline = time.monotonic() + 30
    total = 0
    while total < 10_000 and time.monotonic() < deadline:
        for msg in consumer.consume(1000, timeout=1):
            assert msg.error() is None, msg.error()
            got[msg.partition()].append(
                (msg.key(), msg.value(), msg.headers(), msg.timestamp()[1])
            )
            total += 1
    consumer.close()
    assert got == expected


def test_confluent_consumer_from_latest_sees_only_new_records(
    shared_broker: BrokerProcess,
) -> None:
    """A consumer starting at the end gets only records produced after it started."""
    topic = _topic("latest")
    producer = Producer({"bootstrap.servers": shared_broker.bootstrap})
    for i in range(5):
        producer.produce(topic, key=b"old", value=b"%d" % i, partition=0)
    assert producer.flush(10) == 0
    consumer = Consumer(
        {
            "bootstrap.servers": shared_broker.bootstrap,
            "group.id": "unused",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, 0, -1)])  # OFFSET_END
    consumer.consume(1, timeout=1)  # let it resolve the end offset
    producer.produce(topic, key=b"new", value=b"x", partition=0)
    assert producer.flush(10) == 0
    msgs = []
    deadline = time.monotonic() + 10
    while not msgs and time.monotonic() < deadline:
        msgs = [m for m in consumer.consume(10, timeout=1) if m.error() is None]
    consumer.close()
    assert [(m.key(), m.offset()) for m in msgs] == [(b"new", 5)]


def test_kcat_produces_and_consumes(
    shared_broker: BrokerProcess, tmp_path: Path
) -> None:
    """kcat (librdkafka CLI) produces keyed records and reads them back."""
    topic = _topic("kcat")
    lines = "".join(f"k{i}:v{i}\n" for i in range(100))
    subprocess.run(
        ["kcat", "-b", shared_broker.bootstrap, "-P", "-t", topic, "-K:", "-z", "lz4"],
        input=lines.encode(),
        check=True,
        timeout=30,
    )
    out = subprocess.run(
        [
            "kcat",
            "-b",
            shared_broker.bootstrap,
            "-C",
            "-t",
            topic,
            "-o",
            "beginning",
            "-e",
            "-q",
            "-f",
            "%k:%s@%o\n",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    ).stdout.decode()
    assert out.splitlines() == [f"k{i}:v{i}@{i}" for i in range(100)]


def test_kafka_python_admin_creates_describes_and_deletes_topics(
    shared_broker: BrokerProcess,
) -> None:
    """kafka-python's admin client manages topics; errors come back as Kafka errors."""
    topic = _topic("kpadmin")
    admin = KafkaAdminClient(bootstrap_servers=shared_broker.bootstrap)
    admin.create_topics(
        [KNewTopic(topic, 2, 1, topic_configs={"retention.ms": "60000"})]
    )
    assert topic in admin.list_topics()
    with pytest.raises(Exception, match="TopicAlreadyExists"):
        admin.create_topics([KNewTopic(topic, 2, 1)])
    admin.create_partitions({topic: KNewPartitions(total_count=4)})
    described = admin.describe_topics([topic])
    assert len(described[0]["partitions"]) == 4
    admin.delete_topics([topic])
    assert topic not in admin.list_topics()
    admin.close()


def test_confluent_admin_manages_topics_and_configs(
    shared_broker: BrokerProcess,
) -> None:
    """confluent-kafka's AdminClient: create (validate only and real), configs, partitions, delete."""
    topic = _topic("ckadmin")
    admin = AdminClient({"bootstrap.servers": shared_broker.bootstrap})
    for fut in admin.create_topics(
        [NewTopic(topic, 1, 1, config={"cleanup.policy": "delete"})], validate_only=True
    ).values():
        fut.result(10)
    assert topic not in admin.list_topics(timeout=10).topics
    for fut in admin.create_topics(
        [NewTopic(topic, 1, 1, config={"retention.ms": "1234"})]
    ).values():
        fut.result(10)
    bad = admin.create_topics([NewTopic(_topic("bad"), 1, 1, config={"nope": "1"})])
    for fut in bad.values():
        with pytest.raises(Exception, match=r"INVALID_CONFIG|nope"):
            fut.result(10)
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    configs = admin.describe_configs([res])[res].result(10)
    assert configs["retention.ms"].value == "1234"
    assert not configs["retention.ms"].is_default
    assert configs["segment.bytes"].is_default
    for fut in admin.create_partitions([NewPartitions(topic, 3)]).values():
        fut.result(10)
    assert len(admin.list_topics(timeout=10).topics[topic].partitions) == 3
    for fut in admin.delete_topics([topic]).values():
        fut.result(10)
    assert topic not in admin.list_topics(timeout=10).topics


def test_kafka_python_default_idempotent_producer_works(
    shared_broker: BrokerProcess,
) -> None:
    """kafka-python's default producer (idempotent: InitProducerId + sequences) works."""
    topic = _topic("idem")
    producer = KafkaProducer(bootstrap_servers=shared_broker.bootstrap)
    futures = [producer.send(topic, key=b"k", value=b"v%d" % i) for i in range(100)]
    producer.flush(30)
    offsets = [f.get(10).offset for f in futures]
    producer.close()
    assert offsets == list(range(100))
    consumer = KafkaConsumer(
        bootstrap_servers=shared_broker.bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
    )
    consumer.assign([KTopicPartition(topic, 0)])
    values = []
    for m in consumer:
        values.append(m.value)
        if len(values) == 100:
            break
    consumer.close()
    assert values == [b"v%d" % i for i in range(100)]


def test_list_offsets_delete_records_and_describe_cluster(
    shared_broker: BrokerProcess,
) -> None:
    """Earliest/latest/max-timestamp/by-time offsets, DeleteRecords and DescribeCluster."""
    from confluent_kafka.admin import OffsetSpec

    topic = _topic("offsets")
    admin = AdminClient({"bootstrap.servers": shared_broker.bootstrap})
    for fut in admin.create_topics([NewTopic(topic, 1, 1)]).values():
        fut.result(10)
    producer = Producer({"bootstrap.servers": shared_broker.bootstrap, "linger.ms": 0})
    stamps = [1_000_000 + 10 * i for i in range(10)]
    stamps[4] = 9_000_000  # the max timestamp sits in the middle
    for i, ts in enumerate(stamps):
        producer.produce(topic, value=b"%d" % i, partition=0, timestamp=ts)
        producer.flush(10)  # one batch per record: offsets by time are exact

    tp = TopicPartition(topic, 0)

    def offset(spec: OffsetSpec) -> int:
        return admin.list_offsets({tp: spec})[tp].result(10).offset

    assert offset(OffsetSpec.earliest()) == 0
    assert offset(OffsetSpec.latest()) == 10
    assert offset(OffsetSpec.max_timestamp()) == 4
    assert offset(OffsetSpec.for_timestamp(1_000_025)) == 3
    assert offset(OffsetSpec.for_timestamp(99_000_000)) == -1

    result = admin.delete_records([TopicPartition(topic, 0, 6)])
    deleted = next(iter(result.values())).result(10)
    assert deleted.low_watermark == 6
    assert offset(OffsetSpec.earliest()) == 6
    low, high = Consumer(
        {"bootstrap.servers": shared_broker.bootstrap, "group.id": "w"}
    ).get_watermark_offsets(tp, timeout=10)
    assert (low, high) == (6, 10)

    cluster = admin.describe_cluster().result(10)
    assert [(n.id, n.host, n.port) for n in cluster.nodes] == [
        (0, shared_broker.host, shared_broker.port)
    ]
    assert cluster.controller.id == 0


def test_confluent_idempotent_producer_delivers_exactly_once_in_order(
    shared_broker: BrokerProcess,
) -> None:
    """librdkafka with enable.idempotence: every record lands once, in order."""
    topic = _topic("ckidem")
    admin = AdminClient({"bootstrap.servers": shared_broker.bootstrap})
    for fut in admin.create_topics([NewTopic(topic, 3, 1)]).values():
        fut.result(10)
    producer = Producer(
        {
            "bootstrap.servers": shared_broker.bootstrap,
            "enable.idempotence": True,
            "linger.ms": 2,
        }
    )
    errors: list[object] = []
    for i in range(6000):
        producer.produce(
            topic,
            value=b"%d" % i,
            partition=i % 3,
            on_delivery=lambda err, _msg: errors.append(err) if err else None,
        )
    assert producer.flush(30) == 0
    assert errors == []
    consumer = Consumer(
        {
            "bootstrap.servers": shared_broker.bootstrap,
            "group.id": "unused",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(3)])
    got: dict[int, list[int]] = {0: [], 1: [], 2: []}
    deadline = time.monotonic() + 20
    while sum(map(len, got.values())) < 6000 and time.monotonic() < deadline:
        for m in consumer.consume(1000, timeout=1):
            if m.error() is None:
                got[m.partition()].append(int(m.value()))
    consumer.close()
    assert got == {p: list(range(p, 6000, 3)) for p in range(3)}
