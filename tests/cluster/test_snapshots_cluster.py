"""Partition snapshots in a cluster (real etcd, three brokers, confluent-kafka).

``snapshot create`` asked of one broker is cut by each partition's leader, which
records its leader epoch in meta.json; a snapshot dropped into a broker that does
not lead its partition is verified there and handed to the leader, which ingests it
while the followers replicate it (all three logs end byte for byte the same, every
record at its original offset); a snapshot of a topic the cluster does not have
makes the controller create it with three replicas; a damaged snapshot stays where
it was dropped and is never sent; committed group offsets restored with a snapshot
go through the group's coordinator; a snapshot of a partition with transactions
keeps its aborted-transaction index through the handover.

One cluster serves the module; every test uses its own destination topic.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from protocol.records import iter_batches
from tests import _txn
from tests.cluster.e2e_cluster import Cluster, wait_for

SOURCE = "orders"
PER_PARTITION = 30
GROUP = "billing"
GROUP_OFFSET = 7


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(
        tmp_path_factory.mktemp("snapcluster"),
        broker_args=(
            "--set",
            "default.replication.factor=3",
            "--set",
            "snapshot.scan.interval.ms=300",
            "--set",
            "snapshot.settle.ms=200",
        ),
    )
    try:
        c.start()
        yield c
    finally:
        c.close()


def _value(partition: int, i: int) -> bytes:
    return f"p{partition}-record-{i}".encode()


@pytest.fixture(scope="module")
def created(cluster: Cluster) -> list[dict[str, Any]]:
    """Three partitions of SOURCE with records and a group's commits, snapshotted
    through broker 1 (with the group offsets)."""
    cluster.create_topic(1, SOURCE, 3, replication_factor=3)
    cluster.wait_leaders(SOURCE, 3)
    producer = Producer(
        {"bootstrap.servers": cluster.bootstrap(1), "acks": "all", "linger.ms": 0}
    )
    for p in range(3):
        for i in range(PER_PARTITION):
            producer.produce(SOURCE, _value(p, i), partition=p)
            if i % 10 == 9:  # several batches per partition
                assert producer.flush(30) == 0
    assert producer.flush(30) == 0
    consumer = Consumer({"bootstrap.servers": cluster.bootstrap(1), "group.id": GROUP})
    try:
        consumer.commit(
            offsets=[TopicPartition(SOURCE, p, GROUP_OFFSET) for p in range(3)],
            asynchronous=False,
        )
    finally:
        consumer.close()
    results = cluster.brokers[1].admin(
        "POST",
        "/v1/snapshots",
        {"topic": SOURCE, "with_group_offsets": True},
        timeout=120,
    )
    assert isinstance(results, list)
    return sorted(results, key=lambda r: r["partition"])


def _snapshot_dir(cluster: Cluster, row: dict[str, Any]) -> Path:
    return Path(row["path"])


def _segments(cluster: Cluster, node: int, topic: str, partition: int) -> bytes:
    d = cluster.root / f"data-{node}" / "kafka" / topic / str(partition)
    return b"".join(p.read_bytes() for p in sorted(d.glob("*.log")))


def _drop(
    cluster: Cluster,
    node: int,
    src: Path,
    topic: str,
    topic_id: str | None,
    damage: bool = False,
) -> str:
    """Copy snapshot ``src`` into broker ``node``'s data/snapshots as one of
    ``topic`` (meta.json and group-offsets.json rewritten; the segments as they
    are, or with one byte flipped near the end of the first when ``damage``); its
    path relative to that snapshots dir."""
    sid = src.name
    parent = cluster.root / f"data-{node}" / "snapshots" / topic
    parent.mkdir(parents=True, exist_ok=True)
    tmp = parent / f".{sid}.copy"
    shutil.copytree(src, tmp)
    meta = json.loads((tmp / "meta.json").read_text())
    meta["topic"] = topic
    if topic_id is None:
        meta.pop("topic_id", None)
    else:
        meta["topic_id"] = topic_id
    (tmp / "meta.json").write_text(json.dumps(meta))
    groups = tmp / "group-offsets.json"
    if groups.exists():
        data = json.loads(groups.read_text())
        data["topic"] = topic
        groups.write_text(json.dumps(data))
    if damage:
        segment = min(tmp.glob("*.log"))
        flipped = bytearray(segment.read_bytes())
        flipped[-5] ^= 0xFF
        segment.write_bytes(bytes(flipped))
    tmp.rename(parent / sid)
    return f"{topic}/{sid}"


def _status(cluster: Cluster, node: int, rel: str) -> dict[str, Any] | None:
    rows = cluster.brokers[node].admin("GET", "/v1/snapshots")
    return next((r for r in rows if r["path"] == rel), None)


def _wait_status(cluster: Cluster, node: int, rel: str, status: str) -> dict[str, Any]:
    def seen() -> dict[str, Any] | None:
        row = _status(cluster, node, rel)
        return row if row is not None and row["status"] == status else None

    return dict(wait_for(f"{rel} {status} on broker {node}", seen, timeout=60))


def _wait_identical(cluster: Cluster, topic: str, partition: int, size: int) -> bytes:
    """Until all three replicas hold the same non-empty log of at least ``size``
    bytes; that log."""

    def same() -> bytes | None:
        logs = {n: _segments(cluster, n, topic, partition) for n in (1, 2, 3)}
        first = logs[1]
        if len(first) < size or any(v != first for v in logs.values()):
            return None
        return first

    try:
        return bytes(wait_for(f"{topic}/{partition} replicas to match", same, 60))
    except AssertionError as exc:
        sizes = {n: len(_segments(cluster, n, topic, partition)) for n in (1, 2, 3)}
        lists = {
            n: [
                (r["path"], r["status"], r["reason"])
                for r in cluster.brokers[n].admin("GET", "/v1/snapshots")
                if r.get("topic") == topic
            ]
            for n in (1, 2, 3)
        }
        state = cluster.partition(topic, partition)
        raise AssertionError(f"{exc}: sizes {sizes}, {state}, {lists}") from None


def _read_all(
    cluster: Cluster, topic: str, partition: int, count: int
) -> list[tuple[int, bytes]]:
    consumer = Consumer(
        {
            "bootstrap.servers": cluster.bootstrap(1),
            "group.id": f"reader-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
        }
    )
    got: list[tuple[int, bytes]] = []
    try:
        consumer.assign([TopicPartition(topic, partition, 0)])

        def done() -> bool:
            for msg in consumer.consume(num_messages=100, timeout=0.5):
                assert msg.error() is None, msg.error()
                got.append((msg.offset(), msg.value()))
            return len(got) >= count

        wait_for(f"{count} records of {topic}/{partition}", done, 60)
    finally:
        consumer.close()
    return got


def _committed(cluster: Cluster, topic: str, partition: int) -> int:
    consumer = Consumer({"bootstrap.servers": cluster.bootstrap(2), "group.id": GROUP})
    try:
        [tp] = consumer.committed([TopicPartition(topic, partition)], timeout=20)
        return int(tp.offset)
    finally:
        consumer.close()


def _not_leader(cluster: Cluster, topic: str, partition: int) -> int:
    leader = cluster.partition(topic, partition)["leader"]
    return next(n for n in (1, 2, 3) if n != leader)


def test_create_is_cut_by_each_partitions_leader_with_its_epoch(
    cluster: Cluster, created: list[dict[str, Any]]
) -> None:
    """Each partition's snapshot is made by its leader, in that broker's snapshots
    dir, and meta.json records the leader epoch at the cut."""
    assert [r["partition"] for r in created] == [0, 1, 2]
    for row in created:
        state = cluster.partition(SOURCE, row["partition"])
        assert "error" not in row, row
        assert row["broker_id"] == state["leader"]
        assert row["leader_epoch"] == state["leader_epoch"]
        assert row["last_offset"] == PER_PARTITION - 1
        path = _snapshot_dir(cluster, row)
        assert path.is_relative_to(cluster.root / f"data-{row['broker_id']}")
        meta = json.loads((path / "meta.json").read_text())
        assert meta["leader_epoch"] == state["leader_epoch"]
        groups = json.loads((path / "group-offsets.json").read_text())["groups"]
        assert [(g["group"], g["offset"]) for g in groups] == [(GROUP, GROUP_OFFSET)]
    # the controller spreads leadership: more than one broker made snapshots
    assert len({r["broker_id"] for r in created}) > 1


def test_create_gathers_every_snapshot_into_the_asking_broker(
    cluster: Cluster, created: list[dict[str, Any]]
) -> None:
    """Each leader sends the snapshot it cut back to the broker asked: all of them
    are in broker 1's snapshots dir, listed there as its own (never ingested)."""
    mine = cluster.root / "data-1" / "snapshots"
    listed = {r["path"]: r for r in cluster.brokers[1].admin("GET", "/v1/snapshots")}
    for row in created:
        assert "gathered_path" in row, row
        gathered = Path(row["gathered_path"])
        assert gathered.is_relative_to(mine)
        original = _snapshot_dir(cluster, row)
        assert sorted(p.name for p in gathered.iterdir()) == sorted(
            p.name for p in original.iterdir()
        )
        for f in original.iterdir():
            assert (gathered / f.name).read_bytes() == f.read_bytes()
        rel = str(gathered.relative_to(mine))
        assert listed[rel]["status"] == "created"


