"""Worker processes for the broker's heavy jobs, started without Python after fork.

Snapshot validation and staging (broker.snapshots.workers) and the log cleaner's
rewrite (broker.topics.cleaner) each run ``python -m <module> <broker pid> ARGS`` with
the job's input on stdin and read its stdout and stderr until it exits.

The process is started with the standard library's :class:`subprocess.Popen`, not
with the event loop's subprocess support (``anyio.open_process``). uvloop forks with
``fork()`` and runs the interpreter in the child before ``exec``
(``PyOS_AfterFork_Child`` and every ``os.register_at_fork(after_in_child=...)`` hook,
grpcio's among them; uvloop issue #749). In a process with threads (gRPC's in cluster
mode, anyio's worker threads) that is undefined behaviour, and under load a cluster
broker's workers died of SIGSEGV before ``exec`` often enough to matter. ``Popen``
execs straight from the child (``vfork`` on Linux, async-signal-safe calls only), as
asyncio's own event loop does.

``Popen`` is called on the event loop thread: a worker's ``PR_SET_PDEATHSIG`` fires
when the *thread* that started it ends, and that thread lives as long as the broker
(anyio's worker threads do not). The pipes are then served by
:meth:`~subprocess.Popen.communicate` in a worker thread. Cancelling the call kills
the process and returns once it has exited.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Final, NamedTuple

import anyio

from storage.errors import StorageError

# Workers run as ``python -m broker...``: from the directory that holds broker/.
PROJECT_ROOT: Final = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class WorkerOutput(NamedTuple):
    """How a worker process ended and what it wrote."""

    returncode: int  # negative: killed by that signal
    stdout: bytes
    stderr: bytes

    @property
    def exit_text(self) -> str:
        """``exit 1``, or ``killed by SIGSEGV`` for a worker a signal ended."""
        if self.returncode >= 0:
            return f"exit {self.returncode}"
        try:
            name = signal.Signals(-self.returncode).name
        except ValueError:
            name = f"signal {-self.returncode}"
        return f"killed by {name}"


async def run_worker_process(
    module: str, args: list[str], data: bytes, *, what: str
) -> WorkerOutput:
    """Run ``python -m module <broker pid> *args`` with ``data`` on its stdin until it
    exits; its exit status and output. ``what`` names the job in errors.

    Raises:
        StorageError: the process could not be started.
    """
    command = [sys.executable, "-m", module, str(os.getpid()), *args]
    try:
        # on the loop thread (the module docstring says why); vfork + exec is quick
        proc = subprocess.Popen(  # noqa: ASYNC220, S603 - our interpreter and module
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=PROJECT_ROOT,
        )
    except OSError as exc:
        raise StorageError(f"{what} worker could not start: {exc}") from exc
    try:
        stdout, stderr = await anyio.to_thread.run_sync(
            proc.communicate, data, abandon_on_cancel=True
        )
    except BaseException:
        # cancelled: the worker is dead before the caller cleans up after it (the
        # thread left in communicate() returns then too)
        proc.kill()  # a no-op once it has exited
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(proc.wait)
        raise
    return WorkerOutput(proc.returncode, stdout, stderr)
