"""Where an ingest's heavy work runs (broker.snapshot_watcher): validation in a fresh
SCHED_IDLE thread, staging in a nice-19 worker process (broker.snapshot_stage_worker)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import anyio
import pytest

from broker.snapshot_watcher import in_background, run_stage_worker
from storage.errors import StorageError
from storage.snapshot import Status, plan_apply
from storage.snapshot_stage import StageJob
from tests.snapshots.test_snapshot_storage import (
    open_log,
    produce,
    root,
    snap,
    values_of,
)

__all__ = ["root"]  # the fixture, shared with test_snapshot_storage

ROOT = Path(__file__).resolve().parents[2]


def _observe() -> tuple[int, int, int]:
    """(thread id, scheduling policy, nice value) of the calling thread."""
    return (
        threading.get_native_id(),
        os.sched_getscheduler(0),
        os.getpriority(os.PRIO_PROCESS, 0),
    )


def test_validation_runs_idle_in_its_own_thread() -> None:
    """The read-only validation runs under SCHED_IDLE in a thread of its own, and
    the caller's priority is left as it was."""
    caller = _observe()
    idle_tid, idle_policy, _ = in_background(_observe)
    assert idle_policy == os.SCHED_IDLE
    assert caller[0] != idle_tid
    assert _observe() == caller


def test_errors_and_results_come_back_to_the_caller() -> None:
    """What the function returns or raises reaches the caller unchanged."""
    assert in_background(lambda: 42) == 42

    def fail() -> None:
        raise ValueError("bad snapshot")

    with pytest.raises(ValueError, match="bad snapshot"):
        in_background(fail)


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
    with pytest.raises(StorageError, match=r"staging worker failed.*(crc|CRC)"):
        anyio.run(run_stage_worker, job)
    assert dst.log_end_offset == 0
    dst.close()
    src.close()


def test_the_worker_exits_when_its_broker_is_gone() -> None:
    gone = subprocess.run(
        [sys.executable, "-m", "broker.snapshot_stage_worker", "1"],
        cwd=ROOT,
        input=b"{}",
        capture_output=True,
        check=False,
    )
    assert gone.returncode == 3  # its parent is not pid 1: it must not run on
