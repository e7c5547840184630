"""The process that does a snapshot ingest's heavy work, off the broker's GIL.

The watcher runs ``python -m broker.snapshots.worker_main <broker pid> <job>`` with
the job's input as JSON on stdin:

- ``inspect`` ``{"path", "root", "settle_s"}``: validate the snapshot (every byte
  read and checksummed; storage.snapshot.inspect_snapshot), reply
  ``{"snapshot": ...}`` (storage.snapshot.snapshot_to_json);
- ``stage`` a :class:`~storage.snapshot_stage.StageJob`: build the batches the plan
  appends into segments beside the log, reply ``{"written": N, "nice": 19}``.

The worker first arranges to die with the broker and lowers its CPU priority
(nice 19: the event loop and the clients come first). Its last stdout line is the
reply; a failure exits 1 with ``{"error", "kind", "reason", "detail"}``.

Why a process and not a thread: the work is cheap in CPU, but a thread shares the
broker's GIL, and whenever it is preempted while holding it the event loop waits
behind it. Measured, that doubled the p99 produce latency of other partitions during
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
from storage.snapshot import inspect_snapshot, snapshot_to_json
from storage.snapshot_meta import SnapshotError
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


def _inspect(data: bytes) -> dict[str, object]:
    args = json.loads(data)
    snap = inspect_snapshot(
        str(args["path"]), str(args["root"]), settle_s=float(args["settle_s"])
    )
    return {"snapshot": snapshot_to_json(snap)}


def _stage(data: bytes) -> dict[str, object]:
    written = stage_snapshot(StageJob.from_json(data))
    return {"written": written, "nice": os.getpriority(os.PRIO_PROCESS, 0)}


JOBS: Final = {"inspect": _inspect, "stage": _stage}


def main(argv: list[str]) -> int:
    """Run the job named in argv on stdin; the exit status and last stdout line say
    how it went."""
    _die_with_parent(int(argv[0]))
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, 0, NICE)
    run = JOBS.get(argv[1] if len(argv) > 1 else "")
    if run is None:
        _reply({"error": f"job must be one of {', '.join(JOBS)}", "kind": "usage"})
        return 2
    try:
        _reply(run(sys.stdin.buffer.read()))
    except SnapshotError as exc:
        kind = type(exc).__name__
        _reply(
            {
                "error": str(exc),
                "kind": kind,
                "reason": exc.reason,
                "detail": exc.detail,
            }
        )
        return 1
    except (StorageError, OSError, ValueError, KeyError, TypeError) as exc:
        _reply({"error": str(exc), "kind": type(exc).__name__})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
