"""The process that stages a large snapshot ingest (storage/snapshot_stage.py).

The watcher runs ``python -m broker.snapshot_stage_worker <broker pid>`` with a
:class:`~storage.snapshot_stage.StageJob` as JSON on stdin. The worker lowers its
CPU priority (nice 19: the event loop and the clients come first), arranges to die
with the broker, builds the staged segments and prints ``{"written": N, "nice": 19}``; on
failure it exits 1 with ``{"error": ..., "kind": ...}`` as its last stdout line.

Why a process and not a thread: the copy is cheap in CPU but a thread shares the
broker's GIL, and every time it is preempted while holding it the event loop waits
behind it; measured, that doubled the p99 produce latency of other partitions during
an ingest (docs/benchmarks.md, "Snapshots").
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import sys
from typing import Final

from storage.errors import StorageError
from storage.snapshot_meta import SnapshotInvalid
from storage.snapshot_stage import StageJob, stage_snapshot

NICE: Final = 19
_PR_SET_PDEATHSIG: Final = 1


def _die_with_parent(parent: int) -> None:
    """SIGKILL this process when the broker dies (Linux); exit if it already has."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        sys.exit(3)


def _reply(body: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(body) + "\n")
    sys.stdout.flush()


def main(argv: list[str]) -> int:
    """Stage the job on stdin; the exit status and last stdout line say how it went."""
    _die_with_parent(int(argv[0]))
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, 0, NICE)
    try:
        job = StageJob.from_json(sys.stdin.buffer.read())
        written = stage_snapshot(job)
    except (StorageError, SnapshotInvalid, OSError, ValueError, KeyError) as exc:
        _reply({"error": str(exc), "kind": type(exc).__name__})
        return 1
    _reply({"written": written, "nice": os.getpriority(os.PRIO_PROCESS, 0)})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