def test_snapshot_on_a_non_leader_is_applied_by_the_leader_and_replicated(
    cluster: Cluster, created: list[dict[str, Any]]
) -> None:
    """A snapshot dropped into a follower is handed to the leader, which ingests it
    with its own epoch; all three replicas end identical, every record at its
    original offset, and the group's offset is restored through its coordinator."""
    topic = "restore-existing"
    cluster.create_topic(1, topic, 1, replication_factor=3)
    cluster.wait_leaders(topic, 1)
    follower = _not_leader(cluster, topic, 0)
    rel = _drop(cluster, follower, _snapshot_dir(cluster, created[0]), topic, None)
    row = _wait_status(cluster, follower, rel, "handed-over")
    leader = cluster.partition(topic, 0)["leader"]
    assert f"broker {leader} leads" in row["reason"]
    log = _wait_identical(cluster, topic, 0, 1)
    state = cluster.partition(topic, 0)
    epochs = {h.partition_leader_epoch for _, h in iter_batches(log)}
    assert epochs == {state["leader_epoch"]}
    got = _read_all(cluster, topic, 0, PER_PARTITION)
    assert got == [(i, _value(0, i)) for i in range(PER_PARTITION)]
    # the follower's copy is left as it was dropped
    assert (
        cluster.root / f"data-{follower}" / "snapshots" / rel / "meta.json"
    ).exists()
    applied = [
        r
        for r in cluster.brokers[leader].admin("GET", "/v1/snapshots")
        if r["topic"] == topic and r["status"] == "applied"
    ]
    assert len(applied) == 1
    assert wait_for(
        "the restored commit", lambda: _committed(cluster, topic, 0) == GROUP_OFFSET
    )


