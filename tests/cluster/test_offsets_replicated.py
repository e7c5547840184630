"""Committed offsets survive their coordinator: they are records of
``__consumer_offsets`` (RF=3), replicated before a commit is answered and loaded
by the partition's next leader.

One cluster (etcd and three brokers) serves the module; each test uses its own
topic and group, and a test that stops a broker starts it again before it ends.
Clients are confluent-kafka consumers (manual, synchronous commits).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import NewTopic
from kafka import KafkaAdminClient
from kafka.protocol.admin.topics import ElectionType
from kafka.structs import TopicPartition as KafkaTopicPartition

from broker.cluster.view import OFFSETS_TOPIC, offsets_partition
from tests.cluster.e2e_cluster import OFFSETS_PARTITIONS, Cluster, wait_for
from tests.cluster.etcd import ETCD

RECORDS = 60
COMMITTED = 25


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if not Path(ETCD).exists():
        pytest.fail("etcd is not installed (make test installs etcd-server)")
    c = Cluster(tmp_path_factory.mktemp("offsets"))
    try:
        c.start()
        yield c
    finally:
        c.close()


def _bootstrap(cluster: Cluster) -> str:
    return ",".join(b.bootstrap for b in cluster.live.values())


def _kafka_admin(cluster: Cluster) -> KafkaAdminClient:
    return KafkaAdminClient(
        bootstrap_servers=_bootstrap(cluster).split(","), request_timeout_ms=30000
    )


def _offsets_state(
    cluster: Cluster, partition: int
) -> tuple[int, list[int], list[int]]:
    """(leader, replicas, isr) of an offsets partition, as a live broker reports."""
    node = min(cluster.live)
    md = cluster.metadata(node, OFFSETS_TOPIC).topics[OFFSETS_TOPIC]
    p = md.partitions[partition]
    return p.leader, list(p.replicas), list(p.isrs)


def _group_on_rf3(cluster: Cluster, group: str, avoid: int | None) -> str:
    """Give ``group``'s offsets partition three in-sync replicas led by its
    preferred replica, not ``avoid`` (a reassignment and a preferred election when
    the offsets topic was placed before every broker had joined)."""
    p = offsets_partition(group, OFFSETS_PARTITIONS)
    leader, replicas, _ = _offsets_state(cluster, p)
    target = leader if leader != avoid else next(n for n in (3, 2, 1) if n != avoid)
    wanted = [target, *(n for n in (1, 2, 3) if n != target)]
    admin = _kafka_admin(cluster)
    try:
        if replicas != wanted:
            admin.alter_partition_reassignments(
                {KafkaTopicPartition(OFFSETS_TOPIC, p): wanted}
            )
        wait_for(
            f"three in-sync replicas of {OFFSETS_TOPIC}-{p}",
            lambda: (
                _offsets_state(cluster, p)[1] == wanted
                and sorted(_offsets_state(cluster, p)[2]) == [1, 2, 3]
            ),
            timeout=30,
        )
        if _offsets_state(cluster, p)[0] != target:
            admin.elect_leaders(ElectionType.PREFERRED, {OFFSETS_TOPIC: [p]})
    finally:
        admin.close()
    wait_for(
        f"broker {target} leading {OFFSETS_TOPIC}-{p}",
        lambda: _offsets_state(cluster, p)[0] == target,
        timeout=30,
    )
    return group


def _topic_with_records(cluster: Cluster, topic: str) -> list[bytes]:
    admin = cluster.admin(min(cluster.live))
    admin.create_topics([NewTopic(topic, 1, 3)], operation_timeout=20)[topic].result(
        timeout=30
    )
    cluster.wait_leaders(topic, 1)
    values = [f"{topic}-{i}".encode() for i in range(RECORDS)]
    p = Producer({"bootstrap.servers": _bootstrap(cluster), "acks": "all"})
    for v in values:
        p.produce(topic, v, partition=0)
    assert p.flush(30) == 0
    return values


def _consumer(cluster: Cluster, group: str) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": _bootstrap(cluster),
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 500,
        }
    )


def _read(c: Consumer, count: int, timeout: float = 40) -> list[tuple[int, bytes]]:
    """(offset, value) of the next ``count`` records."""
    out: list[tuple[int, bytes]] = []
    deadline = time.monotonic() + timeout
    while len(out) < count and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        assert m.error() is None, m.error()
        out.append((m.offset(), m.value()))
    assert len(out) == count, f"read {len(out)} of {count} records"
    return out


def _commit_first(cluster: Cluster, topic: str, group: str, upto: int) -> None:
    """A group member reads ``upto`` records, commits after them and leaves."""
    c = _consumer(cluster, group)
    try:
        c.subscribe([topic])
        got = _read(c, upto)
        assert [o for o, _ in got] == list(range(upto))
        c.commit(offsets=[TopicPartition(topic, 0, upto)], asynchronous=False)
    finally:
        c.close()


def _committed(cluster: Cluster, topic: str, group: str) -> int:
    """The group's committed offset (OffsetFetch through the coordinator)."""
    c = _consumer(cluster, group)
    try:
        (tp,) = c.committed([TopicPartition(topic, 0)], timeout=30)
        return int(tp.offset)
    finally:
        c.close()


def _resume(cluster: Cluster, topic: str, group: str, values: list[bytes]) -> None:
    """A new member resumes right after the committed position and reads the rest
    once: no record skipped, none read again."""
    c = _consumer(cluster, group)
    try:
        c.subscribe([topic])
        rest = _read(c, RECORDS - COMMITTED)
        assert rest[0][0] == COMMITTED
        assert [v for _, v in rest] == values[COMMITTED:]
        assert c.poll(1.0) is None  # nothing more: nothing read twice
    finally:
        c.close()


