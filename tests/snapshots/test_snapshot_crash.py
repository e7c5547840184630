"""Snapshot ingest under SIGKILL, and hostile snapshot trees, against real brokers."""

from __future__ import annotations

import json
import os
import random
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from protocol.record_builder import RecordInput, build_batch
from protocol.records import split_complete
from storage.config import TopicConfig
from storage.fileops import FileOps
from storage.partition_log import PartitionLog
from storage.snapshot import CreateRequest, create_snapshot
from storage.snapshot_meta import NO_ANCESTOR
from tests._broker import start_broker as _start_broker
from tests.snapshots.conftest import (
    ENV,
    Broker,
    cp_r,
    start_broker,
    wait_for,
    wait_status,
)

pytestmark = pytest.mark.integration

TOPIC_ID = "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9"


def make_snapshot(
    tmp: Path, dest_snapshots: Path, *, batches: int, records: int, value: int
) -> Path:
    """A snapshot of an in-process partition log (real storage), written into dest."""
    cfg = TopicConfig.from_overrides({"segment.bytes": str(4 << 20)}, {})
    log = PartitionLog.open(
        str(tmp / "src"),
        topic="big",
        partition=0,
        config=cfg,
        fileops=FileOps(),
        clean=True,
    )
    for i in range(batches):
        recs = [
            RecordInput(
                key=b"%d" % i, value=bytes([i % 256]) * value, timestamp=1000 + i
            )
            for _ in range(records)
        ]
        log.append(build_batch(recs), leader_epoch=2)
    path, _ = create_snapshot(
        log,
        CreateRequest(
            snapshots_dir=str(dest_snapshots),
            dir_name=TOPIC_ID,
            snapshot_id="1700000000000000001",
            topic="big",
            topic_id=TOPIC_ID,
            partition=0,
            partition_count=1,
            end_offset=log.log_end_offset,
        ),
    )
    log.close()
    return Path(path)


def log_bytes(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(directory.glob("*.log")))


def test_sigkill_during_ingest_then_restart_is_consistent_and_complete(
    tmp_path: Path,
) -> None:
    """Killing the broker at random points of an ingest never tears or duplicates batches."""
    data = tmp_path / "b2"
    snap = make_snapshot(
        tmp_path, data / "snapshots", batches=120, records=10, value=10_000
    )
    expected = log_bytes(snap)
    assert len(expected) > 10 << 20  # above the inline limit: the chunked path runs
    env = {"AILURUS_SNAPSHOT_INGEST_BYTES_PER_SEC": str(15 << 20)}
    rng = random.Random(7)
    kills = 0
    for _ in range(4):  # bounded: a few kills at random moments
        b = start_broker(data, env)
        time.sleep(rng.uniform(0.05, 0.8))
        b.stop(signal.SIGKILL)
        kills += 1
        part = data / "kafka" / "big" / "0"
        if part.exists():
            on_disk = log_bytes(part)
            # Whatever survived is a prefix of the snapshot's batches plus at most a
            # torn tail, which recovery cuts on the next start.
            assert expected.startswith(on_disk[: split_complete(on_disk)])
    b = start_broker(data, env)
    try:
        wait_status(b, f"{TOPIC_ID}/{snap.name}", "applied", timeout=30)
        assert b.partition("big", 0)["log_end_offset"] == 1200
        assert b.admin("GET", "/v1/topics/big")["topic_id"] == TOPIC_ID
    finally:
        b.stop()
    assert kills == 4
    assert log_bytes(data / "kafka" / "big" / "0") == expected
    assert log_bytes(snap) == expected  # the user's files were never modified
    # nothing is left of the worker's staging directories
    assert not list((data / "ailurus" / "ingest-staging").glob("*"))


def test_an_ingest_that_would_cross_the_disk_floor_waits_with_the_reason(
    tmp_path: Path,
) -> None:
    """The staging worker writes past the broker's guarded file operations, so the
    watcher checks the free-space floor itself before it starts one."""
    data = tmp_path / "b3"
    snap = make_snapshot(
        tmp_path, data / "snapshots", batches=120, records=10, value=10_000
    )
    assert len(log_bytes(snap)) > 10 << 20  # above the inline limit: a worker stages
    st = os.statvfs(tmp_path)
    # above what is free: the snapshot never fits, however much space other processes
    # sharing the disk free meanwhile (free - 1 MiB let an ingest through once)
    floor = st.f_bavail * st.f_frsize + (1 << 30)
    data.mkdir(parents=True, exist_ok=True)
    b = _start_broker(
        data,
        "--set",
        f"ailurus.disk.min.free.bytes={floor}",
        log_path=tmp_path / "b3.log",
        ready_path=tmp_path / "b3.ready.json",
        env=ENV,
        cls=Broker,
    )
    try:
        row = wait_status(b, f"{TOPIC_ID}/{snap.name}", "waiting")
        assert "not enough disk space" in row["reason"]
        assert not (data / "kafka" / "big" / "0").exists() or not log_bytes(
            data / "kafka" / "big" / "0"
        )
    finally:
        b.stop()


