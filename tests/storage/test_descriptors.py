"""Descriptor use of the storage layer: a bounded cache of segment descriptors, the
partition cap, and creates that fail part-way without leaking descriptors or files."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from storage.errors import PartitionLimit, StorageIOError, UnknownTopic
from storage.fileops import FileOps
from storage.log_manager import LogManager

MakeBatch = Callable[..., bytes]


def open_fds(under: Path) -> int:
    """This process's descriptors open on files under ``under`` (others come and go
    with whatever else the process runs: clients of earlier tests, test runners)."""
    prefix = str(under)
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed meanwhile
            continue
        if target.startswith(prefix):
            count += 1
    return count


class NoSync(FileOps):
    """Real files without the fsyncs (this test counts descriptors, not flushes)."""

    def fsync(self, fd: int) -> None:
        pass

    def fdatasync(self, fd: int) -> None:
        pass

    def fsync_dir(self, path: str) -> None:
        pass


class FailingOpens(FileOps):
    """Real file operations; ``open`` fails with EMFILE once ``budget`` runs out."""

    def __init__(self) -> None:
        self.budget: int | None = None

    def open(self, path: str, flags: int, mode: int = 0o644) -> int:
        if self.budget is not None:
            if self.budget <= 0:
                raise OSError(errno.EMFILE, "Too many open files")
            self.budget -= 1
        return super().open(path, flags, mode)


def test_thousands_of_partitions_hold_a_bounded_number_of_descriptors(
    tmp_path: Path, make_batch: MakeBatch
) -> None:
    cap, topics, per_topic = 100, 30, 100  # 3,000 partitions
    # Each cached segment holds its descriptor and, once read, its mapping's dup.
    bound = 2 * cap + 10  # + the data-dir lock and a margin
    before = open_fds(tmp_path)
    lm = LogManager(tmp_path / "d", fileops=NoSync(), max_open_segments=cap)
    try:
        for t in range(topics):
            lm.create_topic(f"t{t}", per_topic)
        assert open_fds(tmp_path) - before <= bound
        for t in range(topics):
            for p in range(per_topic):
                lm.partition(f"t{t}", p).append(
                    make_batch(2, value=f"{t}/{p}".encode()), leader_epoch=0
                )
        lm.sync_many(lm.logs())
        assert open_fds(tmp_path) - before <= bound
        for t in range(topics):
            for p in range(per_topic):
                result = lm.partition(f"t{t}", p).read(0, 1 << 20)
                assert (result.first_offset, result.next_offset) == (0, 2)
                assert f"{t}/{p}".encode() in bytes(result.buffers[0])
                del result  # a view handed out keeps its mapping (and dup) alive
        assert open_fds(tmp_path) - before <= bound
        assert lm.handles.reopened >= topics * per_topic - cap
    finally:
        lm.close()
    assert open_fds(tmp_path) == before
    # Reopening the data dir (recovery of every partition) stays within the cap too.
    lm = LogManager(tmp_path / "d", fileops=NoSync(), max_open_segments=cap)
    try:
        assert open_fds(tmp_path) - before <= bound
        assert lm.partition("t29", 99).log_end_offset == 2
    finally:
        lm.close()


def test_partition_cap_refuses_before_touching_the_disk(tmp_path: Path) -> None:
    lm = LogManager(tmp_path / "d", max_partitions=10)
    try:
        lm.create_topic("a", 6)
        with pytest.raises(PartitionLimit, match="at most 10"):
            lm.create_topic("b", 5)
        assert not (tmp_path / "d" / "kafka" / "b").exists()
        with pytest.raises(PartitionLimit):
            lm.add_partitions("a", 11)
        assert sorted(os.listdir(tmp_path / "d" / "kafka" / "a")) == [
            *map(str, range(6)),
            "topic.json",
        ]
        lm.create_topic("b", 4)
        assert lm.partition_total() == 10
    finally:
        lm.close()
    # Topics already on disk always open, even past a lower cap.
    lm = LogManager(tmp_path / "d", max_partitions=3)
    try:
        assert lm.partition_total() == 10
        with pytest.raises(PartitionLimit):
            lm.create_topic("c", 1)
    finally:
        lm.close()


def test_create_failing_midway_leaves_no_topic_descriptors_or_files(
    tmp_path: Path, make_batch: MakeBatch
) -> None:
    ops = FailingOpens()
    lm = LogManager(tmp_path / "d", fileops=ops)
    try:
        lm.create_topic("kept", 2)
        before = open_fds(tmp_path)
        ops.budget = 25  # EMFILE on the 26th open: part-way through 100 partitions
        with pytest.raises(StorageIOError, match="creating topic big"):
            lm.create_topic("big", 100)
        ops.budget = None
        assert open_fds(tmp_path) == before
        assert not (tmp_path / "d" / "kafka" / "big").exists()
        with pytest.raises(UnknownTopic):
            lm.topic("big")
        assert lm.partition_total() == 2
        # The same create succeeds once descriptors are available again.
        lm.create_topic("big", 100)
        ops.budget = 10
        with pytest.raises(StorageIOError, match="adding partitions to kept"):
            lm.add_partitions("kept", 40)
        ops.budget = None
        assert lm.topic("kept").partition_count == 2
        assert sorted(os.listdir(tmp_path / "d" / "kafka" / "kept")) == [
            "0",
            "1",
            "topic.json",
        ]
        lm.partition("kept", 1).append(make_batch(1), leader_epoch=0)
    finally:
        lm.close()
    lm = LogManager(tmp_path / "d")
    try:
        assert lm.topic("big").partition_count == 100
        assert lm.partition("kept", 1).log_end_offset == 1
        assert lm.removed == []
    finally:
        lm.close()