def _coordinator_moves(cluster: Cluster, group: str, away_from: int) -> int:
    node = next(i for i in sorted(cluster.live) if i != away_from)

    def moved() -> int | None:
        code, coordinator = cluster.find_coordinator(node, group)
        return coordinator if code == 0 and coordinator != away_from else None

    return int(wait_for(f"the coordinator of {group} to move", moved, timeout=30))


def test_offsets_survive_a_killed_coordinator(cluster: Cluster) -> None:
    """SIGKILL on a group's coordinator: FindCoordinator answers the new leader of
    the group's offsets partition, which has the committed offset, and a new
    member resumes exactly after it."""
    group = _group_on_rf3(cluster, "killed", avoid=cluster.controller())
    values = _topic_with_records(cluster, "killed-orders")
    _commit_first(cluster, "killed-orders", group, COMMITTED)
    _, coordinator = cluster.find_coordinator(min(cluster.live), group)

    cluster.kill(coordinator)
    try:
        new = _coordinator_moves(cluster, group, coordinator)
        assert new in cluster.live
        assert _committed(cluster, "killed-orders", group) == COMMITTED
        _resume(cluster, "killed-orders", group, values)
    finally:
        cluster.start_broker(coordinator)
        cluster.wait_settled()


def test_offsets_follow_controlled_shutdown_and_preferred_election(
    cluster: Cluster,
) -> None:
    """SIGTERM on the coordinator moves its offsets partition's leadership and the
    committed offset is there; a commit at the new coordinator is there again
    after a preferred election gives the leadership back."""
    group = _group_on_rf3(cluster, "moved", avoid=cluster.controller())
    values = _topic_with_records(cluster, "moved-orders")
    p = offsets_partition(group, OFFSETS_PARTITIONS)
    _commit_first(cluster, "moved-orders", group, 10)
    _, coordinator = cluster.find_coordinator(min(cluster.live), group)

    assert cluster.stop(coordinator) == 0
    try:
        _coordinator_moves(cluster, group, coordinator)
        assert _committed(cluster, "moved-orders", group) == 10
        _commit_first_from(cluster, "moved-orders", group, 10, COMMITTED)
    finally:
        cluster.start_broker(coordinator)
        cluster.wait_settled()
    wait_for(
        f"broker {coordinator} back in the ISR",
        lambda: coordinator in _offsets_state(cluster, p)[2],
        timeout=30,
    )
    admin = _kafka_admin(cluster)
    try:
        admin.elect_leaders(ElectionType.PREFERRED, {OFFSETS_TOPIC: [p]})
    finally:
        admin.close()
    wait_for(
        "the preferred leader back",
        lambda: cluster.find_coordinator(coordinator, group) == (0, coordinator),
        timeout=30,
    )
    assert _committed(cluster, "moved-orders", group) == COMMITTED
    _resume(cluster, "moved-orders", group, values)


def _commit_first_from(
    cluster: Cluster, topic: str, group: str, start: int, upto: int
) -> None:
    """A member resumes at ``start``, reads up to ``upto``, commits and leaves."""
    c = _consumer(cluster, group)
    try:
        c.subscribe([topic])
        got = _read(c, upto - start)
        assert [o for o, _ in got] == list(range(start, upto))
        c.commit(offsets=[TopicPartition(topic, 0, upto)], asynchronous=False)
    finally:
        c.close()


def test_group_members_survive_a_killed_coordinator(cluster: Cluster) -> None:
    """SIGKILL on a group's coordinator: the new leader of the group's offsets
    partition loads the group's GroupMetadata record, so the member carries on in
    the same generation with its partition (no revoke or assign) and its next
    commit succeeds."""
    topic = "members-orders"
    group = _group_on_rf3(cluster, "members-stay", avoid=cluster.controller())
    _topic_with_records(cluster, topic)
    events: list[str] = []
    c = Consumer(
        {
            "bootstrap.servers": _bootstrap(cluster),
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 30_000,
            "heartbeat.interval.ms": 500,
        }
    )
    c.subscribe(
        [topic],
        on_assign=lambda _c, parts: events.append("assign"),
        on_revoke=lambda _c, parts: events.append("revoke"),
    )
    _, coordinator = cluster.find_coordinator(min(cluster.live), group)
    try:
        _read(c, COMMITTED)
        c.commit(offsets=[TopicPartition(topic, 0, COMMITTED)], asynchronous=False)
        before = cluster.live[coordinator].admin("GET", f"/v1/groups/{group}")
        assert before["state"] == "Stable"
        assert events == ["assign"]

        cluster.kill(coordinator)
        new = _coordinator_moves(cluster, group, coordinator)

        def committed() -> bool:
            c.poll(0.2)
            try:
                c.commit(
                    offsets=[TopicPartition(topic, 0, COMMITTED + 1)],
                    asynchronous=False,
                )
            except KafkaException:
                return False
            return True

        wait_for("a commit through the new coordinator", committed, timeout=40)
        after = cluster.live[new].admin("GET", f"/v1/groups/{group}")
        assert after["state"] == "Stable"
        assert after["generation_id"] == before["generation_id"]
        assert [m["member_id"] for m in after["members"]] == [
            m["member_id"] for m in before["members"]
        ]
        assert events == ["assign"]
    finally:
        c.close()
        cluster.start_broker(coordinator)
        cluster.wait_settled()
