"""The ISR under faults, through real etcd and three broker processes: a paused
follower leaves the ISR and rejoins it, min.insync.replicas refuses acks=all when
the ISR is too small, a leader paused within its session keeps its ISR, a paused
leader that lost its leadership acknowledges nothing and then follows the new
leader, and unclean.leader.election.enable decides whether an out-of-sync replica
may lead.

One cluster serves the module (``replica.lag.time.max.ms=2000``, the broker
default ``min.insync.replicas=2``); each test uses its own topics and resumes what
it paused. The last test kills broker 1.
"""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaAdminClient
from kafka.admin import NewTopic as KafkaNewTopic

from protocol.error_codes import ErrorCode
from protocol.messages.produce import ProduceResponse
from tests._broker import BrokerProcess, request, start_cluster_broker
from tests.cluster.etcd import EtcdProcess, missing_etcd
from tests.cluster.helpers import produce_request, wait_for

PREFIX = "/isr"
SESSION_MS = 8000  # longer than the pauses that must not cost a broker its session
LAG_MS = 2000
UNCLEAN = "unclean.leader.election.enable"


@dataclass
class Cluster:
    etcd: EtcdProcess
    root: Path
    brokers: dict[int, BrokerProcess] = field(default_factory=dict)

    def start(self, node_id: int) -> BrokerProcess:
        b = start_cluster_broker(
            self.root / f"data-{node_id}",
            node_id,
            self.etcd.url(PREFIX),
            "--set",
            f"replica.lag.time.max.ms={LAG_MS}",
            "--set",
            "min.insync.replicas=2",
            "--set",
            "offsets.topic.num.partitions=2",
            session_timeout_ms=SESSION_MS,
            log_dir=self.root / f"logs-{node_id}",
        )
        self.brokers[node_id] = b
        return b

    def pause(self, *nodes: int) -> None:
        for n in nodes:
            self.brokers[n].proc.send_signal(signal.SIGSTOP)

    def resume(self, *nodes: int) -> None:
        for n in nodes:
            if self.brokers[n].proc.poll() is None:
                self.brokers[n].proc.send_signal(signal.SIGCONT)

    def partition(self, topic: str, index: int = 0) -> dict[str, Any]:
        _, out = self.etcd.ctl(
            "get", f"{PREFIX}/partitions/{topic}/{index}", "--print-value-only"
        )
        return json.loads(out) if out.strip() else {}

    def isr(self, topic: str) -> list[int]:
        return sorted(self.partition(topic).get("isr", []))

    def controller(self) -> int | None:
        _, out = self.etcd.ctl("get", f"{PREFIX}/controller", "--print-value-only")
        return int(json.loads(out)["node_id"]) if out.strip() else None

    def admin(self, node_id: int) -> AdminClient:
        return AdminClient({"bootstrap.servers": self.brokers[node_id].bootstrap})

    def create(
        self,
        topic: str,
        replicas: list[int],
        configs: dict[str, str] | None = None,
        via: int = 3,
    ) -> None:
        """CreateTopics of one partition on ``replicas``, through broker ``via``."""
        # kafka-python: confluent-kafka 2.16 refuses a replica assignment
        admin = KafkaAdminClient(
            bootstrap_servers=[self.brokers[via].bootstrap], request_timeout_ms=30000
        )
        try:
            admin.create_topics(
                [
                    KafkaNewTopic(
                        topic,
                        num_partitions=-1,
                        replication_factor=-1,
                        replica_assignments={0: replicas},
                        topic_configs=configs or {},
                    )
                ],
                timeout_ms=30000,
            )
        finally:
            admin.close()
        wait_for(f"{topic} in etcd", lambda: self.isr(topic) == sorted(replicas))

    def segments(self, node_id: int, topic: str) -> bytes:
        """The partition's record bytes on ``node_id``'s disk (every segment)."""
        d = self.root / f"data-{node_id}" / "kafka" / topic / "0"
        return b"".join(p.read_bytes() for p in sorted(d.glob("*.log")))

    def events(self, event: str, **match: object) -> list[dict[str, Any]]:
        """Every broker's log events named ``event`` with these fields."""
        return [
            e
            for b in self.brokers.values()
            for e in b.events(event)
            if all(e.get(k) == v for k, v in match.items())
        ]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if (why := missing_etcd()) is not None:
        pytest.fail(why, pytrace=False)
    root = tmp_path_factory.mktemp("isr")
    etcd = EtcdProcess(root / "etcd", root / "etcd.log")
    c = Cluster(etcd=etcd, root=root)
    try:
        etcd.start()
        for node in (1, 2, 3):
            c.start(node)
        wait_for("a controller", lambda: c.controller() is not None)
        yield c
    finally:
        for b in c.brokers.values():
            b.kill()
        etcd.kill()


def produce(
    sock: socket.socket, topic: str, acks: int, timeout_ms: int = 10_000
) -> ErrorCode:
    """One record to partition 0 over a raw connection; the broker's answer."""
    resp = request(sock, 0, 9, produce_request(topic, acks=acks, timeout_ms=timeout_ms))
    assert isinstance(resp, ProduceResponse)
    return ErrorCode(resp.responses[0].partition_responses[0].error_code)


