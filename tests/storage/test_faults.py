"""Fault injection through the FileOps seam: ENOSPC/EIO on write, EIO on fsync."""

from __future__ import annotations

import errno
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from storage.config import TopicConfig
from storage.errors import LogClosed, StorageIOError
from storage.fileops import FileOps
from storage.log_manager import LogManager
from storage.partition_log import PartitionLog

MakeBatch = Callable[..., bytes]


class FaultyOps(FileOps):
    """Real file operations, except those told to fail."""

    def __init__(self) -> None:
        self.fail_write: int | None = None  # errno for the next pwrite
        self.partial = False  # write half the bytes before failing
        self.fail_fsync: int | None = None

    def pwrite(self, fd: int, data: bytes | bytearray | memoryview, offset: int) -> int:
        if self.fail_write is not None:
            code, self.fail_write = self.fail_write, None
            if self.partial:
                super().pwrite(fd, memoryview(data)[: len(data) // 2], offset)
            raise OSError(code, "injected")
        return super().pwrite(fd, data, offset)

    def pwritev(
        self, fd: int, buffers: Sequence[bytes | bytearray | memoryview], offset: int
    ) -> int:
        if self.fail_write is not None:
            code, self.fail_write = self.fail_write, None
            if self.partial:
                super().pwrite(
                    fd, b"".join(buffers)[: sum(map(len, buffers)) // 2], offset
                )
            raise OSError(code, "injected")
        return super().pwritev(fd, buffers, offset)

    def fdatasync(self, fd: int) -> None:
        if self.fail_fsync is not None:
            raise OSError(self.fail_fsync, "injected")
        super().fdatasync(fd)

    def fsync(self, fd: int) -> None:
        if self.fail_fsync is not None:
            raise OSError(self.fail_fsync, "injected")
        super().fsync(fd)


def open_log(path: Path, ops: FileOps) -> PartitionLog:
    return PartitionLog.open(
        str(path),
        topic="t",
        partition=0,
        config=TopicConfig.from_overrides(),
        fileops=ops,
        clean=False,
    )


@pytest.mark.parametrize("partial", [False, True])
def test_enospc_on_write_leaves_log_consistent(
    tmp_path: Path, make_batch: MakeBatch, partial: bool
) -> None:
    """A failed write raises StorageIOError, changes nothing, and the next append
    lands where the failed one would have."""
    ops = FaultyOps()
    log = open_log(tmp_path, ops)
    log.append(make_batch(2), leader_epoch=0)
    ops.fail_write, ops.partial = errno.ENOSPC, partial
    with pytest.raises(StorageIOError) as info:
        log.append(make_batch(3), leader_epoch=0)
    assert info.value.errno == errno.ENOSPC
    assert log.log_end_offset == 2
    assert log.failed is None  # out of space is not a failing disk: stays online
    assert (tmp_path / "00000000000000000000.log").stat().st_size == log.size_bytes
    result = log.append(make_batch(1), leader_epoch=0)
    assert result.base_offset == 2
    assert log.sync() == 3
    log.close()
    log = open_log(tmp_path, FileOps())
    assert log.log_end_offset == 3
    assert log.recovery is not None
    assert not log.recovery.truncated
    log.close()


@pytest.mark.parametrize("partial", [False, True])
@pytest.mark.parametrize("code", [errno.EIO, errno.EROFS])
def test_write_error_other_than_enospc_takes_the_log_offline(
    tmp_path: Path, make_batch: MakeBatch, partial: bool, code: int
) -> None:
    """A write EIO (any errno but ENOSPC/EDQUOT) rolls the partial write back and
    marks the log failed, as a failed fsync does: later appends and syncs are
    refused even once the disk works, and a reopen recovers what was written."""
    ops = FaultyOps()
    log = open_log(tmp_path, ops)
    log.append(make_batch(2), leader_epoch=0)
    ops.fail_write, ops.partial = code, partial
    with pytest.raises(StorageIOError) as info:
        log.append(make_batch(3), leader_epoch=0)
    assert info.value.errno == code
    assert log.failed is not None
    assert "write failed" in log.failed
    assert log.log_end_offset == 2
    assert (tmp_path / "00000000000000000000.log").stat().st_size == log.size_bytes
    with pytest.raises(StorageIOError, match="failed earlier"):
        log.append(make_batch(1), leader_epoch=0)
    with pytest.raises(StorageIOError):
        log.sync()
    assert log.durable_offset == 0
    assert log.log_end_offset == 2
    log.close()
    log = open_log(tmp_path, FileOps())
    assert log.failed is None
    assert log.log_end_offset == 2
    assert log.append(make_batch(1), leader_epoch=0).base_offset == 2
    log.close()


def test_eio_on_fsync_never_acknowledges_durability(
    tmp_path: Path, make_batch: MakeBatch
) -> None:
    """After a failed fsync the durable offset does not move and the log refuses
    further appends and syncs until it is reopened."""
    ops = FaultyOps()
    log = open_log(tmp_path, ops)
    log.append(make_batch(2), leader_epoch=0)
    assert log.sync() == 2
    log.append(make_batch(2), leader_epoch=0)
    ops.fail_fsync = errno.EIO
    with pytest.raises(StorageIOError):
        log.sync()
    assert log.durable_offset == 2
    assert log.failed is not None
    ops.fail_fsync = None
    with pytest.raises(StorageIOError):
        log.sync()
    assert log.durable_offset == 2
    with pytest.raises(StorageIOError):
        log.append(make_batch(1), leader_epoch=0)
    log.close()
    log = open_log(tmp_path, ops)
    assert log.failed is None
    assert log.log_end_offset == 4
    assert log.durable_offset == 4
    log.close()


def test_sync_many_reports_per_partition_errors(
    tmp_path: Path, make_batch: MakeBatch
) -> None:
    """sync_many syncs every log and returns the failing one's error, not raising."""
    ops = FaultyOps()
    lm = LogManager(tmp_path, fileops=ops)
    lm.create_topic("a", 2)
    logs = lm.partitions("a")
    for log in logs:
        log.append(make_batch(1), leader_epoch=0)
    assert LogManager.sync_many(logs) == {logs[0]: 1, logs[1]: 1}
    logs[1].append(make_batch(1), leader_epoch=0)
    ops.fail_fsync = errno.EIO
    result = LogManager.sync_many(logs)
    assert result[logs[0]] == 1
    assert isinstance(result[logs[1]], StorageIOError)
    ops.fail_fsync = None
    lm.close()
    assert not (tmp_path / ".clean_shutdown").exists()  # a failed log is not clean
    with pytest.raises(LogClosed):
        logs[0].read(0, 10)
