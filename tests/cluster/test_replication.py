"""Data moving between brokers through real etcd and real clients: followers fetch
and join the ISR, acks=all waits for them, a reassignment copies a partition and
moves its leadership, a controlled shutdown moves leadership without losing an
acknowledged record, and a preferred election moves it back.

One cluster (etcd and three brokers) serves the whole module; the tests use their
own topics, and the one that stops a broker starts it again before it ends.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer
from kafka import KafkaAdminClient
from kafka.admin import NewTopic as KafkaNewTopic
from kafka.protocol.admin.topics import ElectionType
from kafka.structs import TopicPartition

from tests._broker import BrokerProcess, start_cluster_broker
from tests.cluster.e2e_cluster import ContinuousProducer
from tests.cluster.etcd import ETCD, EtcdProcess
from tests.cluster.helpers import wait_for

PREFIX = "/repl"
SESSION_MS = 3000


@dataclass
class Cluster:
    etcd: EtcdProcess
    root: Path
    brokers: dict[int, BrokerProcess] = field(default_factory=dict)
    starts: int = 0

    def start(self, node_id: int) -> BrokerProcess:
        self.starts += 1
        b = start_cluster_broker(
            self.root / f"data-{node_id}",
            node_id,
            self.etcd.url(PREFIX),
            session_timeout_ms=SESSION_MS,
            log_dir=self.root / f"logs-{node_id}-{self.starts}",
        )
        self.brokers[node_id] = b
        return b

    @property
    def bootstrap(self) -> str:
        return ",".join(
            b.bootstrap for b in self.brokers.values() if b.proc.poll() is None
        )

    def partition(self, topic: str, index: int) -> dict[str, Any]:
        _, out = self.etcd.ctl(
            "get", f"{PREFIX}/partitions/{topic}/{index}", "--print-value-only"
        )
        return json.loads(out) if out.strip() else {}

    def controller(self) -> int:
        _, out = self.etcd.ctl("get", f"{PREFIX}/controller", "--print-value-only")
        return int(json.loads(out)["node_id"])

    def segments(self, node_id: int, topic: str, index: int) -> bytes:
        """The partition's record bytes on ``node_id``'s disk (every segment)."""
        d = self.root / f"data-{node_id}" / "kafka" / topic / str(index)
        return b"".join(p.read_bytes() for p in sorted(d.glob("*.log")))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if not Path(ETCD).exists():
        pytest.fail("etcd is not installed (make test installs etcd-server)")
    root = tmp_path_factory.mktemp("repl")
    etcd = EtcdProcess(root / "etcd", root / "etcd.log")
    c = Cluster(etcd=etcd, root=root)
    try:
        etcd.start()
        for node in (1, 2, 3):
            c.start(node)
        yield c
    finally:
        for b in c.brokers.values():
            b.kill()
        etcd.kill()


def _create(cluster: Cluster, topic: str, assignment: list[list[int]]) -> None:
    admin = _kafka_admin(cluster)
    try:
        admin.create_topics(
            [
                KafkaNewTopic(
                    topic,
                    num_partitions=-1,
                    replication_factor=-1,
                    replica_assignments=dict(enumerate(assignment)),
                )
            ],
            timeout_ms=30000,
        )
    finally:
        admin.close()


def _produce(
    cluster: Cluster, topic: str, values: list[bytes], linger_ms: int = 5
) -> list[str]:
    """Produce ``values`` with an idempotent acks=all producer; the errors."""
    p = Producer(
        {
            "bootstrap.servers": cluster.bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": linger_ms,
        }
    )
    errors: list[str] = []

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(str(err))

    for v in values:
        p.produce(topic, v, on_delivery=on_delivery)
        p.poll(0)
    assert p.flush(60) == 0
    return errors


def _consume(cluster: Cluster, topic: str, count: int) -> list[bytes]:
    """Read ``topic`` from the start with a new group until ``count`` records."""
    c = Consumer(
        {
            "bootstrap.servers": cluster.bootstrap,
            "group.id": f"read-{topic}-{time.monotonic_ns()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
        }
    )
    out: list[bytes] = []
    try:
        c.subscribe([topic])
        deadline = time.monotonic() + 60
        while len(out) < count and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            assert m.error() is None, m.error()
            out.append(m.value())
        # anything past ``count`` would be a duplicate: read a little longer
        end = time.monotonic() + 1
        while time.monotonic() < end:
            m = c.poll(0.2)
            if m is not None and m.error() is None:
                out.append(m.value())
    finally:
        c.close()
    return out


def _kafka_admin(cluster: Cluster) -> KafkaAdminClient:
    return KafkaAdminClient(
        bootstrap_servers=cluster.bootstrap.split(","), request_timeout_ms=30000
    )


def test_rf3_followers_join_the_isr_and_acks_all_records_are_on_every_replica(
    cluster: Cluster,
) -> None:
    """An RF=3 partition keeps all three replicas in sync, and every record
    acknowledged with acks=all is already on all three disks."""
    _create(cluster, "r3", [[1, 2, 3]])
    values = [f"r3-{i}".encode() for i in range(300)]
    assert _produce(cluster, "r3", values, linger_ms=5) == []
    # acknowledged = in every ISR replica's durable log: no wait needed
    leader_bytes = cluster.segments(1, "r3", 0)
    assert len(leader_bytes) > 300 * 5
    assert cluster.segments(2, "r3", 0) == leader_bytes
    assert cluster.segments(3, "r3", 0) == leader_bytes
    state = cluster.partition("r3", 0)
    assert state["leader"] == 1
    assert sorted(state["isr"]) == [1, 2, 3]
    assert _consume(cluster, "r3", len(values)) == values


def test_reassignment_copies_the_log_and_moves_leadership(cluster: Cluster) -> None:
    """AlterPartitionReassignments moves an RF=1 partition with data from broker 1
    to broker 2: the copy is byte-identical, broker 2 leads at a higher epoch,
    broker 1 is no longer a replica, and clients follow."""
    _create(cluster, "mv", [[1]])
    values = [f"mv-{i}-".encode() + b"x" * 10_000 for i in range(1500)]
    assert _produce(cluster, "mv", values, linger_ms=20) == []
    before = cluster.partition("mv", 0)
    assert before["replicas"] == [1]
    admin = _kafka_admin(cluster)
    try:
        tp = TopicPartition("mv", 0)
        admin.alter_partition_reassignments({tp: [2]})
        listed = admin.list_partition_reassignments([tp])
        wait_for(
            "the reassignment to complete",
            lambda: cluster.partition("mv", 0).get("replicas") == [2],
        )
        # the broker that answers sees the completion through its own watch,
        # a moment after etcd holds it
        wait_for(
            "the brokers to list it done",
            lambda: tp not in admin.list_partition_reassignments([tp]),
        )
    finally:
        admin.close()
    # in progress right after the request (broker 2 copies 15 MB), then done
    assert tp in listed, listed
    assert listed[tp]["adding_replicas"] == [2], listed
    assert listed[tp]["removing_replicas"] == [1], listed
    after = cluster.partition("mv", 0)
    assert after["leader"] == 2
    assert after["leader_epoch"] > before["leader_epoch"]
    assert after["isr"] == [2]
    assert after["adding"] == []
    assert after["removing"] == []
    assert cluster.segments(2, "mv", 0) == cluster.segments(1, "mv", 0)
    # clients follow the new leader
    more = [f"mv-after-{i}".encode() for i in range(50)]
    assert _produce(cluster, "mv", more) == []
    assert _consume(cluster, "mv", len(values) + len(more)) == values + more


def test_controlled_shutdown_under_load_then_preferred_election(
    cluster: Cluster,
) -> None:
    """SIGTERM on the leader of an RF=3 partition while an idempotent acks=all
    producer runs: leadership moves within seconds, no produce fails, every
    acknowledged record is read exactly once; once the broker is back and in
    sync, a preferred election (ElectLeaders) makes it the leader again."""
    controller = cluster.controller()
    leader = next(n for n in (3, 2, 1) if n != controller)
    replicas = [leader, *(n for n in (1, 2, 3) if n != leader)]
    _create(cluster, "cs", [replicas])
    wait_for(
        "all replicas in sync", lambda: len(cluster.partition("cs", 0)["isr"]) == 3
    )
    epoch = cluster.partition("cs", 0)["leader_epoch"]
    with ContinuousProducer(cluster.bootstrap, "cs", "cs") as load:
        wait_for("records acknowledged", lambda: len(load.acked) >= 200)
        stopping = time.monotonic()
        stopper = threading.Thread(target=cluster.brokers[leader].stop)
        stopper.start()
        moved = wait_for(
            "leadership to move",
            lambda: cluster.partition("cs", 0)["leader"] not in (leader, -1),
            timeout=15,
        )
        acked_at_move = len(load.acked)
        wait_for(
            "more records acknowledged", lambda: len(load.acked) >= acked_at_move + 200
        )
        stopper.join(timeout=30)
        print(f"leadership moved {moved:.2f}s after SIGTERM")
    assert moved < 3, f"leadership took {moved:.2f}s to move"
    assert time.monotonic() - stopping < 60
    assert load.errors == []
    assert len(load.acked) == load.sent
    state = cluster.partition("cs", 0)
    assert state["leader_epoch"] > epoch
    assert leader not in state["isr"]
    got = _consume(cluster, "cs", len(load.acked))
    assert len(got) == len(set(got)), "a record was read twice"
    assert set(got) == set(load.acked)

    # the broker comes back, catches up, joins the ISR; a preferred election
    # gives it the leadership back
    cluster.start(leader)
    wait_for(
        f"broker {leader} back in the ISR",
        lambda: leader in cluster.partition("cs", 0)["isr"],
    )
    before = cluster.partition("cs", 0)
    admin = _kafka_admin(cluster)
    try:
        admin.elect_leaders(ElectionType.PREFERRED, {"cs": [0]})
    finally:
        admin.close()
    wait_for(
        "the preferred leader", lambda: cluster.partition("cs", 0)["leader"] == leader
    )
    after = cluster.partition("cs", 0)
    assert after["leader_epoch"] > before["leader_epoch"]
    more = [f"cs-back-{i}".encode() for i in range(50)]
    assert _produce(cluster, "cs", more) == []
    got = _consume(cluster, "cs", len(load.acked) + len(more))
    assert len(got) == len(set(got))
    assert set(got) == set(load.acked) | set(more)
    assert cluster.segments(leader, "cs", 0) == cluster.segments(
        after["isr"][-1] if after["isr"][-1] != leader else after["isr"][0], "cs", 0
    )


def _log_size(cluster: Cluster, node_id: int, topic: str) -> int:
    d = cluster.root / f"data-{node_id}" / "kafka" / topic / "0"
    total = 0
    for p in d.glob("*.log"):
        with contextlib.suppress(FileNotFoundError):
            total += p.stat().st_size
    return total


def test_lagging_follower_killed_mid_catch_up_restarts_and_rejoins_the_isr(
    cluster: Cluster,
) -> None:
    """A follower stopped while 96 MiB are written copies them when it is back;
    SIGKILLed in the middle of that copy and started again, it recovers its log,
    fetches the rest, rejoins the ISR and holds the leader's bytes exactly."""
    _create(cluster, "lag", [[1, 2, 3]])
    wait_for(
        "all replicas in sync", lambda: len(cluster.partition("lag", 0)["isr"]) == 3
    )
    assert _produce(cluster, "lag", [f"early-{i}".encode() for i in range(200)]) == []
    cluster.brokers[3].stop()
    wait_for(
        "broker 3 out of the ISR", lambda: 3 not in cluster.partition("lag", 0)["isr"]
    )
    p = Producer(
        {
            "bootstrap.servers": cluster.bootstrap,
            "acks": "all",
            "linger.ms": 5,
            "batch.size": 1 << 20,
        }
    )
    value = b"v" * 1024
    for i in range(96 * 1024):
        p.produce("lag", value, partition=0)
        if i % 1024 == 0:
            p.poll(0)
    assert p.flush(60) == 0
    total = _log_size(cluster, 1, "lag")
    had = _log_size(cluster, 3, "lag")
    assert had < total

    cluster.start(3)
    deadline = time.monotonic() + 60
    while (size := _log_size(cluster, 3, "lag")) <= had:
        assert time.monotonic() < deadline, "broker 3 copied nothing in 60 s"
        time.sleep(0.005)
    cluster.brokers[3].kill()
    assert size < total, "the copy ended before the kill"
    wait_for(
        "broker 3's session to expire",
        lambda: f"{PREFIX}/brokers/3" not in cluster.etcd.keys(f"{PREFIX}/brokers/"),
    )
    cluster.start(3)
    wait_for(
        "broker 3 back in the ISR",
        lambda: 3 in cluster.partition("lag", 0)["isr"],
        timeout=60,
    )
    leader_bytes = cluster.segments(1, "lag", 0)
    assert cluster.segments(3, "lag", 0) == leader_bytes
    assert cluster.segments(2, "lag", 0) == leader_bytes
    assert _produce(cluster, "lag", [b"after"]) == []