def produce_to(cluster: Cluster, node: int, topic: str, acks: int) -> ErrorCode:
    with cluster.brokers[node].connect() as sock:
        sock.settimeout(30)
        return produce(sock, topic, acks)


class _Producing:
    """acks=all produce requests to one broker, one after another, in a thread."""

    def __init__(self, cluster: Cluster, node: int, topic: str) -> None:
        self.sock = cluster.brokers[node].connect()
        self.sock.settimeout(30)
        self.topic = topic
        self.codes: list[ErrorCode] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.codes.append(produce(self.sock, self.topic, -1))

    def stop(self) -> list[ErrorCode]:
        self._stop.set()
        self._thread.join(40)
        self.sock.close()
        return self.codes


def test_create_topics_checks_min_insync_replicas(cluster: Cluster) -> None:
    """min.insync.replicas must be an integer of at least 1 (INVALID_CONFIG); one
    above the replication factor is accepted, and its acks=all writes fail (as
    the broker default 2 does on an RF=1 topic) while acks=1 works."""
    admin = cluster.admin(3)
    for bad in ("two", "0"):
        futures = admin.create_topics(
            [NewTopic(f"bad-{bad}", 1, 1, config={"min.insync.replicas": bad})],
            operation_timeout=20,
        )
        with pytest.raises(KafkaException) as err:
            futures[f"bad-{bad}"].result(timeout=30)
        assert err.value.args[0].code() == KafkaError.INVALID_CONFIG
    cluster.create("over", [1], {"min.insync.replicas": "3"})
    cluster.create("dflt", [1])
    for topic in ("over", "dflt"):
        assert produce_to(cluster, 1, topic, -1) == ErrorCode.NOT_ENOUGH_REPLICAS
        assert produce_to(cluster, 1, topic, 1) == ErrorCode.NONE


def test_a_paused_follower_leaves_the_isr_and_rejoins_it(cluster: Cluster) -> None:
    """SIGSTOP one follower while producing with acks=all: the leader shrinks the
    ISR in etcd after replica.lag.time.max.ms and acks=all goes on with
    min.insync.replicas=2; after SIGCONT the follower catches up and rejoins."""
    cluster.create("f", [1, 2, 3])
    producing = _Producing(cluster, 1, "f")
    try:
        wait_for("acks=all writes", lambda: len(producing.codes) >= 3)
        cluster.pause(3)
        wait_for("the ISR to shrink", lambda: cluster.isr("f") == [1, 2], 10)
        shrunk_at = len(producing.codes)
        md = cluster.admin(2).list_topics("f", timeout=10)
        assert sorted(md.topics["f"].partitions[0].isrs) == [1, 2]
        wait_for("acks=all with 3 out", lambda: len(producing.codes) >= shrunk_at + 3)
    finally:
        cluster.resume(3)
    wait_for("3 to rejoin the ISR", lambda: cluster.isr("f") == [1, 2, 3], 20)
    codes = producing.stop()
    assert codes, "nothing produced"
    assert set(codes) == {ErrorCode.NONE}, codes
    changes = [(e["isr"], e["previous"]) for e in cluster.events("isr_changed")]
    assert ([1, 2], [1, 2, 3]) in changes
    assert any(sorted(isr) == [1, 2, 3] and prev == [1, 2] for isr, prev in changes)
    leader = cluster.segments(1, "f")
    wait_for("3 to hold the leader's log", lambda: cluster.segments(3, "f") == leader)


def test_min_insync_replicas_refuses_acks_all_while_both_followers_are_paused(
    cluster: Cluster,
) -> None:
    """With min.insync.replicas=2 and both followers stopped, an acks=all write
    already appended is answered NOT_ENOUGH_REPLICAS_AFTER_APPEND once the ISR
    shrinks, the next is refused with NOT_ENOUGH_REPLICAS, acks=1 still works,
    and acks=all works again once the followers are back."""
    cluster.create("m", [1, 2, 3])
    assert produce_to(cluster, 1, "m", -1) == ErrorCode.NONE
    try:
        cluster.pause(2, 3)
        assert produce_to(cluster, 1, "m", -1) == (
            ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND
        )
        assert cluster.isr("m") == [1]
        assert produce_to(cluster, 1, "m", -1) == ErrorCode.NOT_ENOUGH_REPLICAS
        assert produce_to(cluster, 1, "m", 1) == ErrorCode.NONE
    finally:
        cluster.resume(2, 3)
    wait_for("the followers to rejoin", lambda: cluster.isr("m") == [1, 2, 3], 20)
    assert produce_to(cluster, 1, "m", -1) == ErrorCode.NONE


