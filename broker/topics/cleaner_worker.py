"""The process that writes a cleaning round's cleaned segments, off the broker's GIL.

The log cleaner's job (broker/topics/cleaner.py) runs ``python -m
broker.topics.cleaner_worker <broker pid>`` with a
:class:`~storage.cleaner_build.BuildJob` as JSON on stdin. The worker arranges to die
with the broker, lowers its CPU priority (nice 19: the event loop and the clients
come first), runs :func:`storage.cleaner_build.build_cleaned` and prints the
:class:`~storage.cleaner_build.BuildResult` as its last stdout line; a failure exits
1 with ``{"error", "kind"}``.

Why a process: cleaning decodes every record, and a thread doing that shares the
broker's GIL, so the event loop waits behind it whenever it is preempted holding
it. Measured, that made the p99 produce latency of other partitions ten times worse
(docs/benchmarks.md, "Log compaction"); the snapshot ingest worker
(broker/snapshots/worker_main.py) exists for the same reason.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import sys
from typing import Final

from protocol.records import RecordBatchError
from storage.cleaner_build import BuildJob, build_cleaned
from storage.errors import StorageError

NICE: Final = 19
_PR_SET_PDEATHSIG: Final = 1


def _die_with_parent(parent: int) -> None:
    """SIGKILL this process when the broker dies (Linux); exit if it already has."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        sys.exit(3)


def main(argv: list[str]) -> int:
    """Build the job on stdin; the exit status and last stdout line say how."""
    _die_with_parent(int(argv[0]))
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, 0, NICE)
    try:
        result = build_cleaned(BuildJob.from_json(sys.stdin.buffer.read()))
    except (
        StorageError,
        RecordBatchError,
        OSError,
        ValueError,
        KeyError,
        TypeError,
    ) as exc:
        sys.stdout.write(
            json.dumps({"error": str(exc), "kind": type(exc).__name__}) + "\n"
        )
        return 1
    sys.stdout.write(json.dumps(result.to_json()) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
