"""Snapshots and replicas of compacted partitions: offset gaps survive create,
inspect, apply, staging/adopt and a follower's verbatim appends."""

from __future__ import annotations

from pathlib import Path

from broker.replication.follower_log import append_from_leader
from protocol.record_builder import RecordInput, build_batch
from storage.config import TopicConfig
from storage.fileops import FileOps
from storage.log_cleaner import LogCleaner
from storage.partition_log import PartitionLog
from storage.snapshot import Status
from storage.snapshot_stage import StageJob, stage_snapshot
from tests.snapshots.test_snapshot_storage import ingest, snap, values_of

SEGMENT = 1024


def compacted_log(path: Path) -> PartitionLog:
    """A log of 200 records over 10 keys, cleaned (gaps everywhere), with a tail."""
    cfg = TopicConfig.from_overrides(
        {"segment.bytes": str(SEGMENT), "cleanup.policy": "compact"}, {}
    )
    log = PartitionLog.open(
        str(path), topic="t", partition=0, config=cfg, fileops=FileOps(), clean=True
    )
    for i in range(200):
        log.append(
            build_batch(
                [RecordInput(key=b"k%d" % (i % 10), value=b"v%d" % i, timestamp=1000)]
            ),
            leader_epoch=1,
        )
    log.roll()
    log.sync()
    assert LogCleaner().clean(log, force=True).cleaned
    for i in range(3):
        log.append(
            build_batch([RecordInput(key=b"t", value=b"tail%d" % i, timestamp=1000)]),
            leader_epoch=2,
        )
    log.sync()
    return log


def empty_log(path: Path, *, clean: bool = True) -> PartitionLog:
    cfg = TopicConfig.from_overrides({"segment.bytes": str(SEGMENT)}, {})
    return PartitionLog.open(
        str(path), topic="t", partition=0, config=cfg, fileops=FileOps(), clean=clean
    )


def test_snapshot_of_a_compacted_partition_restores_its_gaps(root: Path) -> None:
    """A compacted log snapshots (linked cleaned segments, gaps and all), passes
    inspection and applies into an empty log with every record at its offset."""
    src = compacted_log(root / "src")
    expected = values_of(src)
    assert len(expected) == 13  # 10 keys + 3 tail records
    assert expected[0][0] == 190
    s = snap(src, root, "1700000000000000001")
    assert s.meta.last_offset == src.log_end_offset - 1
    dst = empty_log(root / "dst")
    assert ingest(dst, s, root) is Status.APPLIED
    assert values_of(dst) == expected
    assert dst.log_end_offset == src.log_end_offset
    dst.close()
    dst = empty_log(root / "dst", clean=False)  # recovery accepts the gaps
    assert values_of(dst) == expected
    dst.close()
    src.close()


def test_staged_ingest_of_a_compacted_snapshot(root: Path) -> None:
    """The staging path (a worker builds the log, the broker adopts it) keeps gaps."""
    from storage.snapshot import plan_apply

    src = compacted_log(root / "src")
    s = snap(src, root, "1700000000000000002")
    dst = empty_log(root / "dst")
    plan = plan_apply(s, dst, str(root.resolve()))
    assert plan.status is Status.APPLYING
    if plan.reset_start:
        dst.reset_start(plan.from_offset)
    staging = str(root / "ailurus" / "ingest-staging" / "t-0-x")
    job = StageJob.for_plan(
        s,
        plan,
        root=str(root.resolve()),
        staging_dir=staging,
        topic="t",
        config=dst.config,
    )
    stage_snapshot(StageJob.from_json(job.to_json()))
    assert dst.adopt(staging) == src.log_end_offset
    assert values_of(dst) == values_of(src)
    dst.close()
    src.close()


def test_a_follower_copies_a_compacted_leader_with_its_gaps(root: Path) -> None:
    """Fetched batches of a compacted leader append verbatim to a follower's log,
    a gap at a fetch's start included, and survive the follower's restart."""
    leader = compacted_log(root / "leader")
    follower = empty_log(root / "follower")
    offset = 0
    while offset < leader.log_end_offset:
        result = leader.read(offset, 300)
        assert result.buffers
        append_from_leader(follower, b"".join(bytes(b) for b in result.buffers))
        offset = result.next_offset
    assert follower.log_end_offset == leader.log_end_offset
    assert values_of(follower) == values_of(leader)
    follower.close(clean=False)
    follower = empty_log(root / "follower", clean=False)  # every segment re-scanned
    assert follower.recovery is not None
    assert all(s.reason is None for s in follower.recovery.segments)
    assert values_of(follower) == values_of(leader)
    follower.close()
    leader.close()
