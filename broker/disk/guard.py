"""The free-space floor: refuse new log data before the data dir's file system fills.

Kafka has no such floor and dies with ENOSPC mid-write; Redpanda keeps one
(``storage_min_free_bytes``) and answers produce with KAFKA_STORAGE_ERROR below it.
We do the same, at the storage seam: :class:`GuardedFileOps` wraps the
:class:`storage.fileops.FileOps` the :class:`storage.log_manager.LogManager` uses and
refuses a write to a segment file (``*.log``) with ``OSError(ENOSPC)`` when it would
leave less than ``min_free_bytes`` free. Storage turns that into ``StorageIOError``
(the log is unchanged: the segment is truncated back to where the write began, so no
torn batch), the produce handler into KAFKA_STORAGE_ERROR, and a failed write does
not mark the partition failed, so produce resumes by itself once space returns — no
restart. Reads never go through the guard, so fetches keep working. Index files,
checkpoints and committed offsets are small and keep being written.

The check is cheap: ``statvfs`` at most once per ``ttl_s`` (0.25 s), and between two
calls the bytes this process wrote are subtracted from the cached figure, so a burst
cannot overshoot the floor by more than what other processes write meanwhile.

Configuration: ``--set ailurus.disk.min.free.bytes=N`` (bytes; 0 disables the
guard). Metrics: ``ailurus_disk_free_bytes``, ``ailurus_disk_min_free_bytes``,
``ailurus_disk_below_floor`` and ``ailurus_partition_offline`` (1 for a partition
whose fsync failed; it refuses writes until the broker restarts and recovers it).
"""

from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Final

import structlog

from storage.fileops import DEFAULT_FILEOPS, Buffer, DelegatingFileOps, FileOps

if TYPE_CHECKING:
    from storage.log_manager import LogManager

log = structlog.get_logger("broker.diskguard")

DEFAULT_MIN_FREE_BYTES: Final = 64 * 1024 * 1024
STATVFS_TTL_S: Final = 0.25
SEGMENT_SUFFIX: Final = ".log"


class DiskGuard:
    """Free space of one file system, measured cheaply, against a floor.

    Thread-safe: appends run on the event-loop thread, syncs and snapshot ingest in
    worker threads.
    """

    def __init__(
        self,
        path: str,
        min_free_bytes: int,
        *,
        ttl_s: float = STATVFS_TTL_S,
        statvfs: Callable[[str], os.statvfs_result] = os.statvfs,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.min_free_bytes = min_free_bytes
        self._ttl_s = ttl_s
        self._statvfs = statvfs
        self._clock = clock
        self._lock = threading.Lock()
        self._measured_at = float("-inf")
        self._free = 0
        self._written = 0  # by us since the last statvfs
        self.below = False  # the last write was refused
        self.refused = 0
        self._refused_size = 0

    @property
    def enabled(self) -> bool:
        return self.min_free_bytes > 0

    def _measure_locked(self) -> None:
        st = self._statvfs(self.path)
        self._free = st.f_bavail * st.f_frsize
        self._written = 0
        self._measured_at = self._clock()

    def free_bytes(self) -> int:
        """Free bytes available to us (cached up to ``ttl_s``, minus our writes since)."""
        with self._lock:
            if self._clock() - self._measured_at >= self._ttl_s:
                self._measure_locked()
            return self._free - self._written

    def admit(self, size: int) -> bool:
        """Whether ``size`` more bytes may be written; counts them if so."""
        if not self.enabled:
            return True
        with self._lock:
            if self._clock() - self._measured_at >= self._ttl_s:
                self._measure_locked()
            ok = self._free - self._written - size >= self.min_free_bytes
            if not ok and (self._free - size >= self.min_free_bytes):
                # Our own estimate says no but it may be stale: measure again.
                self._measure_locked()
                ok = self._free - size >= self.min_free_bytes
            if ok:
                self._written += size
            else:
                self.refused += 1
                self._refused_size = size
            changed = ok == self.below
            self.below = not ok
            free = self._free - self._written
        if changed:
            if ok:
                log.info("disk_space_recovered", path=self.path, free_bytes=free)
            else:
                log.warning(
                    "disk_space_low",
                    path=self.path,
                    free_bytes=free,
                    min_free_bytes=self.min_free_bytes,
                    action="refusing produce with KAFKA_STORAGE_ERROR",
                )
        return ok

    def metric_lines(self) -> Iterator[str]:
        """Prometheus lines for the guard."""
        free = self.free_bytes()
        # Refusing until a write of the size last refused would fit again.
        below = int(
            self.enabled
            and (free < self.min_free_bytes or self.below)
            and free - self._refused_size < self.min_free_bytes
        )
        for name, value, text in (
            ("ailurus_disk_free_bytes", free, "Free bytes on the data dir's fs."),
            ("ailurus_disk_min_free_bytes", self.min_free_bytes, "Free-space floor."),
            ("ailurus_disk_below_floor", below, "1 while produce is refused."),
        ):
            yield f"# HELP {name} {text}"
            yield f"# TYPE {name} gauge"
            yield f"{name} {value}"
        yield "# HELP ailurus_disk_refused_writes_total Appends refused by the floor."
        yield "# TYPE ailurus_disk_refused_writes_total counter"
        yield f"ailurus_disk_refused_writes_total {self.refused}"


class GuardedFileOps(DelegatingFileOps):
    """Refuses writes to segment files (``*.log``) that would cross the floor."""

    def __init__(self, guard: DiskGuard, inner: FileOps = DEFAULT_FILEOPS) -> None:
        super().__init__(inner)
        self.guard = guard
        self._segment_fds: set[int] = set()

    def open(self, path: str, flags: int, mode: int = 0o644) -> int:
        fd = self.inner.open(path, flags, mode)
        if path.endswith(SEGMENT_SUFFIX) and flags & (os.O_WRONLY | os.O_RDWR):
            self._segment_fds.add(fd)
        else:
            self._segment_fds.discard(fd)
        return fd

    def close(self, fd: int) -> None:
        self._segment_fds.discard(fd)
        self.inner.close(fd)

    def _check(self, fd: int, size: int) -> None:
        if fd in self._segment_fds and not self.guard.admit(size):
            raise OSError(
                errno.ENOSPC,
                f"free space below the floor of {self.guard.min_free_bytes} bytes",
            )

    def pwrite(self, fd: int, data: Buffer, offset: int) -> int:
        self._check(fd, len(data))
        return self.inner.pwrite(fd, data, offset)

    def pwritev(self, fd: int, buffers: Sequence[Buffer], offset: int) -> int:
        self._check(fd, sum(len(b) for b in buffers))
        return self.inner.pwritev(fd, buffers, offset)


def offline_metric_lines(manager: LogManager | None) -> Iterator[str]:
    """``ailurus_partition_offline``: 1 for each partition whose fsync failed."""
    yield "# HELP ailurus_partition_offline 1 if the partition refuses writes (I/O error)."
    yield "# TYPE ailurus_partition_offline gauge"
    if manager is None:
        return
    for plog in manager.logs():
        offline = int(plog.failed is not None)
        yield (
            f'ailurus_partition_offline{{topic="{plog.topic}",'
            f'partition="{plog.partition}"}} {offline}'
        )


def metric_lines(guard: DiskGuard | None, manager: LogManager | None) -> Iterable[str]:
    """Every line this module adds to ``GET /metrics``."""
    if guard is not None:
        yield from guard.metric_lines()
    yield from offline_metric_lines(manager)