def test_a_leader_paused_within_its_session_keeps_its_followers_in_the_isr(
    cluster: Cluster,
) -> None:
    """A leader paused longer than replica.lag.time.max.ms but within its session
    does not blame its followers for the fetches it could not answer: after
    SIGCONT the ISR is unchanged (no write to the partition key) and acks=all
    goes on."""
    cluster.create("q", [1, 2, 3])
    assert produce_to(cluster, 1, "q", -1) == ErrorCode.NONE
    before = cluster.partition("q")
    with cluster.brokers[1].connect() as sock:
        sock.settimeout(30)
        # appended, and the followers have not fetched it when the leader stops
        assert produce(sock, "q", 1) == ErrorCode.NONE
        cluster.pause(1)
        try:
            time.sleep(LAG_MS / 1000 * 1.5)  # the fault: a pause past the lag time
        finally:
            cluster.resume(1)
        for _ in range(10):  # writes over two ISR checks (every half lag time)
            assert produce(sock, "q", -1) == ErrorCode.NONE
            time.sleep(LAG_MS / 1000 / 10)
    wait_for(
        "the followers to hold the leader's log",
        lambda: (
            cluster.segments(2, "q") == cluster.segments(1, "q")
            and cluster.segments(3, "q") == cluster.segments(1, "q")
        ),
    )
    after = cluster.partition("q")
    assert after["partition_epoch"] == before["partition_epoch"], after
    assert sorted(after["isr"]) == [1, 2, 3]


def test_a_paused_leader_acknowledges_nothing_and_follows_the_new_leader(
    cluster: Cluster,
) -> None:
    """SIGSTOP the leader past its session: another replica leads at a higher
    epoch and takes writes. After SIGCONT, an acks=all write sent to the old
    leader on its old connection is not acknowledged, and the old leader then
    follows the new one: its log ends up the new leader's, byte for byte."""
    cluster.create("p", [1, 2, 3])
    for _ in range(5):
        assert produce_to(cluster, 1, "p", -1) == ErrorCode.NONE
    before = cluster.partition("p")
    old = cluster.brokers[1].connect()
    try:
        old.settimeout(30)
        cluster.pause(1)
        try:
            wait_for(
                "a new leader",
                lambda: cluster.partition("p").get("leader") in (2, 3),
                SESSION_MS / 1000 + 20,
            )
            moved = cluster.partition("p")
            assert moved["leader_epoch"] > before["leader_epoch"]
            assert 1 not in moved["isr"]
            for _ in range(3):
                assert produce_to(cluster, moved["leader"], "p", -1) == ErrorCode.NONE
        finally:
            cluster.resume(1)
        answer = produce(old, "p", -1, timeout_ms=5000)
    finally:
        old.close()
    assert answer != ErrorCode.NONE
    assert answer in (
        ErrorCode.NOT_LEADER_OR_FOLLOWER,
        ErrorCode.FENCED_LEADER_EPOCH,
        ErrorCode.NOT_ENOUGH_REPLICAS,
        ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
        ErrorCode.REQUEST_TIMED_OUT,
    ), answer
    wait_for("1 to rejoin the ISR", lambda: 1 in cluster.partition("p")["isr"], 30)
    new_leader = cluster.partition("p")["leader"]
    assert cluster.partition("p")["leader_epoch"] == moved["leader_epoch"]
    wait_for(
        "1 to hold the new leader's log",
        lambda: cluster.segments(1, "p") == cluster.segments(new_leader, "p"),
    )


def test_unclean_leader_election_is_off_unless_the_topic_enables_it(
    cluster: Cluster,
) -> None:
    """Broker 2 falls out of the ISR of two partitions led by broker 1, then 1
    dies: with the default the partition stays leaderless
    (LEADER_NOT_AVAILABLE) although 2 is alive; with the topic's
    unclean.leader.election.enable=true, 2 leads at a bumped epoch and the
    controller warns."""
    cluster.create("clean", [1, 2])
    cluster.create("unclean", [1, 2], {UNCLEAN: "true"})
    epoch = cluster.partition("unclean")["leader_epoch"]
    try:
        cluster.pause(2)

        def both_shrunk() -> bool:
            for topic in ("clean", "unclean"):
                assert produce_to(cluster, 1, topic, 1) == ErrorCode.NONE
            return cluster.isr("clean") == [1] and cluster.isr("unclean") == [1]

        wait_for("2 to leave both ISRs", both_shrunk, 10, interval=0.2)
        cluster.brokers[1].kill()
    finally:
        cluster.resume(2)
    wait_for(
        "the unclean election",
        lambda: cluster.partition("unclean").get("leader") == 2,
        SESSION_MS / 1000 + 20,
    )
    unclean = cluster.partition("unclean")
    assert unclean["leader_epoch"] == epoch + 1
    assert unclean["isr"] == [2]
    clean = cluster.partition("clean")
    assert (clean["leader"], clean["isr"]) == (-1, [1])
    md = cluster.admin(3).list_topics(timeout=10)
    assert md.topics["clean"].partitions[0].error.code() == (
        KafkaError.LEADER_NOT_AVAILABLE
    )
    assert md.topics["unclean"].partitions[0].leader == 2
    warned = cluster.events("unclean_leader_elected", topic="unclean")
    assert [(w["leader"], w["previous_isr"], w["level"]) for w in warned] == [
        (2, [1], "warning")
    ]
    assert cluster.events("unclean_leader_elected", topic="clean") == []
