"""One log segment: ``<base>.log`` plus its ``.index`` and ``.timeindex``.

File names are the segment's base offset, zero-padded to 20 digits (Kafka
``LogFileUtils``)::

    <partition dir>/00000000000000000000.log        record batches, back to back
                    00000000000000000000.index      see offset_index.py
                    00000000000000000000.timeindex  see time_index.py
                    00000000000000000000.txnindex   aborted transactions, if any
                                                    (txn_index.py; deleted with the rest)

The ``.log`` file is the concatenation of magic-2 record batches exactly as Kafka
writes them (and as they travel on the wire), with absolute offsets and the partition
leader epoch stamped in::

    +---------------------------+----------------------------+-----+
    | batch @ base_offset       | batch @ previous next_off. | ... |
    | (61-byte header, records) |                            |     |
    +---------------------------+----------------------------+-----+

Offsets increase: each batch starts where the previous one ended
(``base_offset + last_offset_delta + 1``) and the first one at the segment's base
offset, except in segments log compaction cleaned (storage/log_cleaner.py), where
removed batches leave gaps; a cleaned segment still spans up to the next segment's
base offset (``next_offset``), whatever its last batch. A segment's ``.log`` descriptor (read/write) lives in a shared
:class:`~storage.fd_cache.FdCache`: it is opened on demand around each use
(``with seg.handle() as fd``) and closed when the cache needs room, so idle
partitions pin no descriptors. Reads of committed bytes go through an mmap; Python's
mmap holds a duplicate descriptor while it lives, so the mapping is dropped with the
descriptor and a cached segment holds at most two (its own and its mapping's).
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
from collections.abc import Iterator
from typing import Final

from protocol.records import BATCH_HEADER_SIZE, BatchHeader, CorruptBatch, read_header
from storage.errors import CorruptSegment
from storage.fd_cache import FdCache
from storage.fileops import FileOps
from storage.offset_index import OffsetIndex
from storage.time_index import TimeIndex

LOG_SUFFIX: Final = ".log"
INDEX_SUFFIX: Final = ".index"
TIMEINDEX_SUFFIX: Final = ".timeindex"
TXNINDEX_SUFFIX: Final = ".txnindex"  # aborted transactions, see txn_index.py
_IOV_MAX: Final = 1024
# Segments opened without a shared cache (tests, tools) never close their fd early.
UNBOUNDED: Final = FdCache()


def segment_name(base_offset: int) -> str:
    """The 20-digit file stem of a segment."""
    return f"{base_offset:020d}"


def segment_base(name: str) -> int | None:
    """The base offset a segment's ``.log`` file name says; None for other names."""
    stem, _dot, suffix = name.partition(".")
    if "." + suffix == LOG_SUFFIX and stem.isdigit() and len(stem) == 20:
        return int(stem)
    return None


