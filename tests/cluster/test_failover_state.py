"""What a partition's new leader knows, with real etcd, three broker processes and
real clients: after a restart of the whole cluster every acknowledged record is
visible at once (the high-watermark checkpoint), and an idempotent producer that
carries on after its leader is killed, or retries a batch on the new leader, is
never appended twice.

One cluster serves the module; each test restarts what it stopped.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from kafka import KafkaAdminClient
from kafka.admin import NewTopic as KafkaNewTopic

from protocol.error_codes import ErrorCode
from protocol.messages.list_offsets import (
    ListOffsetsPartition,
    ListOffsetsRequest,
    ListOffsetsResponse,
    ListOffsetsTopic,
)
from protocol.messages.produce import (
    PartitionProduceData,
    ProduceRequest,
    ProduceResponse,
    TopicProduceData,
)
from protocol.record_builder import RecordInput, build_batch
from storage.hw_checkpoint import HighWatermarkCheckpoint
from tests._broker import request
from tests.cluster.e2e_cluster import PREFIX, Cluster, ContinuousProducer, wait_for
from tests.cluster.etcd import missing_etcd


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if (why := missing_etcd()) is not None:
        pytest.fail(why, pytrace=False)
    c = Cluster(tmp_path_factory.mktemp("failover"))
    try:
        c.start()
        yield c
    finally:
        c.close()


def _partition(cluster: Cluster, topic: str) -> dict[str, Any]:
    """Partition 0's state as etcd holds it ({} before it exists)."""
    code, out = cluster.etcd.ctl(
        "get", f"{PREFIX}/partitions/{topic}/0", "--print-value-only", check=False
    )
    return json.loads(out) if code == 0 and out.strip() else {}


def _create_rf3(cluster: Cluster, topic: str, replicas: list[int]) -> None:
    """One partition on ``replicas`` (the first leads), all three in the ISR."""
    admin = KafkaAdminClient(
        bootstrap_servers=_bootstrap(cluster).split(","), request_timeout_ms=30000
    )
    try:
        admin.create_topics(
            [
                KafkaNewTopic(
                    topic,
                    num_partitions=-1,
                    replication_factor=-1,
                    replica_assignments={0: replicas},
                )
            ],
            timeout_ms=30000,
        )
    finally:
        admin.close()
    wait_for(
        "all replicas in sync", lambda: len(_partition(cluster, topic)["isr"]) == 3
    )


def _bootstrap(cluster: Cluster) -> str:
    return ",".join(b.bootstrap for b in cluster.live.values())


def _producer(cluster: Cluster) -> Producer:
    return Producer(
        {
            "bootstrap.servers": _bootstrap(cluster),
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "message.timeout.ms": 60000,
        }
    )


def _read_all(cluster: Cluster, topic: str, count: int) -> list[bytes]:
    """Partition 0 from the start (read_uncommitted, no group) until ``count``
    records, then a little longer: anything more is a duplicate."""
    c = Consumer(
        {
            "bootstrap.servers": _bootstrap(cluster),
            "group.id": "unused",
            "isolation.level": "read_uncommitted",
            "enable.auto.commit": False,
        }
    )
    out: list[bytes] = []
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        deadline = time.monotonic() + 30
        while len(out) < count and time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is not None:
                assert m.error() is None, m.error()
                out.append(m.value() or b"")
        end = time.monotonic() + 1
        while time.monotonic() < end:
            m = c.poll(0.2)
            if m is not None and m.error() is None:
                out.append(m.value() or b"")
    finally:
        c.close()
    return out


def _latest(cluster: Cluster, node: int, topic: str) -> tuple[int, int]:
    """(error code, latest offset) of partition 0 from ``node``'s ListOffsets: its
    high watermark, what read_uncommitted consumers may read."""
    with cluster.brokers[node].connect() as sock:
        resp = request(
            sock,
            2,
            4,
            ListOffsetsRequest(
                replica_id=-1,
                isolation_level=0,
                topics=(
                    ListOffsetsTopic(
                        name=topic,
                        partitions=(
                            ListOffsetsPartition(partition_index=0, timestamp=-1),
                        ),
                    ),
                ),
            ),
        )
    assert isinstance(resp, ListOffsetsResponse)
    part = resp.topics[0].partitions[0]
    return part.error_code, part.offset


