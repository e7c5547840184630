"""Snapshot ingest work runs in fresh low-priority threads (broker.snapshot_watcher)."""

from __future__ import annotations

import os
import threading

import pytest

from broker.snapshot_watcher import in_background


def _observe() -> tuple[int, int, int]:
    """(thread id, scheduling policy, nice value) of the calling thread."""
    return (
        threading.get_native_id(),
        os.sched_getscheduler(0),
        os.getpriority(os.PRIO_PROCESS, 0),
    )


def test_validation_runs_idle_and_apply_at_nice_19_in_their_own_threads() -> None:
    """The read-only validation runs under SCHED_IDLE, the apply at nice 19, each in
    a thread of its own, and the caller's priority is left as it was."""
    caller = _observe()
    idle_tid, idle_policy, _ = in_background(_observe, idle=True)
    apply_tid, apply_policy, apply_nice = in_background(_observe, idle=False)
    assert idle_policy == os.SCHED_IDLE
    assert apply_policy == caller[1]
    assert apply_nice == 19
    assert caller[0] not in (idle_tid, apply_tid)
    assert _observe() == caller


def test_errors_and_results_come_back_to_the_caller() -> None:
    """What the function returns or raises reaches the caller unchanged."""
    assert in_background(lambda: 42, idle=True) == 42

    def fail() -> None:
        raise ValueError("bad snapshot")

    with pytest.raises(ValueError, match="bad snapshot"):
        in_background(fail, idle=False)
