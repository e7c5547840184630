"""Where an ingest's heavy work runs: validation and staging in nice-19 worker
processes (broker.snapshots.worker_main, driven by broker.snapshots.workers)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from broker.snapshots.workers import run_inspect_worker, run_stage_worker
from storage.errors import StorageError
from storage.snapshot import Status, plan_apply, snapshot_from_json, snapshot_to_json
from storage.snapshot_meta import SnapshotIncomplete, SnapshotInvalid
from storage.snapshot_stage import StageJob
from tests.snapshots.test_snapshot_storage import (
    open_log,
    produce,
    snap,
    values_of,
)

ROOT = Path(__file__).resolve().parents[2]


def test_validation_in_the_worker_process_matches_validation_here(root: Path) -> None:
    src = open_log(root / "src", 4096)
    produce(src, [b"i" * 200] * 30, epoch=3)
    here = snap(src, root, "1700000000000000007")
    there = anyio.run(run_inspect_worker, here.path, str(root.resolve()), 0.0)
    assert there == here
    assert snapshot_from_json(snapshot_to_json(here)) == here
    src.close()


def test_the_inspect_worker_reports_what_it_found_as_the_same_errors(
    root: Path,
) -> None:
    src = open_log(root / "src", 4096)
    produce(src, [b"j" * 200] * 5)
    s = snap(src, root, "1700000000000000008")
    with open(os.path.join(s.path, s.segments[0].file), "r+b") as f:
        f.seek(120)
        byte = f.read(1)
        f.seek(120)
        f.write(bytes([byte[0] ^ 0x01]))
    with pytest.raises(SnapshotInvalid) as settled:
        anyio.run(run_inspect_worker, s.path, str(root.resolve()), 0.0)
    assert settled.value.reason in ("checksum-mismatch", "bad-batch", "crc")
    with pytest.raises(SnapshotIncomplete):  # just written: maybe still copying
        anyio.run(run_inspect_worker, s.path, str(root.resolve()), 3600.0)
    src.close()


def _job(root: Path, snapshot_values: list[bytes]) -> tuple[StageJob, object, object]:
    src = open_log(root / "src", 4096)
    produce(src, snapshot_values)
    s = snap(src, root, "1700000000000000009")
    dst = open_log(root / "dst", 4096)
    plan = plan_apply(s, dst, str(root.resolve()))
    assert plan.status is Status.APPLYING
    job = StageJob.for_plan(
        s,
        plan,
        root=str(root.resolve()),
        staging_dir=str(root / "ailurus" / "ingest-staging" / "t-0-w"),
        topic="t",
        config=dst.config,
    )
    return job, src, dst


def test_the_worker_process_stages_what_the_log_adopts(root: Path) -> None:
    job, src, dst = _job(root, [b"v" * 300] * 40)
    written, nice = anyio.run(run_stage_worker, job)
    assert nice == 19  # the worker gives way to the event loop and the clients
    assert written == os.path.getsize(
        os.path.join(job.snapshot_path, job.segments[0][0])
    ) + sum(
        os.path.getsize(os.path.join(job.snapshot_path, f))
        for f, _, _ in job.segments[1:]
    )
    assert dst.adopt(job.staging_dir) == src.log_end_offset == 40
    assert values_of(dst) == values_of(src)
    dst.close()
    src.close()


def test_a_snapshot_damaged_after_validation_fails_the_worker_with_the_reason(
    root: Path,
) -> None:
    job, src, dst = _job(root, [b"w" * 300] * 10)
    path = os.path.join(job.snapshot_path, job.segments[0][0])
    with open(path, "r+b") as f:  # flip a byte in the first batch's records
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(StorageError, match=r"stage worker failed.*crc mismatch"):
        anyio.run(run_stage_worker, job)
    assert dst.log_end_offset == 0
    dst.close()
    src.close()


def test_the_worker_exits_when_its_broker_is_gone() -> None:
    gone = subprocess.run(
        [sys.executable, "-m", "broker.snapshots.worker_main", "1"],
        cwd=ROOT,
        input=b"{}",
        capture_output=True,
        check=False,
    )
    assert gone.returncode == 3  # its parent is not pid 1: it must not run on
