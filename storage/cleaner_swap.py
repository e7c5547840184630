"""Cleaned segments on disk: written aside, swapped in, and swaps finished by recovery.

Kafka's sequence (``LogCleaner.cleanSegments``, ``UnifiedLog.replaceSegments``),
for a group of consecutive closed segments cleaned into one::

    1. <base>.log.cleaned    written and fsynced beside the live segments (no lock)
    2. <base>.log.swap       renamed from .cleaned, directory fsynced (log lock held)
    3. the group's index files and every .log of the group but <base>.log unlinked
    4. <base>.log.swap  ->  <base>.log, directory fsynced; new index files written
    5. <base>.txnindex.cleaned -> <base>.txnindex (or <base>.txnindex unlinked when
       the cleaned segment keeps no ABORT marker); the group's other .txnindex
       files unlinked

``<base>`` is the group's first base offset, so the cleaned segment takes the name
of the first one. A crash before step 2 leaves a ``.cleaned`` file, which recovery
deletes (the old segments are whole). A crash after it leaves a ``.swap`` file,
which recovery finishes (:func:`finish_swaps`): the ``.swap`` covers the offsets
from its base to the end of its last batch, so every other ``.log`` that starts
inside that range is deleted, stale index files of ``<base>`` go (they are rebuilt)
and the ``.swap`` becomes ``<base>.log``. A later segment of the group that starts
past the last kept batch survives such a crash uncleaned: its records are newer
than the ``.swap``'s, so the log stays correct and the next round cleans it.
A crash before step 5 leaves the old ``.txnindex`` files: they list every abort the
cleaned segment kept and maybe some it dropped, whose records are gone, so
read_committed fetches are answered the same; opening the log folds those of
segments that went into the index of the segment holding their offsets
(storage/transactions.py).
"""

from __future__ import annotations

import contextlib
import os
from typing import Final

from protocol.records import BatchHeader, CorruptBatch, iter_batches
from storage.fd_cache import FdCache
from storage.fileops import FileOps
from storage.segment import (
    INDEX_SUFFIX,
    LOG_SUFFIX,
    TIMEINDEX_SUFFIX,
    TXNINDEX_SUFFIX,
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


def cleaned_txnindex_path(directory: str, base_offset: int) -> str:
    """Where the cleaned segment's aborted transactions are written (none: no
    file)."""
    return os.path.join(
        directory, segment_name(base_offset) + TXNINDEX_SUFFIX + CLEANED_SUFFIX
    )


def swap_path(directory: str, base_offset: int) -> str:
    """The name a cleaned segment has between step 2 and step 4."""
    return os.path.join(directory, segment_name(base_offset) + LOG_SUFFIX + SWAP_SUFFIX)


class CleanedSegment:
    """A written ``.cleaned`` file opened as a :class:`Segment` (its indexes built
    from its batch headers), ready to be swapped in.

    The segment has its own descriptor cache until it is swapped in
    (:meth:`adopt_into`); its descriptor keeps pointing at the same file through the
    renames.
    """

    def __init__(
        self, fileops: FileOps, directory: str, base_offset: int, index_interval: int
    ) -> None:
        self.fileops = fileops
        self.path = cleaned_path(directory, base_offset)
        self._own = FdCache()
        fd = fileops.open(self.path, os.O_RDWR)
        try:
            size = fileops.fstat_size(fd)
        except OSError:
            fileops.close(fd)
            raise
        seg = self.segment = Segment(fileops, directory, base_offset, fd, 0, self._own)
        seg.indexes_dirty = True
        if size:
            for position, header in seg_headers(seg, size):
                seg.note_batch(
                    position,
                    header.last_offset,
                    header.max_timestamp,
                    header.size,
                    index_interval,
                )
        seg.seal_time_index()

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


def seg_headers(seg: Segment, size: int) -> list[tuple[int, BatchHeader]]:
    """(position, header) of every batch of a segment file of ``size`` bytes."""
    seg.size = size  # iter_headers maps what the segment says it holds
    found = list(seg.iter_headers(0, size))
    seg.size = 0
    return found


def discard_cleaned(fileops: FileOps, directory: str, base_offset: int) -> None:
    """Delete the ``.cleaned`` files of ``base_offset`` if there are any."""
    for path in (
        cleaned_path(directory, base_offset),
        cleaned_txnindex_path(directory, base_offset),
    ):
        with contextlib.suppress(FileNotFoundError):
            fileops.unlink(path)


def swap_in(
    fileops: FileOps, directory: str, group: list[Segment], writer: CleanedSegment
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
    if _swap_txn_indexes(fileops, directory, group):
        fileops.fsync_dir(directory)
    return cleaned


def _swap_txn_indexes(fileops: FileOps, directory: str, group: list[Segment]) -> bool:
    """Step 5; whether a file changed (a partition without transactions has none)."""
    changed = False
    index = cleaned_txnindex_path(directory, group[0].base_offset)
    if os.path.exists(index):
        live = os.path.join(directory, segment_name(group[0].base_offset))
        fileops.replace(index, live + TXNINDEX_SUFFIX)
        changed = True
        group = group[1:]
    for seg in group:
        path = os.path.join(directory, segment_name(seg.base_offset) + TXNINDEX_SUFFIX)
        if os.path.exists(path):
            fileops.unlink(path)
            changed = True
    return changed


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
