"""A partition log's snapshot side: adopting a staged log, copying segments out.

:meth:`LogSnapshots.adopt` moves the segments of a log staged on the same file
system (storage/snapshot_stage.py) onto this log's end;
:meth:`LogSnapshots.link_or_copy_segments_to` places a range of batches into a new
snapshot directory (hard links where it can, storage/segment_copy.py);
:meth:`LogSnapshots.start_writeback` lets a bulk writer spread the page writeback.
"""

from __future__ import annotations

import contextlib
import os
from typing import Final

from storage.epoch_cache import EpochCache
from storage.errors import LogClosed, OffsetMismatch
from storage.log_state import LogState, io_error, wall_clock_ms
from storage.log_types import CopiedSegment
from storage.recovery import load_trusted, scan_segment
from storage.segment import (
    INDEX_SUFFIX,
    LOG_SUFFIX,
    TIMEINDEX_SUFFIX,
    TXNINDEX_SUFFIX,
    Segment,
    segment_base,
    segment_name,
)
from storage.segment_copy import execute_copy, plan_copy

__all__ = ["LogSnapshots"]

# a staged segment's files, moved in by adopt() in this order (its .log last)
_ADOPTED_SUFFIXES: Final = (INDEX_SUFFIX, TIMEINDEX_SUFFIX, TXNINDEX_SUFFIX, LOG_SUFFIX)


class LogSnapshots(LogState):
    """Whole segments into and out of a partition log, for snapshots."""

    def start_writeback(self) -> None:
        """Start writing the active segment's new pages back, without waiting (bulk
        writers such as snapshot staging call it per chunk; see FileOps)."""
        with self._lock, self._segments.active.handle() as fd:
            self.fileops.start_writeback(fd)

    def adopt(self, staging_dir: str) -> int:
        """Move the segments of a log built in ``staging_dir`` onto this log's end.

        ``staging_dir`` holds a closed, fsynced partition log on the same file
        system whose first segment starts at this log's end offset (see
        storage/snapshot_stage.py). The active segment is closed (or, if empty,
        replaced), the staged segments are renamed in, oldest first, index files
        before their ``.log``, and the last one becomes the active segment. A crash
        part-way leaves a prefix of them, which recovery checks like any segment
        past the recovery point. Returns the new log end offset.

        Raises:
            OffsetMismatch: the staged log does not start at the log end offset.
            StorageIOError: a rename or open failed (the log is marked failed).
        """
        bases = sorted(
            base
            for name in self.fileops.listdir(staging_dir)
            if (base := segment_base(name)) is not None
        )
        staged_epochs = EpochCache.load(staging_dir)
        with self._lock:
            self._check_writable()
            active = self._segments.active
            if not bases:
                return active.next_offset
            if bases[0] != active.next_offset:
                raise OffsetMismatch(
                    f"staged segments start at {bases[0]}, "
                    f"the log ends at {active.next_offset}"
                )
            # The set changes once, after every segment is in place: a reader
            # without the lock sees the log as it was until then, never empty.
            adopted: list[Segment] = []
            replace = active.size == 0
            try:
                if replace:
                    # the first staged segment takes its file names
                    self._unsynced.pop(active.base_offset, None)
                    active.remove_files()
                else:
                    active.seal_time_index()
                    active.write_indexes()
                for i, base in enumerate(bases):
                    stem = segment_name(base)
                    for suffix in _ADOPTED_SUFFIXES:
                        src = os.path.join(staging_dir, stem + suffix)
                        if suffix == LOG_SUFFIX or os.path.exists(src):
                            self.fileops.replace(
                                src, os.path.join(self.directory, stem + suffix)
                            )
                    seg = Segment.open(self.fileops, self.directory, base, self.handles)
                    next_base = bases[i + 1] if i + 1 < len(bases) else None
                    if (
                        load_trusted(seg, self.config.index_interval_bytes, next_base)
                        is None
                    ):
                        scan_segment(
                            seg, self.config.index_interval_bytes, verify=False
                        )
                    adopted.append(seg)
            except OSError as exc:
                # what is in place stays in the set (closed with the log); the log
                # takes nothing more until it is reopened and recovered
                if adopted:
                    if replace:
                        self._segments.replace_active(adopted)
                    else:
                        self._segments.extend(adopted)
                self._failed = f"adopting segments failed: {exc.strerror or exc}"
                raise io_error(f"adopting segments into {self.directory}", exc) from exc
            if replace:
                self._segments.replace_active(adopted)
            else:
                self._segments.extend(adopted)
            try:
                self._txns.on_adopted(adopted)
            except OSError as exc:
                self._failed = f"indexing adopted segments failed: {exc}"
                raise io_error(f"adopting segments into {self.directory}", exc) from exc
            self._segments.active.created_ms = wall_clock_ms()
            for epoch, start in zip(
                staged_epochs.epochs, staged_epochs.starts, strict=True
            ):
                self._epochs.assign(epoch, start)
            self._dir_dirty = True
            return self._segments.end_offset

    def link_or_copy_segments_to(
        self, dest_dir: str, end_offset: int, *, start_offset: int = 0
    ) -> list[CopiedSegment]:
        """Place the batches in [start_offset, end_offset) into ``dest_dir``.

        ``end_offset`` is exclusive (a high watermark) and cut at a batch boundary.
        Closed segments wholly inside the range are hard-linked (copied if the file
        system refuses); a segment cut by the range is copied as a whole-batch slice
        under the name of its first batch's offset. Runs in a worker thread; the
        lock is held only while planning (the copy works on dup()ed descriptors).
        """
        with self._lock:
            if self._closed:
                raise LogClosed(f"{self.topic}-{self.partition} is closed")
            plan = plan_copy(self._segments, start_offset, end_offset)
            fds = [self._dup(step.segment) for step in plan]
        try:
            return execute_copy(self.fileops, plan, fds, dest_dir)
        except OSError as exc:
            raise io_error(f"copying segments to {dest_dir}", exc) from exc
        finally:
            for fd in fds:
                with contextlib.suppress(OSError):
                    self.fileops.close(fd)
