"""Staging a snapshot's batches beside the log and adopting them in one step
(storage/snapshot_stage.py, PartitionLog.adopt), including crashes part-way."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from storage.config import TopicConfig
from storage.errors import OffsetMismatch, StorageIOError
from storage.fileops import FileOps
from storage.partition_log import PartitionLog
from storage.snapshot import Snapshot, Status, aborted_of, plan_apply
from storage.snapshot_stage import StageJob, clear_staging, stage_snapshot
from tests.snapshots.test_snapshot_storage import (
    open_log,
    produce,
    snap,
    values_of,
)

SEGMENT = 1024


def stage(log: PartitionLog, s: Snapshot, root: Path) -> tuple[str, int]:
    """Plan ``s`` against ``log``, stage what it appends; (staging dir, bytes)."""
    plan = plan_apply(s, log, str(root.resolve()))
    assert plan.status is Status.APPLYING
    if plan.reset_start:
        log.reset_start(plan.from_offset)
    staging = str(root / "ailurus" / "ingest-staging" / "t-0-x")
    job = StageJob.for_plan(
        s,
        plan,
        root=str(root.resolve()),
        staging_dir=staging,
        topic="t",
        config=log.config,
        aborted=aborted_of(s, str(root.resolve())),
    )
    job = StageJob.from_json(job.to_json())  # what the worker process gets
    return staging, stage_snapshot(job)


def reopen(log: PartitionLog, path: Path, *, clean: bool) -> PartitionLog:
    log.close(clean=clean)
    return open_log(path, SEGMENT)


def test_adopt_into_an_empty_log_keeps_offsets_epochs_and_survives_reopen(
    root: Path,
) -> None:
    src = open_log(root / "src", SEGMENT)
    produce(src, [b"a" * 100] * 3, epoch=2)
    produce(src, [b"b" * 100] * 30, epoch=5)
    src.delete_records(3)  # the snapshot starts past 0: the log start moves there
    s = snap(src, root, "1700000000000000001")
    dst = open_log(root / "dst", SEGMENT)
    staging, written = stage(dst, s, root)
    assert written == sum(seg.size for seg in s.segments) > SEGMENT
    assert dst.adopt(staging) == src.log_end_offset == 33
    dst.sync()
    assert len(dst.segments()) > 1  # the staged log rolled as segment.bytes says
    assert dst.log_start_offset == s.base_offset
    assert values_of(dst) == values_of(src)
    assert dst.leader_epoch == 5
    assert dst.epoch_end_offset(2) == src.epoch_end_offset(2)
    assert dst.read(20, 1).buffers  # the adopted indexes find a middle offset
    produce(dst, [b"after"])  # the last staged segment is the active one
    assert dst.log_end_offset == 34
    for clean in (True, False):
        dst = reopen(dst, root / "dst", clean=clean)
        assert dst.log_end_offset == 34
        assert values_of(dst)[-1] == (33, b"after")
        assert values_of(dst)[:-1] == values_of(src)
        assert dst.leader_epoch == 5
    dst.close()
    src.close()


def test_adopt_after_existing_records_closes_the_active_segment(root: Path) -> None:
    src = open_log(root / "src", SEGMENT)
    produce(src, [b"x" * 50] * 20)
    s = snap(src, root, "1700000000000000002")
    dst = open_log(root / "dst", SEGMENT)
    # the overlap must match byte for byte: the log holds src's first batches
    first = src.read(0, 1)
    dst.append_verbatim(b"".join(bytes(b) for b in first.buffers))
    staging, _ = stage(dst, s, root)
    before = dst.segments()[-1]
    dst.adopt(staging)
    assert dst.segments()[0].base_offset == before.base_offset
    assert not dst.segments()[0].active
    assert values_of(dst) == values_of(src)
    dst.close()
    src.close()


def test_adopt_refuses_segments_that_do_not_follow_on(root: Path) -> None:
    src = open_log(root / "src", SEGMENT)
    produce(src, [b"y" * 10] * 5)
    s = snap(src, root, "1700000000000000003")
    dst = open_log(root / "dst", SEGMENT)
    staging, _ = stage(dst, s, root)
    produce(dst, [b"z"])  # the log moved after the staging: adoption must refuse
    with pytest.raises(OffsetMismatch):
        dst.adopt(staging)
    assert values_of(dst) == [(0, b"z")]
    assert sorted(os.listdir(staging))  # nothing was taken from the staging dir
    dst.close()
    src.close()


class _FailSecondLogRename(FileOps):
    """Renames of the second .log file fail: a crash part-way through adoption."""

    def __init__(self) -> None:
        self.logs = 0

    def replace(self, src: str, dst: str) -> None:
        if dst.endswith(".log"):
            self.logs += 1
            if self.logs == 2:
                raise OSError(5, "injected")
        super().replace(src, dst)


def test_a_crash_part_way_through_adoption_leaves_a_prefix_the_next_apply_completes(
    root: Path,
) -> None:
    src = open_log(root / "src", SEGMENT)
    produce(src, [b"c" * 100] * 30)
    s = snap(src, root, "1700000000000000004")
    fileops = _FailSecondLogRename()
    cfg = TopicConfig.from_overrides({"segment.bytes": str(SEGMENT)}, {})
    dst = PartitionLog.open(
        str(root / "dst"),
        topic="t",
        partition=0,
        config=cfg,
        fileops=fileops,
        clean=True,
    )
    staging, _ = stage(dst, s, root)
    with pytest.raises(StorageIOError):
        dst.adopt(staging)
    assert dst.failed  # the log goes offline, as after a failed write
    dst.close(clean=False)
    dst = open_log(root / "dst", SEGMENT)  # "restart": recovery checks the prefix
    prefix = values_of(dst)
    assert 0 < len(prefix) < 30
    assert prefix == values_of(src)[: len(prefix)]
    clear_staging(str(root))
    staging, _ = stage(dst, s, root)  # the next scan plans the rest
    dst.adopt(staging)
    assert values_of(dst) == values_of(src)
    dst.close()
    src.close()


def test_clear_staging_removes_leftovers(root: Path) -> None:
    left = root / "ailurus" / "ingest-staging" / "t-0-old"
    left.mkdir(parents=True)
    (left / "00000000000000000000.log").write_bytes(b"half")
    clear_staging(str(root))
    assert not (root / "ailurus" / "ingest-staging").exists()
    assert (root / "snapshots").exists()
