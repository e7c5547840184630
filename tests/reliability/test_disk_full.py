"""Disk full: the free-space floor refuses produce before the disk fills, and recovers.

The data dir lives on a real, small file system: a 32 MiB tmpfs mounted for the
test (we run as root in CI). Where ``mount`` is not permitted, the same scenario runs
on the tmp dir's own file system with the floor set just below its current free
space (the guard measures with ``statvfs`` either way). A filler file takes part of
the space; producing 64 KiB batches with acks=all runs into the floor, which answers
KAFKA_STORAGE_ERROR while free space is still above it; fetches keep serving
everything acknowledged; deleting the filler brings produce back without a restart;
no refused batch leaves a byte in the log.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from protocol.error_codes import ErrorCode
from tests.reliability._harness import (
    create_topic,
    fetch_all,
    launch,
    metric,
    produce,
    read_log_offline,
)

MIB = 1024 * 1024
FS_SIZE = 32 * MIB
FILLER = 12 * MIB
FLOOR = 8 * MIB
BATCH = [b"v" * 1024] * 64  # ~64 KiB per batch


def _free(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


@contextlib.contextmanager
def small_fs(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """A 32 MiB tmpfs (or the tmp dir itself): (mount point, floor to use)."""
    mnt = tmp_path / "fs"
    mnt.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={FS_SIZE}", "tmpfs", str(mnt)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        # No mount here: the tmp dir's file system, floor just below its free space.
        yield mnt, _free(mnt) - (FS_SIZE - FILLER - FLOOR)
        return
    try:
        yield mnt, FLOOR
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_free_space_floor_refuses_produce_and_recovers_without_restart(
    tmp_path: Path,
) -> None:
    """Produce gets KAFKA_STORAGE_ERROR at the floor; fetch works; space back, produce resumes."""
    with small_fs(tmp_path) as (mnt, floor):
        filler = mnt / "filler"
        filler.write_bytes(b"\0" * FILLER)
        b = launch(
            tmp_path,
            "--set",
            f"ailurus.disk.min.free.bytes={floor}",
            data_dir=mnt / "data",
        )
        create_topic(b, "full", 1)
        acked = 0
        lowest_free = _free(mnt)
        with b.connect() as sock:
            for _ in range(1000):
                code, offset = produce(sock, "full", 0, BATCH)
                lowest_free = min(lowest_free, _free(mnt))
                if code != 0:
                    break
                assert offset == acked
                acked += len(BATCH)
            assert code == ErrorCode.KAFKA_STORAGE_ERROR
            print(
                f"disk full: {acked} records ({acked // 1024} MiB) acknowledged, "
                f"then refused with {_free(mnt) / MIB:.1f} MiB free "
                f"(floor {floor / MIB:.1f} MiB, lowest seen {lowest_free / MIB:.1f} MiB)"
            )
            assert acked >= 64 * 64  # several MiB went in before the floor
            assert lowest_free >= floor - 256 * 1024  # never (much) below the floor
            refused_at = _free(mnt)
            # Refusals keep coming and cost no space; fetches keep serving.
            for _ in range(5):
                assert (
                    produce(sock, "full", 0, BATCH)[0] == ErrorCode.KAFKA_STORAGE_ERROR
                )
            assert _free(mnt) >= refused_at - 64 * 1024
            hw, records = fetch_all(b, "full", 0)
            assert hw == acked
            assert len(records) == acked
            assert metric(b, "ailurus_disk_below_floor") == 1
            assert b.events("disk_space_low")

            filler.unlink()  # space returns
            time.sleep(0.3)  # the guard re-measures at most every 0.25 s
            code, offset = produce(sock, "full", 0, BATCH)
            assert (code, offset) == (0, acked)
            acked += len(BATCH)
        assert metric(b, "ailurus_disk_below_floor") == 0
        assert b.events("disk_space_recovered")
        assert b.proc.poll() is None
        assert b.stop() == 0
        on_disk = read_log_offline(b.data_dir, "full", 0)  # every batch CRC-checked
        assert [r.offset for r in on_disk] == list(range(acked))


@pytest.mark.parametrize("floor", [0])
def test_zero_floor_disables_the_guard(tmp_path: Path, floor: int) -> None:
    """ailurus.disk.min.free.bytes=0 turns the guard off (metric shows 0)."""
    b = launch(tmp_path, "--set", f"ailurus.disk.min.free.bytes={floor}")
    create_topic(b, "t", 1)
    with b.connect() as sock:
        assert produce(sock, "t", 0, [b"x"]) == (0, 0)
    assert metric(b, "ailurus_disk_min_free_bytes") == 0
    assert metric(b, "ailurus_disk_below_floor") == 0
    assert b.stop() == 0
