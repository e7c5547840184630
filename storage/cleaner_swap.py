"""Cleaned segments on disk: written aside, swapped in, and swaps finished by recovery.

Kafka's sequence (``LogCleaner.cleanSegments``, ``UnifiedLog.replaceSegments``),
for a group of consecutive closed segments cleaned into one::

    1. <base>.log.cleaned    written and fsynced beside the live segments (no lock)
    2. <base>.log.swap       renamed from .cleaned, directory fsynced (log lock held)
    3. the group's index files and every .log of the group but <base>.log unlinked
    4. <base>.log.swap  ->  <base>.log, directory fsynced; new index files written

``<base>`` is the group's first base offset, so the cleaned segment takes the name
of the first one. A crash before step 2 leaves a ``.cleaned`` file, which recovery
deletes (the old segments are whole). A crash after it leaves a ``.swap`` file,
which recovery finishes (:func:`finish_swaps`): the ``.swap`` covers the offsets
from its base to the end of its last batch, so every other ``.log`` that starts
inside that range is deleted, stale index files of ``<base>`` go (they are rebuilt)
and the ``.swap`` becomes ``<base>.log``. A later segment of the group that starts
past the last kept batch survives such a crash uncleaned: its records are newer
than the ``.swap``'s, so the log stays correct and the next round cleans it.
"""

from __future__ import annotations

import contextlib
import os
from typing import Final

from protocol.records import Buffer, CorruptBatch, iter_batches, read_header
from storage.fd_cache import FdCache
from storage.fileops import FileOps
from storage.segment import (
    INDEX_SUFFIX,
    LOG_SUFFIX,
    TIMEINDEX_SUFFIX,
    Segment,
    segment_base,
    segment_name,
)

CLEANED_SUFFIX: Final = ".cleaned"
SWAP_SUFFIX: Final = ".swap"


def cleaned_path(directory: str, base_offset: int) -> str:
    """Where the cleaned segment of base ``base_offset`` is written."""
    return os.path.join(
        directory, segment_name(base_offset) + LOG_SUFFIX + CLEANED_SUFFIX
    )


def swap_path(directory: str, base_offset: int) -> str:
    """The name a cleaned segment has between step 2 and step 4."""
    return os.path.join(directory, segment_name(base_offset) + LOG_SUFFIX + SWAP_SUFFIX)


class CleanedWriter:
    """Writes one cleaned segment to its ``.cleaned`` file and keeps its indexes.

    The :class:`Segment` it builds has its own descriptor cache until it is swapped
    in (:meth:`adopt_into`); until then its descriptor is the ``.cleaned`` file's,
    which keeps pointing at the same file through the renames.
    """

    def __init__(
        self, fileops: FileOps, directory: str, base_offset: int, index_interval: int
    ) -> None:
        self.fileops = fileops
        self.path = cleaned_path(directory, base_offset)
        self._interval = index_interval
        self._own = FdCache()
        fd = fileops.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC)
        self.segment = Segment(fileops, directory, base_offset, fd, 0, self._own)
        self.segment.indexes_dirty = True
        self._pending: list[Buffer] = []
        self._pending_bytes = 0

    def append(self, batch: Buffer) -> None:
        """Add one whole batch (its offsets already absolute)."""
        header = read_header(batch)
        seg = self.segment
        position = seg.size
        seg.note_batch(
            position,
            header.last_offset,
            header.max_timestamp,
            header.size,
            self._interval,
        )
        self._pending.append(batch)
        self._pending_bytes += header.size
        if self._pending_bytes >= 1 << 20:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        start = self.segment.size - self._pending_bytes
        self.segment.write_parts(self._pending, start)
        self._pending = []
        self._pending_bytes = 0

    def finish(self) -> Segment:
        """Write what is buffered, fsync, seal the time index; the segment."""
        self._flush()
        with self.segment.handle() as fd:
            self.fileops.fsync(fd)
        self.segment.seal_time_index()
        return self.segment

    def discard(self) -> None:
        """Close and delete the ``.cleaned`` file (a round abandoned)."""
        self.segment.close()
        with contextlib.suppress(FileNotFoundError):
            self.fileops.unlink(self.path)

    def adopt_into(self, handles: FdCache) -> Segment:
        """Move the segment's descriptor to the log's shared cache (after step 4)."""
        seg = self.segment
        fd = self._own.forget(seg)
        seg.handles = handles
        if fd is not None:
            handles.register(seg, fd)
        return seg


def swap_in(
    fileops: FileOps, directory: str, group: list[Segment], writer: CleanedWriter
) -> Segment:
    """Steps 2 to 4 for ``group`` (the caller holds the log lock and checked that
    the group is still in the log); returns the cleaned segment, open, with its
    index files written. Raises OSError (the log must then be reopened)."""
    first = group[0]
    swap = swap_path(directory, first.base_offset)
    fileops.replace(writer.path, swap)
    fileops.fsync_dir(directory)
    for seg in group:
        for path in (seg.index_path, seg.timeindex_path):
            with contextlib.suppress(FileNotFoundError):
                fileops.unlink(path)
    for seg in group[1:]:
        seg.close()
        with contextlib.suppress(FileNotFoundError):
            fileops.unlink(seg.log_path)
    first.close()
    fileops.replace(swap, first.log_path)
    fileops.fsync_dir(directory)
    cleaned = writer.adopt_into(first.handles)
    cleaned.write_indexes()
    return cleaned


def _swap_end(fileops: FileOps, path: str, base_offset: int) -> int:
    """The offset after the last whole batch of a ``.swap`` file."""
    fd = fileops.open(path, os.O_RDONLY)
    try:
        size = fileops.fstat_size(fd)
        data = fileops.pread(fd, size, 0) if size else b""
    finally:
        fileops.close(fd)
    end = base_offset
    with contextlib.suppress(CorruptBatch):
        for _, header in iter_batches(data):
            end = header.next_offset
    return end


def finish_swaps(fileops: FileOps, directory: str) -> list[str]:
    """Finish every swap a crash interrupted (see the module docstring); returns the
    names of the files removed or renamed. Leaves ``.cleaned`` files alone."""
    names = sorted(fileops.listdir(directory))
    swaps = [n for n in names if n.endswith(LOG_SUFFIX + SWAP_SUFFIX)]
    if not swaps:
        return []
    done: list[str] = []
    bases = {b: n for n in names if (b := segment_base(n)) is not None}
    for name in swaps:
        log_name = name[: -len(SWAP_SUFFIX)]
        base = segment_base(log_name)
        if base is None:
            continue
        path = os.path.join(directory, name)
        end = _swap_end(fileops, path, base)
        for other, other_name in bases.items():
            if base < other < end:
                for suffix in (LOG_SUFFIX, INDEX_SUFFIX, TIMEINDEX_SUFFIX):
                    with contextlib.suppress(FileNotFoundError):
                        fileops.unlink(
                            os.path.join(directory, segment_name(other) + suffix)
                        )
                done.append(other_name)
        stem = os.path.join(directory, segment_name(base))
        for suffix in (INDEX_SUFFIX, TIMEINDEX_SUFFIX):
            with contextlib.suppress(FileNotFoundError):
                fileops.unlink(stem + suffix)
        fileops.replace(path, stem + LOG_SUFFIX)
        done.append(name)
    fileops.fsync_dir(directory)
    return done