def test_snapshot_of_a_missing_topic_is_placed_by_the_controller(
    cluster: Cluster, created: list[dict[str, Any]]
) -> None:
    """The topic of a snapshot the cluster lacks is created by the controller with
    the default replication factor (3) and the snapshot's id; its leader ingests."""
    topic = "restore-missing"
    topic_id = str(uuid.uuid4())
    rel = _drop(cluster, 2, _snapshot_dir(cluster, created[1]), topic, topic_id)
    leaders = cluster.wait_leaders(topic, 3)
    assert sorted(leaders) == [0, 1, 2]
    for p in range(3):
        assert sorted(cluster.partition(topic, p)["replicas"]) == [1, 2, 3]
    _wait_identical(cluster, topic, 1, 1)
    got = _read_all(cluster, topic, 1, PER_PARTITION)
    assert got == [(i, _value(1, i)) for i in range(PER_PARTITION)]
    status = "applied" if leaders[1] == 2 else "handed-over"
    _wait_status(cluster, 2, rel, status)
    topics = cluster.brokers[1].admin("GET", f"/v1/topics/{topic}")
    assert topics["topic_id"] == topic_id


def test_damaged_snapshot_on_a_non_leader_stays_and_is_not_sent(
    cluster: Cluster, created: list[dict[str, Any]]
) -> None:
    """A snapshot whose segment fails its checksum is reported invalid where it was
    dropped, left byte for byte as it was, and never reaches the leader."""
    topic = "restore-damaged"
    cluster.create_topic(1, topic, 1, replication_factor=3)
    cluster.wait_leaders(topic, 1)
    follower = _not_leader(cluster, topic, 0)
    before = cluster.metric(follower, "ailurus_snapshots_handed_over_total")
    src = _snapshot_dir(cluster, created[2])
    rel = _drop(cluster, follower, src, topic, None, damage=True)
    where = cluster.root / f"data-{follower}" / "snapshots" / rel
    segment = min(where.glob("*.log"))
    dropped = segment.read_bytes()
    assert dropped != (src / segment.name).read_bytes()
    row = _wait_status(cluster, follower, rel, "invalid")
    assert row["reason"]
    assert segment.read_bytes() == dropped
    assert cluster.metric(follower, "ailurus_snapshots_handed_over_total") == before
    for n in (1, 2, 3):
        if n != follower:
            assert not (cluster.root / f"data-{n}" / "snapshots" / topic).exists()
    assert _segments(cluster, cluster.partition(topic, 0)["leader"], topic, 0) == b""


