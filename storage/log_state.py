"""A partition log's state, and the helpers each of its parts uses.

:class:`~storage.partition_log.PartitionLog` is put together from parts, one module
per concept, each a class over :class:`LogState` (that module lists them). Every
part works on the state set up here, under the locks and threading rules
:mod:`storage.partition_log` describes. The parts are classes of one object rather
than objects the log owns so that each keeps the lock discipline of one object as
it was, and no append, read or sync goes through an extra call.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from typing import Final

from storage.config import TopicConfig
from storage.epoch_cache import EpochCache
from storage.errors import LogClosed, StorageIOError
from storage.fd_cache import FdCache
from storage.fileops import FileOps
from storage.log_types import PartitionRecovery, SegmentInfo
from storage.segment import UNBOUNDED, Segment
from storage.segment_set import SegmentSet
from storage.transactions import PartitionTxns

__all__ = ["CHECKPOINT_FILE", "LogState", "io_error", "wall_clock_ms"]

CHECKPOINT_FILE: Final = "checkpoint.json"


def wall_clock_ms() -> int:
    """Milliseconds since the epoch (segment ages, LogAppendTime, retention)."""
    return time.time_ns() // 1_000_000


def io_error(what: str, exc: OSError) -> StorageIOError:
    """The StorageIOError for a failed file operation (its errno kept)."""
    return StorageIOError(f"{what}: {exc.strerror or exc}", errno=exc.errno)


class LogState:
    """A partition's segments and offsets, its locks, and its failure state."""

    def __init__(
        self,
        directory: str,
        *,
        topic: str,
        partition: int,
        config: TopicConfig,
        fileops: FileOps,
        handles: FdCache | None = None,
    ) -> None:
        self.directory = directory
        self.topic = topic
        self.partition = partition
        self.name = f"{topic}-{partition}"  # Kafka's TopicPartition, for messages
        self.config = config
        self.fileops = fileops
        # Segment descriptors: shared by every partition of a LogManager, bounded.
        self.handles = UNBOUNDED if handles is None else handles
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._checkpoint_lock = threading.Lock()  # order: _lock, then this one
        self._segments = SegmentSet()
        self._log_start = 0
        self._durable = 0
        self._recovery_point = 0
        self._epochs = EpochCache()
        self._txns = PartitionTxns(fileops, directory)
        self._unsynced: dict[int, Segment] = {}
        self._dir_dirty = False
        self._failed: str | None = None
        self._closed = False
        # Bumped by truncation and reset: a sync that started before one must not
        # move the durable offset to the end it saw (those bytes may be gone).
        self._rewrites = 0
        self.recovery: PartitionRecovery | None = None
        # "mmap": zero-copy views of the segment files; "pread": bytes copies.
        self.read_mode = "mmap"
        # sync() checkpoints by itself when closed segments wait for trust this long
        # (Kafka's log.flush.offset.checkpoint.interval.ms).
        self.checkpoint_interval_s = 60.0
        self._checkpointed_at = time.monotonic()

    def _read_checkpoint(self) -> tuple[int, int]:
        try:
            with open(os.path.join(self.directory, CHECKPOINT_FILE), "rb") as f:
                data = json.loads(f.read())
            return int(data["recovery_point"]), int(data["log_start_offset"])
        except (OSError, ValueError, KeyError, TypeError):
            return 0, 0

    def _write_checkpoint(self) -> None:
        """Write checkpoint.json; callers hold ``_checkpoint_lock`` or own the log."""
        body = {
            "version": 1,
            "recovery_point": self._recovery_point,
            "log_start_offset": self._log_start,
        }
        self.fileops.write_file_atomic(
            os.path.join(self.directory, CHECKPOINT_FILE),
            json.dumps(body).encode(),
        )

    def _info(self, seg: Segment) -> SegmentInfo:
        return SegmentInfo(
            base_offset=seg.base_offset,
            last_offset=seg.last_offset,
            size=seg.size,
            max_timestamp=seg.max_timestamp,
            path=seg.log_path,
            active=seg is self._segments.active,
        )

    def _check_writable(self) -> None:
        if self._closed:
            raise LogClosed(f"{self.topic}-{self.partition} is closed")
        if self._failed is not None:
            raise StorageIOError(
                f"{self.topic}-{self.partition} failed earlier: {self._failed}"
            )

    def _dup(self, seg: Segment) -> int:
        """A descriptor of ``seg`` of the caller's own (for work outside the lock)."""
        with seg.handle() as fd:
            return self.fileops.dup(fd)

    def _close_fds(self) -> None:
        for seg in self._segments:
            with contextlib.suppress(OSError):
                seg.close()
