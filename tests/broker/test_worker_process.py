"""Worker processes (broker.worker_process): started without Python between fork
and exec, a crash reported as an exit status, cancellation kills the worker."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import anyio
import pytest

from broker.snapshots.workers import run_worker
from broker.worker_process import PROJECT_ROOT, WorkerOutput, run_worker_process
from storage.errors import StorageError

T = TypeVar("T")
STUB = "tests.broker._worker_stub"
BIG = b"j" * (4 * 1024 * 1024)  # more than a pipe holds: the writer meets a dead reader


def _uvloop(fn: Callable[[], Awaitable[T]]) -> T:
    return anyio.run(fn, backend_options={"use_uvloop": True})


def _worker(args: list[str], data: bytes) -> Callable[[], Awaitable[WorkerOutput]]:
    return functools.partial(run_worker_process, STUB, args, data, what="test")


def test_a_worker_gets_its_input_and_both_outputs() -> None:
    """The worker reads all of stdin; its stdout, stderr and exit status come back."""
    out = _uvloop(_worker(["echo"], BIG))
    assert out == WorkerOutput(0, f"{len(BIG)}\n".encode(), b"oops\n")
    assert out.exit_text == "exit 0"


def test_a_worker_that_dies_before_reading_its_input_is_an_exit_status() -> None:
    """A worker killed by a signal before it read stdin is reported by its exit
    status (the loop's own subprocess support raised BrokenResourceError here, which
    ended the snapshot watcher and the broker with it)."""
    out = _uvloop(_worker(["segv"], BIG))
    assert out.returncode == -11
    assert out.exit_text == "killed by SIGSEGV"


def test_a_failed_snapshot_worker_is_a_storage_error_naming_its_exit(
    tmp_path: Path,
) -> None:
    """A snapshot job whose worker fails raises StorageError with its exit status,
    which the watcher records (the snapshot waits and is inspected again)."""
    missing = tmp_path / "nowhere"  # the worker exits 1 with a reason
    with pytest.raises(StorageError, match=r"snapshot inspect worker failed \(exit 1"):
        _uvloop(
            functools.partial(
                run_worker, "inspect", b'{"path": "%s"}' % str(missing).encode()
            )
        )
    with pytest.raises(StorageError, match=r"snapshot bogus worker failed \(exit 2"):
        _uvloop(functools.partial(run_worker, "bogus", b"{}"))


def test_cancelling_kills_the_worker(tmp_path: Path) -> None:
    """A cancelled job's worker is killed and reaped before the call returns (the log
    cleaner then deletes what the worker wrote)."""
    pid_file = tmp_path / "pid"

    async def main() -> int:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_worker(["sleep", str(pid_file)], b""))
            await anyio.to_thread.run_sync(_wait_for_file, pid_file)
            tg.cancel_scope.cancel()
        return int(pid_file.read_text())

    pid = _uvloop(main)
    assert not _alive(pid)


def _wait_for_file(path: Path) -> None:
    deadline = time.monotonic() + 60
    while not path.exists():
        assert time.monotonic() < deadline, f"no {path}"
        time.sleep(0.02)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_no_python_runs_in_the_child_between_fork_and_exec() -> None:
    """Under uvloop in a process with threads, starting a worker runs no
    ``os.register_at_fork`` child hook (uvloop's own subprocess support runs them, and
    the interpreter, in the forked child: a worker of a cluster broker, which has
    gRPC's threads, died of SIGSEGV there under load)."""
    script = textwrap.dedent(
        f"""
        import os, threading, anyio
        from broker.worker_process import run_worker_process
        r, w = os.pipe()
        os.register_at_fork(after_in_child=lambda: os.write(w, b"x"))
        if os.fork() == 0:  # the control: a fork that returns to Python runs it
            os._exit(0)
        os.wait()
        stop = threading.Event()
        threading.Thread(target=lambda: stop.wait(), daemon=True).start()

        async def main():
            for _ in range(3):
                out = await run_worker_process({STUB!r}, ["echo"], b"abc", what="t")
                assert out.returncode == 0, out
        anyio.run(main, backend_options={{"use_uvloop": True}})
        os.set_blocking(r, False)
        try:
            print(len(os.read(r, 1000)))
        except BlockingIOError:
            print(0)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=PROJECT_ROOT,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().strip() == "1"  # the control's, none of the workers'