def test_hostile_snapshot_trees_are_rejected_safely(
    tmp_path: Path, brokers: Callable[..., Broker]
) -> None:
    """Symlinks out of the data dir, '..' names, a 2 GiB meta.json and non-UTF-8 names
    are rejected; a good snapshot beside them still applies."""
    outside = tmp_path / "outside"
    good = make_snapshot(
        tmp_path, outside / "snapshots", batches=3, records=2, value=10
    )
    secret = outside / "secret.log"
    secret.write_bytes((good / "00000000000000000000.log").read_bytes())
    b = brokers("b")
    snaps = b.data_dir / "snapshots"
    # 1. a topic directory that is a symlink out of the data dir
    (snaps / "evil-topic").symlink_to(outside / "snapshots" / TOPIC_ID)
    # 2. a segment that is a symlink out of the data dir
    d = snaps / "linked" / "1"
    d.mkdir(parents=True)
    (d / "meta.json").write_text((good / "meta.json").read_text())
    (d / "00000000000000000000.log").symlink_to(secret)
    # 3. '..' in a segment name
    d = snaps / "dots" / "1"
    d.mkdir(parents=True)
    meta = json.loads((good / "meta.json").read_text())
    meta["segments"][0]["file"] = "../../../outside/secret.log"
    (d / "meta.json").write_text(json.dumps(meta))
    # 4. a 2 GiB meta.json (sparse)
    d = snaps / "huge" / "1"
    d.mkdir(parents=True)
    with open(d / "meta.json", "wb") as f:
        f.truncate(2 * 1024**3)
    # 5. non-UTF-8 names
    os.makedirs(os.path.join(os.fsencode(snaps), b"bad\xff\xfename", b"1"))
    d = snaps / "nonutf" / "1"
    d.mkdir(parents=True)
    (d / "meta.json").write_text(
        json.dumps(
            {
                "version": 1,
                "last_offset": 0,
                "last_term": 0,
                "ancestor_snapshot_id": NO_ANCESTOR,
                "compression": "none",
                "size": 0,
            }
        )
    )
    with open(os.path.join(os.fsencode(d), b"\xff.log"), "wb") as f:
        f.write(b"x")
    # and one good snapshot, copied normally
    cp_r(good, snaps / TOPIC_ID / good.name)
    wait_status(b, f"{TOPIC_ID}/{good.name}", "applied")
    rows = wait_for(
        lambda: r if len(r := b.statuses()) >= 7 else None, what="seven statuses"
    )
    by_path = {k: (v["status"], v["reason"]) for k, v in rows.items()}
    assert by_path["evil-topic"][0] == "invalid"
    assert "symlink-outside-data-dir" in by_path["evil-topic"][1]
    assert "symlink-outside-data-dir" in by_path["linked/1"][1]
    assert "bad-file-name" in by_path["dots/1"][1]
    assert "meta-too-large" in by_path["huge/1"][1]
    assert "non-utf8-name" in by_path["nonutf/1"][1]
    assert any(
        "non-utf8-name" in reason
        for path, (_, reason) in by_path.items()
        if path.startswith("bad")
    )
    assert {t["name"] for t in b.admin("GET", "/v1/topics")} == {"big"}
    assert b.partition("big", 0)["log_end_offset"] == 6
    assert secret.read_bytes() == (good / "00000000000000000000.log").read_bytes()


def test_producers_wait_for_a_large_ingest_on_their_partition(
    tmp_path: Path, brokers: Callable[..., Broker]
) -> None:
    """Records produced to a partition while a chunked ingest writes it land after the
    snapshot's batches: the ingest applies whole and no acknowledged record is lost."""
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
    from kafka.admin import NewTopic

    b = brokers("b", {"AILURUS_SNAPSHOT_INGEST_BYTES_PER_SEC": str(10 << 20)})
    admin = KafkaAdminClient(bootstrap_servers=b.bootstrap)
    admin.create_topics([NewTopic("big", 1, 1)])
    admin.close()
    snap = make_snapshot(
        tmp_path, tmp_path / "made", batches=120, records=10, value=10_000
    )
    cp_r(snap, b.data_dir / "snapshots" / "big" / ".incoming")
    os.rename(
        b.data_dir / "snapshots" / "big" / ".incoming",
        b.data_dir / "snapshots" / "big" / snap.name,
    )
    wait_for(lambda: b.partition("big", 0)["log_end_offset"] > 0, what="ingest started")
    producer = KafkaProducer(
        bootstrap_servers=b.bootstrap, acks=1, enable_idempotence=False
    )
    futures = [
        producer.send("big", value=b"live-%d" % i, partition=0) for i in range(50)
    ]
    acked = [f.get(timeout=30).offset for f in futures]
    producer.close()
    wait_status(b, f"big/{snap.name}", "applied", timeout=30)
    assert acked == list(range(1200, 1250))
    consumer = KafkaConsumer(
        bootstrap_servers=b.bootstrap,
        enable_auto_commit=False,
        consumer_timeout_ms=3000,
        max_partition_fetch_bytes=4 << 20,
        fetch_max_bytes=8 << 20,
    )
    from kafka import TopicPartition

    tp = TopicPartition("big", 0)
    consumer.assign([tp])
    consumer.seek(tp, 1190)
    got = []
    deadline = time.monotonic() + 15
    while len(got) < 55 and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            got.extend((r.offset, r.value) for r in records if r.offset >= 1195)
    consumer.close()
    assert [o for o, _ in got] == list(range(1195, 1250))
    assert [v for _, v in got[5:]] == [b"live-%d" % i for i in range(50)]