def test_transactional_snapshot_restored_through_a_follower_answers_the_same(
    cluster: Cluster,
) -> None:
    """A partition with an aborted, a committed and an open transaction is cut by
    its leader at the last stable offset with its .txnindex; dropped into a
    follower of another topic, it is handed to that topic's leader with the index,
    and the restored partition answers read_committed Fetch and ListOffsets as the
    source, replicated to all three replicas."""
    source, topic = "txn-source", "txn-restored"
    cluster.create_topic(1, source, 1, replication_factor=3)
    leader = cluster.wait_leaders(source, 1)[0]
    with cluster.brokers[leader].connect() as sock:
        p1, p2, p3 = (_txn.producer_id(sock) for _ in range(3))
        assert _txn.produce(sock, source, _txn.plain(b"p0")) == 0
        assert _txn.produce(sock, source, _txn.txn(p1, 0, b"a1", b"a2")) == 1
        assert _txn.produce(sock, source, _txn.txn(p2, 0, b"c1")) == 3
        assert _txn.markers(sock, source, (p1, False, 0), (p2, True, 0)) == [0, 0]
        assert _txn.produce(sock, source, _txn.txn(p3, 0, b"open")) == 6
        assert _txn.produce(sock, source, _txn.plain(b"p1")) == 7
        source_view = _txn.fetch(sock, source, 1)
        assert source_view.last_stable_offset == 6
    [row] = cluster.brokers[1].admin("POST", "/v1/snapshots", {"topic": source})
    snap = Path(row["path"])
    meta = json.loads((snap / "meta.json").read_text())
    assert (meta["last_offset"], meta["last_stable_offset"]) == (5, 6)
    assert [i["file"] for i in meta["txn_indexes"]] == ["00000000000000000000.txnindex"]
    cluster.create_topic(1, topic, 1, replication_factor=3)
    cluster.wait_leaders(topic, 1)
    follower = _not_leader(cluster, topic, 0)
    rel = _drop(cluster, follower, snap, topic, None)
    _wait_status(cluster, follower, rel, "handed-over")
    _wait_identical(cluster, topic, 0, 1)
    new_leader = cluster.partition(topic, 0)["leader"]
    with cluster.brokers[new_leader].connect() as sock:
        restored = _txn.fetch(sock, topic, 1)
        assert restored.last_stable_offset == 6
        assert _txn.latest(sock, topic, 1) == 6
    assert restored.aborted_transactions == source_view.aborted_transactions
    assert [a.first_offset for a in restored.aborted_transactions or ()] == [1]