class Segment:
    """An open segment: its log file, size, offsets, indexes and max timestamp."""

    def __init__(
        self,
        fileops: FileOps,
        directory: str,
        base_offset: int,
        fd: int,
        size: int,
        handles: FdCache | None = None,
    ) -> None:
        self.fileops = fileops
        self.directory = directory
        self.base_offset = base_offset
        self.handles = UNBOUNDED if handles is None else handles
        self.size = size
        self.next_offset = base_offset
        self.index = OffsetIndex(base_offset)
        self.time_index = TimeIndex(base_offset)
        self.max_timestamp = -1
        self.max_timestamp_offset = -1
        self.bytes_since_index = 0
        self.created_ms: int | None = None
        self.indexes_dirty = False
        self.closed = False
        self._map: mmap.mmap | None = None
        self._map_view: memoryview | None = None
        self.handles.register(self, fd)

    # -- paths ---------------------------------------------------------------
    @property
    def stem(self) -> str:
        """Path without suffix."""
        return os.path.join(self.directory, segment_name(self.base_offset))

    @property
    def log_path(self) -> str:
        """The .log file."""
        return self.stem + LOG_SUFFIX

    @property
    def index_path(self) -> str:
        """The .index file."""
        return self.stem + INDEX_SUFFIX

    @property
    def timeindex_path(self) -> str:
        """The .timeindex file."""
        return self.stem + TIMEINDEX_SUFFIX

    @property
    def last_offset(self) -> int:
        """Offset of the last record (base_offset - 1 when empty)."""
        return self.next_offset - 1

    # -- life cycle ----------------------------------------------------------
    @classmethod
    def create(
        cls,
        fileops: FileOps,
        directory: str,
        base_offset: int,
        handles: FdCache | None = None,
    ) -> Segment:
        """Create an empty segment file (stale index files of that name are cut)."""
        stem = os.path.join(directory, segment_name(base_offset))
        fd = fileops.open(stem + LOG_SUFFIX, os.O_RDWR | os.O_CREAT | os.O_TRUNC)
        seg = cls(fileops, directory, base_offset, fd, 0, handles)
        seg.indexes_dirty = True
        return seg

    @classmethod
    def open(
        cls,
        fileops: FileOps,
        directory: str,
        base_offset: int,
        handles: FdCache | None = None,
    ) -> Segment:
        """Open an existing segment's log file (indexes are loaded by recovery)."""
        path = os.path.join(directory, segment_name(base_offset) + LOG_SUFFIX)
        fd = fileops.open(path, os.O_RDWR)
        try:
            size = fileops.fstat_size(fd)
        except OSError:
            fileops.close(fd)
            raise
        return cls(fileops, directory, base_offset, fd, size, handles)

    @contextlib.contextmanager
    def handle(self) -> Iterator[int]:
        """The log file's descriptor for the duration of the block (reopened if
        the cache closed it; never closed by the cache while in use)."""
        if self.closed:
            raise OSError(errno.EBADF, f"{self.log_path} is closed")
        fd = self.handles.acquire(self)
        try:
            yield fd
        finally:
            self.handles.release(self)

    def _open_fd(self) -> int:
        return self.fileops.open(self.log_path, os.O_RDWR)

    def _close_fd(self, fd: int) -> None:
        # Python's mmap keeps a descriptor of its own (a dup) while it lives, so
        # the mapping goes with the descriptor; views already handed out keep it
        # alive until they are released, and the next read maps the file again.
        self._map = self._map_view = None
        self.fileops.close(fd)

    def close(self) -> None:
        """Close the log fd (sync works on dups, so this never races an fsync)."""
        if not self.closed:
            self.closed = True
            # Views handed to the broker may outlive the segment: the mapping is
            # dropped, not closed, and the kernel unmaps it when the last view goes.
            self._map = self._map_view = None
            fd = self.handles.forget(self)
            if fd is not None:
                self.fileops.close(fd)

    def remove_files(self) -> None:
        """Close and delete the segment's files."""
        self.close()
        txnindex = self.stem + TXNINDEX_SUFFIX
        for path in (self.log_path, self.index_path, self.timeindex_path, txnindex):
            with contextlib.suppress(FileNotFoundError):
                self.fileops.unlink(path)

    # -- bookkeeping -----------------------------------------------------------
    def note_batch(
        self,
        position: int,
        last_offset: int,
        max_timestamp: int,
        size: int,
        index_interval: int,
    ) -> None:
        """Account for a batch written (or found by recovery) at ``position``."""
        if self.bytes_since_index >= index_interval:
            self.index.append(last_offset, position)
            if self.max_timestamp >= 0:
                self.time_index.maybe_append(
                    self.max_timestamp, self.max_timestamp_offset
                )
            self.bytes_since_index = 0
            self.indexes_dirty = True
        self.bytes_since_index += size
        if max_timestamp > self.max_timestamp:
            self.max_timestamp = max_timestamp
            self.max_timestamp_offset = last_offset
        self.next_offset = last_offset + 1
        self.size = position + size

    def seal_time_index(self) -> None:
        """Record the segment's final max timestamp in the time index (on roll)."""
        if self.max_timestamp >= 0:
            before = len(self.time_index)
            self.time_index.maybe_append(self.max_timestamp, self.max_timestamp_offset)
            self.indexes_dirty |= len(self.time_index) != before

    def write_indexes(self) -> None:
        """Write both index files whole (on roll and on close)."""
        for path, data in (
            (self.index_path, self.index.to_bytes()),
            (self.timeindex_path, self.time_index.to_bytes()),
        ):
            fd = self.fileops.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            try:
                view = memoryview(data)
                done = 0
                while done < len(view):
                    done += self.fileops.pwrite(fd, view[done:], done)
            finally:
                self.fileops.close(fd)
        self.indexes_dirty = False

    # -- I/O -------------------------------------------------------------------
    def write(self, data: bytes | bytearray | memoryview, position: int) -> None:
        """Write all of ``data`` at ``position`` (raises OSError)."""
        view = memoryview(data)
        done = 0
        with self.handle() as fd:
            while done < len(view):
                done += self.fileops.pwrite(fd, view[done:], position + done)

    def write_parts(
        self, parts: list[bytes | bytearray | memoryview], position: int
    ) -> None:
        """Gather-write ``parts`` back to back at ``position`` (raises OSError)."""
        views = [memoryview(p) for p in parts if len(p)]
        i = 0
        with self.handle() as fd:
            while i < len(views):
                written = self.fileops.pwritev(fd, views[i : i + _IOV_MAX], position)
                position += written
                while written and i < len(views):
                    if written >= len(views[i]):
                        written -= len(views[i])
                        i += 1
                    else:
                        views[i] = views[i][written:]
                        written = 0

    def read_bytes(self, position: int, size: int) -> bytes:
        """Read exactly ``size`` committed bytes at ``position``."""
        with self.handle() as fd:
            data = self.fileops.pread(fd, size, position)
        if len(data) != size:
            raise CorruptSegment(
                f"{self.log_path}: short read of {len(data)}/{size} at {position}"
            )
        return data

    def view(self, position: int, size: int) -> memoryview:
        """A zero-copy view of committed bytes (mmap, remapped as the file grows)."""
        end = position + size
        # A local reference: the cache may drop the mapping from another thread.
        mapped = self._map_view
        if mapped is None or end > len(mapped):
            # Map exactly the committed size: mapping past EOF is not allowed, and
            # a later truncation of uncommitted bytes (failed write) stays outside.
            with self.handle() as fd:
                self._map = mmap.mmap(fd, self.size, prot=mmap.PROT_READ)
                mapped = self._map_view = memoryview(self._map)
        return mapped[position:end]

    def iter_headers(
        self, position: int, end: int | None = None
    ) -> Iterator[tuple[int, BatchHeader]]:
        """Headers of the committed batches from ``position`` (trusted data)."""
        stop = self.size if end is None else min(end, self.size)
        if position + BATCH_HEADER_SIZE > stop:
            return
        view = self.view(0, stop)  # headers are parsed in place, no read() calls
        while position + BATCH_HEADER_SIZE <= stop:
            try:
                header = read_header(view, position)
            except CorruptBatch as exc:
                raise CorruptSegment(f"{self.log_path}: {exc}") from exc
            if header.batch_length < BATCH_HEADER_SIZE - 12:
                raise CorruptSegment(f"{self.log_path}: bad batch_length at {position}")
            if position + header.size > stop:
                return
            yield position, header
            position += header.size

    def last_batch_offset(self) -> int:
        """Offset of the last record of the last batch in the file (``base_offset``
        - 1 if none): lower than ``last_offset`` when compaction cleaned the end."""
        last = self.base_offset - 1
        for _, header in self.iter_headers(self.index.last_position()):
            last = header.last_offset
        return last

    def find(self, offset: int) -> tuple[int, BatchHeader] | None:
        """The batch holding ``offset``, or the first one after it; None past end."""
        for position, header in self.iter_headers(self.index.lookup(offset)):
            if header.last_offset >= offset:
                return position, header
        return None
