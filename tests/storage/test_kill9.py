"""kill -9 a real writer at random moments: every acknowledged record survives."""

from __future__ import annotations

import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from protocol.record_builder import iter_records
from protocol.records import iter_batches, verify_batch
from storage.log_manager import LogManager

ROOT = Path(__file__).resolve().parents[2]


def run_and_kill(data_dir: Path, run_for: float) -> int:
    """Start the child, let it append for ``run_for`` s, SIGKILL it; return the
    highest acknowledged last offset (-1 if none)."""
    child = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).with_name("kill9_child.py")),
            str(data_dir),
        ],
        stdout=subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    acked = -1
    assert child.stdout is not None
    fd = child.stdout.fileno()
    buffer = b""
    deadline = None
    try:
        limit = time.monotonic() + 20
        while time.monotonic() < limit:
            ready, _, _ = select.select([fd], [], [], 0.05)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    parts = line.split()
                    if parts[0] == b"ready":
                        deadline = time.monotonic() + run_for
                    elif parts[0] == b"ack":
                        acked = int(parts[2])
            if deadline is not None and time.monotonic() >= deadline:
                break
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
        # Acks already in the pipe count: the child printed them after fsync.
        rest = buffer + child.stdout.read()
        for line in rest.split(b"\n"):
            parts = line.split()
            if len(parts) == 3 and parts[0] == b"ack":
                acked = int(parts[2])
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)
        child.stdout.close()
    return acked


def test_acknowledged_records_survive_kill_9(tmp_path: Path) -> None:
    """Each round kills the writer mid-stream; on reopen every acked offset is there,
    intact and holding the value written for it."""
    rng = random.Random(7)
    acked = -1
    for _ in range(5):
        acked = max(acked, run_and_kill(tmp_path, rng.uniform(0.05, 0.4)))
        lm = LogManager(tmp_path)
        log = lm.partition("k", 0)
        assert log.log_end_offset >= acked + 1
        offset = 0
        seen = 0
        while offset < log.log_end_offset:
            result = log.read(offset, 1 << 20)
            data = b"".join(bytes(b) for b in result.buffers)
            for pos, header in iter_batches(data):
                verify_batch(data, pos)
                for record in iter_records(data[pos : pos + header.size]):
                    assert record.value == b"value-%d-%d" % (
                        header.base_offset,
                        record.offset - header.base_offset,
                    )
                    assert record.offset == seen
                    seen += 1
            offset = result.next_offset
        assert seen == log.log_end_offset
        lm.close(clean=False)
    assert acked > 0