def test_after_a_full_restart_every_acknowledged_record_is_visible_at_once(
    cluster: Cluster,
) -> None:
    """RF=3, acks=all, then SIGTERM to all three brokers and a start of all three:
    the partition's first leader answers every acknowledged record as its high
    watermark, before any new produce, and a read_uncommitted consumer reads them
    all; each data dir kept a checkpoint no higher than what was acknowledged."""
    topic = "hw-restart"
    _create_rf3(cluster, topic, [1, 2, 3])
    values = [f"hw-{i}".encode() for i in range(300)]
    p = _producer(cluster)
    for v in values:
        p.produce(topic, v, partition=0)
        p.poll(0)
    assert p.flush(30) == 0

    nodes = sorted(cluster.brokers)
    with ThreadPoolExecutor(len(nodes)) as pool:
        codes = list(pool.map(cluster.stop, nodes))
    assert codes == [0] * len(nodes)
    checkpoints = {
        n: HighWatermarkCheckpoint(cluster.root / f"data-{n}").read() for n in nodes
    }
    assert max(c.get((topic, 0), 0) for c in checkpoints.values()) == len(values)
    assert all(c.get((topic, 0), 0) <= len(values) for c in checkpoints.values())

    with ThreadPoolExecutor(len(nodes)) as pool:
        list(pool.map(cluster.start_broker, nodes))
    leader = wait_for(
        "a leader",
        lambda: (n := _partition(cluster, topic).get("leader", -1)) > 0 and n,
    )
    # the first answer of the leader, before its followers may have fetched
    answer = wait_for(
        "the leader to answer",
        lambda: (r := _latest(cluster, leader, topic))[0] == ErrorCode.NONE and r,
    )
    assert answer == (ErrorCode.NONE, len(values))
    assert _read_all(cluster, topic, len(values)) == values
    cluster.wait_settled()


def test_an_idempotent_producer_survives_a_killed_leader_without_duplicates(
    cluster: Cluster,
) -> None:
    """SIGKILL on the leader of an RF=3 partition under an idempotent acks=all
    producer: the producer carries on with the new leader, and every acknowledged
    record is read exactly once, in the order produced."""
    topic = "idem-kill"
    leader = cluster.non_controller()
    _create_rf3(cluster, topic, [leader, *(n for n in (1, 2, 3) if n != leader)])
    with ContinuousProducer(_bootstrap(cluster), topic, "idem", partition=0) as load:
        wait_for("records acknowledged", lambda: len(load.acked) >= 300)
        cluster.kill(leader)
        wait_for(
            "a new leader",
            lambda: _partition(cluster, topic)["leader"] not in (leader, -1),
            timeout=20,
        )
        after = len(load.acked)
        wait_for("acks from the new leader", lambda: len(load.acked) >= after + 300)
    assert load.errors == []
    assert len(load.acked) == load.sent
    got = _read_all(cluster, topic, len(load.acked))
    assert len(got) == len(set(got)), "a record was read twice"
    assert set(got) == set(load.acked)
    numbers = [int(v.split(b"-")[1]) for v in got]
    assert numbers == sorted(numbers), "records out of order"
    cluster.start_broker(leader)
    cluster.wait_settled()


def _produce_raw(
    cluster: Cluster, node: int, topic: str, pid: int, seq: int, count: int
) -> tuple[int, int]:
    """One idempotent batch (producer ``pid``, epoch 0, sequence ``seq``), acks=all,
    with Produce v9 to ``node``; (error code, base offset)."""
    batch = build_batch(
        [RecordInput(value=b"raw-%d" % (seq + i)) for i in range(count)],
        producer_id=pid,
        producer_epoch=0,
        base_sequence=seq,
    )
    with cluster.brokers[node].connect() as sock:
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
                        partition_data=(PartitionProduceData(index=0, records=batch),),
                    ),
                ),
            ),
        )
    assert isinstance(resp, ProduceResponse)
    part = resp.responses[0].partition_responses[0]
    return part.error_code, part.base_offset


def test_a_retried_batch_gets_its_original_offset_from_the_new_leader(
    cluster: Cluster,
) -> None:
    """Batches of an idempotent producer acknowledged by the old leader, retried
    verbatim on the new one after a controlled shutdown, answer success with their
    original base offsets and are not appended again; a gap is
    OUT_OF_ORDER_SEQUENCE_NUMBER; the next batch appends after them."""
    topic = "idem-retry"
    old = cluster.non_controller()
    _create_rf3(cluster, topic, [old, *(n for n in (1, 2, 3) if n != old)])
    pid = 5_000_000  # any id: a producer the partition has not seen starts anywhere
    assert _produce_raw(cluster, old, topic, pid, 0, 3) == (ErrorCode.NONE, 0)
    assert _produce_raw(cluster, old, topic, pid, 3, 3) == (ErrorCode.NONE, 3)

    assert cluster.stop(old) == 0  # controlled shutdown: leadership moves at once
    new = wait_for(
        "a new leader",
        lambda: (n := _partition(cluster, topic)["leader"]) not in (old, -1) and n,
    )
    assert _produce_raw(cluster, new, topic, pid, 3, 3) == (ErrorCode.NONE, 3)
    assert _produce_raw(cluster, new, topic, pid, 0, 3) == (ErrorCode.NONE, 0)
    assert _latest(cluster, new, topic) == (ErrorCode.NONE, 6)
    code, _ = _produce_raw(cluster, new, topic, pid, 9, 3)
    assert code == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    assert _produce_raw(cluster, new, topic, pid, 6, 3) == (ErrorCode.NONE, 6)
    assert _latest(cluster, new, topic) == (ErrorCode.NONE, 9)
    assert _read_all(cluster, topic, 9) == [b"raw-%d" % i for i in range(9)]
    cluster.start_broker(old)
    cluster.wait_settled()
