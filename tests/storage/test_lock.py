"""The data-dir lock: a second opener fails with the holder's pid."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from storage.errors import DataDirLocked
from storage.lock import DataDirLock
from storage.log_manager import LogManager


def test_second_log_manager_is_refused_with_pid(tmp_path: Path) -> None:
    """Opening a locked data dir raises DataDirLocked naming the holder's pid."""
    lm = LogManager(tmp_path)
    with pytest.raises(DataDirLocked, match=f"pid {os.getpid()}") as info:
        LogManager(tmp_path)
    assert info.value.pid == os.getpid()
    lm.close()
    LogManager(tmp_path).close()


def test_lock_held_by_another_process(tmp_path: Path) -> None:
    """A lock held by a child process blocks us until the child exits."""
    code = (
        "import sys, time; from storage.lock import DataDirLock; "
        f"lock = DataDirLock({str(tmp_path)!r}); print('locked', flush=True); "
        "sys.stdin.readline()"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[2],
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "locked"
        with pytest.raises(DataDirLocked) as info:
            DataDirLock(str(tmp_path))
        assert info.value.pid == child.pid
    finally:
        child.kill()
        child.wait(timeout=10)
        if child.stdin is not None:
            child.stdin.close()
        if child.stdout is not None:
            child.stdout.close()
    lock = DataDirLock(str(tmp_path))
    assert lock.held
    lock.release()
    assert not lock.held
