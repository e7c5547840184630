"""DiskGuard and the fault injector in-process: the floor's arithmetic and the fault file."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from broker.disk.faults import FaultyFileOps, parse_faults
from broker.disk.guard import DiskGuard, GuardedFileOps


class FakeFs:
    """A statvfs with settable free space and a call counter."""

    def __init__(self, free: int) -> None:
        self.free = free
        self.calls = 0

    def __call__(self, path: str) -> os.statvfs_result:
        self.calls += 1
        real = os.statvfs("/")
        fields = list(real)
        fields[0] = fields[1] = 1  # f_bsize, f_frsize
        fields[4] = self.free  # f_bavail
        return os.statvfs_result(fields)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_guard_admits_until_the_floor_counting_its_own_writes() -> None:
    """Between statvfs calls the guard subtracts what it admitted."""
    fs, clock = FakeFs(1000), Clock()
    guard = DiskGuard("/d", 600, statvfs=fs, clock=clock)
    assert guard.admit(300)
    assert guard.admit(100)
    assert fs.calls == 1  # the second admission used the cached figure minus 300
    fs.free = 600  # what the writes really left
    assert not guard.admit(1)  # 1000 - 400 - 1 < 600, and re-measured: 600 - 1
    assert guard.below
    assert guard.refused == 1


def test_guard_remeasures_and_recovers_when_space_returns() -> None:
    """A refusal re-measures at once; freed space is seen after the cache expires."""
    fs, clock = FakeFs(700), Clock()
    guard = DiskGuard("/d", 600, ttl_s=0.25, statvfs=fs, clock=clock)
    with capture_logs() as logs:
        assert not guard.admit(200)
        fs.free = 5000
        assert not guard.admit(200)  # cached: still refused
        clock.now = 0.3
        assert guard.admit(200)
    assert [e["event"] for e in logs] == ["disk_space_low", "disk_space_recovered"]


def test_guard_statvfs_is_cached() -> None:
    """Many admissions cost one statvfs per TTL."""
    fs, clock = FakeFs(10**9), Clock()
    guard = DiskGuard("/d", 1, statvfs=fs, clock=clock)
    for _ in range(1000):
        assert guard.admit(10)
    assert fs.calls == 1


def test_zero_floor_admits_everything() -> None:
    """min_free_bytes=0 disables the guard without measuring."""
    fs = FakeFs(0)
    guard = DiskGuard("/d", 0, statvfs=fs)
    assert guard.admit(10**12)
    assert fs.calls == 0


def test_guarded_fileops_refuses_only_segment_writes(tmp_path: Path) -> None:
    """Below the floor a .log write raises ENOSPC; other files are still written."""
    guard = DiskGuard(str(tmp_path), 10**18)  # no disk has that much free
    ops = GuardedFileOps(guard)
    seg = ops.open(str(tmp_path / "00000000000000000000.log"), os.O_RDWR | os.O_CREAT)
    idx = ops.open(str(tmp_path / "00000000000000000000.index"), os.O_RDWR | os.O_CREAT)
    try:
        with pytest.raises(OSError, match="floor") as info:
            ops.pwrite(seg, b"x", 0)
        assert info.value.errno == errno.ENOSPC
        with pytest.raises(OSError, match="floor"):
            ops.pwritev(seg, [b"a", b"b"], 0)
        assert ops.pwrite(idx, b"x", 0) == 1
        assert ops.fstat_size(seg) == 0
    finally:
        ops.close(seg)
        ops.close(idx)


def test_fault_file_parsing() -> None:
    """The fault file names partition, op and errno; anything else is refused."""
    faults = parse_faults(
        json.dumps(
            {"faults": [{"partition": "t/1", "op": "fsync", "errno": "EIO"}]}
        ).encode()
    )
    assert [(f.partition, f.op, f.errno) for f in faults] == [
        ("t/1", "fsync", errno.EIO)
    ]
    assert parse_faults(b"") == ()
    for bad in (
        b"[]",
        b'{"faults": [{"partition": "t/1", "op": "read"}]}',
        b'{"faults": [{"partition": "t/1", "op": "write", "errno": "ENOPE"}]}',
        b'{"faults": [1]}',
    ):
        with pytest.raises(ValueError, match=r"fault|errno"):
            parse_faults(bad)


def test_faulty_fileops_fails_armed_ops_on_the_named_partition(tmp_path: Path) -> None:
    """Armed faults hit the partition's files (also through dup), not its neighbours."""
    spec = tmp_path / "faults.json"
    ops = FaultyFileOps(str(spec))
    p1, p2 = tmp_path / "kafka" / "t" / "1", tmp_path / "kafka" / "t" / "2"
    p1.mkdir(parents=True)
    p2.mkdir(parents=True)
    fd1 = ops.open(str(p1 / "a.log"), os.O_RDWR | os.O_CREAT)
    fd2 = ops.open(str(p2 / "a.log"), os.O_RDWR | os.O_CREAT)
    try:
        ops.fdatasync(fd1)  # no file: no faults
        spec.write_text(
            json.dumps(
                {"faults": [{"partition": "t/1", "op": "fsync", "errno": "EIO"}]}
            )
        )
        dup = ops.dup(fd1)
        with pytest.raises(OSError, match="injected") as info:
            ops.fdatasync(dup)
        assert info.value.errno == errno.EIO
        ops.close(dup)
        with pytest.raises(OSError, match="injected"):
            ops.fsync_dir(str(p1))
        assert ops.pwrite(fd1, b"x", 0) == 1  # only fsync is armed
        ops.fdatasync(fd2)
        ops.fsync_dir(str(p2))
        spec.unlink()
        ops.fdatasync(fd1)
    finally:
        ops.close(fd1)
        ops.close(fd2)
