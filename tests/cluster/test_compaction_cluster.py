"""Log compaction in cluster mode (real etcd, three brokers): each replica cleans its
own log, and a replica that was down catches up from a compacted leader, gaps and
all, then serves the latest value of every key at its original offset as leader."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from tests.cluster.e2e_cluster import Cluster, wait_for

pytestmark = pytest.mark.integration

KEYS = 10


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, broker_args=("--set", "log.cleaner.backoff.ms=200"))
    try:
        c.start()
        yield c
    finally:
        c.close()


def partition_view(cluster: Cluster, node: int, topic: str) -> dict[str, object]:
    status, body = cluster.brokers[node].http(f"/v1/topics/{topic}")
    assert status == 200
    view = json.loads(body)["partitions"][0]
    assert isinstance(view, dict)
    return view


def cleaned_to(cluster: Cluster, node: int, topic: str) -> int:
    status = partition_view(cluster, node, topic)["compaction"]
    assert isinstance(status, dict)
    return int(str(status["last_cleaned_offset"]))


def test_a_replica_catches_up_from_a_compacted_leader(cluster: Cluster) -> None:
    """A follower down while its leader compacted fetches the cleaned log (offset
    gaps), rejoins the ISR and, once leader, serves the latest values."""
    topic = f"compact-{uuid.uuid4().hex[:6]}"
    cluster.create_topic(
        1,
        topic,
        1,
        replication_factor=3,
        config={
            "cleanup.policy": "compact",
            "segment.bytes": "2048",
            "min.cleanable.dirty.ratio": "0.01",
        },
    )
    leader = cluster.wait_leaders(topic, 1)[0]
    follower = next(i for i in sorted(cluster.live) if i != leader)
    third = next(i for i in sorted(cluster.live) if i not in (leader, follower))
    assert cluster.stop(follower) == 0
    producer = Producer({"bootstrap.servers": cluster.bootstrap(leader), "acks": "all"})
    produced: dict[bytes, bytes] = {}
    for i in range(400):
        key, value = b"key-%d" % (i % KEYS), b"value-%06d" % i
        producer.produce(topic, value, key=key, partition=0)
        produced[key] = value
        if i % 10 == 9:  # batches of ten: segments of 2 KiB roll
            assert producer.flush(30) == 0
    for node in (leader, third):  # each replica cleans its own log
        wait_for(
            f"broker {node} to clean",
            lambda n=node: cleaned_to(cluster, n, topic) > 300,
        )
    cluster.start_broker(follower)
    wait_for(
        "the follower back in the ISR",
        lambda: follower in cluster.partition(topic, 0).get("isr", []),
        timeout=60,
    )
    end = partition_view(cluster, leader, topic)["log_end_offset"]
    wait_for(
        "the follower caught up",
        lambda: partition_view(cluster, follower, topic)["log_end_offset"] == end,
    )
    assert cluster.stop(leader) == 0
    assert cluster.stop(third) == 0
    wait_for(
        "the follower to lead",
        lambda: cluster.partition(topic, 0).get("leader") == follower,
        timeout=60,
    )
    consumer = Consumer(
        {
            "bootstrap.servers": cluster.bootstrap(follower),
            "group.id": f"r-{uuid.uuid4().hex[:6]}",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        seen: dict[bytes, bytes] = {}
        offsets: list[int] = []

        def read_all() -> bool:
            msg = consumer.poll(1.0)
            if msg is not None and not msg.error():
                seen[msg.key()] = msg.value()
                offsets.append(msg.offset())
            return seen == produced

        wait_for("the latest values from the new leader", read_all, timeout=60)
    finally:
        consumer.close()
    assert offsets == sorted(set(offsets))
    assert len(offsets) < 400  # the gaps came along
