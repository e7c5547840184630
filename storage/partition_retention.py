"""Where a partition log starts and ends: DeleteRecords, retention, reset, truncation.

The log start moves forward with DeleteRecords (KIP-107) and with retention by time
or size (whole closed segments, oldest first, with ``delete`` in cleanup.policy); an
empty log can be reset to begin elsewhere (a fresh follower, a snapshot restore);
a follower truncates its divergent tail (KIP-101/KIP-279). Each writes
``checkpoint.json`` so a crash part-way leaves a log that recovery makes consistent
(see each method). The file layout and the threading rules are in
:mod:`storage.partition_log`.
"""

from __future__ import annotations

import contextlib
import errno
import os

from storage.errors import OffsetMismatch, OffsetOutOfRange
from storage.log_state import LogState, io_error, wall_clock_ms
from storage.log_types import SegmentInfo
from storage.recovery import scan_segment
from storage.segment import Segment

__all__ = ["LogRetention"]


class LogRetention(LogState):
    """Moving a partition log's start (DeleteRecords, retention) and end."""

    def delete_records(self, before_offset: int) -> int:
        """DeleteRecords: move the log start to ``before_offset``; returns it."""
        with self._lock:
            self._check_writable()
            end = self._segments.end_offset
            if before_offset < 0 or before_offset > end:
                raise OffsetOutOfRange(before_offset, self._log_start, end)
            if before_offset > self._log_start:
                self._log_start = before_offset
                while (
                    len(self._segments) > 1
                    and self._segments.first.next_offset <= before_offset
                ):
                    self._remove_first()
                self._save_state()
            return self._log_start

    def apply_retention(self, now_ms: int | None = None) -> list[SegmentInfo]:
        """Delete closed segments past retention.ms / retention.bytes (oldest first;
        only with ``delete`` in cleanup.policy)."""
        now = wall_clock_ms() if now_ms is None else now_ms
        removed: list[SegmentInfo] = []
        with self._lock:
            self._check_writable()
            cfg = self.config
            if not cfg.delete:
                return removed  # cleanup.policy=compact: no retention by time/size
            total = self._segments.size_bytes
            while len(self._segments) > 1:
                seg = self._segments.first
                expired = (
                    cfg.retention_ms >= 0
                    and seg.max_timestamp >= 0
                    and now - seg.max_timestamp > cfg.retention_ms
                )
                oversize = (
                    cfg.retention_bytes >= 0 and total - seg.size >= cfg.retention_bytes
                )
                if not (expired or oversize):
                    break
                removed.append(self._info(seg))
                total -= seg.size
                self._remove_first()
            if removed:
                self._log_start = max(self._log_start, self._segments.base_offset)
                self._save_state()
        return removed

    def _remove_first(self) -> None:
        seg = self._segments.pop_first()
        self._unsynced.pop(seg.base_offset, None)
        self._txns.drop_segment(seg.base_offset, seg.next_offset)
        try:
            seg.remove_files()
        except OSError as exc:
            raise io_error(f"deleting {seg.log_path}", exc) from exc

    def _save_state(self) -> None:
        self._recovery_point = min(self._recovery_point, self._durable)
        try:
            with self._checkpoint_lock:
                self._write_checkpoint()
        except OSError as exc:
            raise io_error(f"checkpointing {self.directory}", exc) from exc

    def reset_start(self, base_offset: int) -> None:
        """Make an empty log (no readable records) begin at ``base_offset``.

        Also a fresh follower's first step when its leader's log starts later
        (OFFSET_OUT_OF_RANGE), or when the leader's first batch starts before the
        empty log's start (a log start in the middle of a batch).

        Raises:
            OffsetMismatch: the log holds records.
        """
        with self._lock:
            self._check_writable()
            if self._segments.end_offset != self._log_start:
                raise OffsetMismatch(
                    f"{self.topic}-{self.partition} is not empty "
                    f"({self._log_start}..{self._segments.end_offset})"
                )
            self._reset_locked(base_offset)

    def _reset_locked(self, base_offset: int) -> None:
        """Drop every segment and start an empty log at ``base_offset``.

        Crash safety: the recovery point is lowered (durably) first and segments
        are deleted newest first, so a crash part-way leaves a prefix of the old
        log that recovery re-verifies; the final checkpoint records the new start.
        """
        if base_offset < 0:
            raise OffsetMismatch(f"negative base offset {base_offset}")
        self._rewrites += 1
        if self._segments.end_offset != self._log_start:
            self._recovery_point = min(self._recovery_point, base_offset)
            try:
                with self._checkpoint_lock:
                    self._write_checkpoint()
            except OSError as exc:
                raise io_error(f"checkpointing {self.directory}", exc) from exc
        try:
            for seg in reversed(list(self._segments)):
                seg.remove_files()
            self._segments.replace_all(
                [
                    Segment.create(
                        self.fileops, self.directory, base_offset, self.handles
                    )
                ]
            )
        except OSError as exc:
            self._failed = f"reset failed: {exc.strerror or exc}"
            raise io_error(f"resetting {self.directory}", exc) from exc
        self._unsynced.clear()
        self._log_start = self._durable = self._recovery_point = base_offset
        self._epochs.clear()
        try:
            self._txns.reset(base_offset)
            with self._checkpoint_lock:
                self._epochs.save(self.fileops, self.directory)
                self._write_checkpoint()  # also fsyncs the directory
        except OSError as exc:
            raise io_error(f"checkpointing {self.directory}", exc) from exc
        self._dir_dirty = False

    def truncate_to(self, offset: int) -> int:
        """Drop every record at and after ``offset`` (a follower's divergent tail,
        KIP-101/KIP-279); returns the new log end offset.

        The cut falls at the start of the batch holding ``offset`` (Kafka
        ``LogSegment.truncateTo``), so the new end may be below ``offset``. If
        nothing readable would remain (``offset`` at or below the log start, or the
        cut batch starts there), the log is emptied and restarts at ``offset``.
        Leader epochs starting at or past the new end are forgotten.

        Crash safety: first the epoch file and a checkpoint whose recovery point is
        the new end are written (atomically), so everything from the cut on is
        re-verified by recovery; then later segments are deleted newest first; last
        the cut segment is replaced by a copy of its prefix (tmp, fsync, rename,
        fsync dir). A crash at any step leaves a prefix of the old log at least as
        long as the new one, consistent with its epoch file (recovery re-derives the
        epochs of what it re-scans), and the follower truncates again from its
        leader's epochs. The cut file is replaced, never shrunk in place, because a
        Fetch response may still hold an mmap view of its old bytes (SIGBUS).

        Raises:
            OffsetMismatch: ``offset`` is negative.
            StorageIOError: a file operation failed (the log is marked failed).
        """
        if offset < 0:
            raise OffsetMismatch(f"negative truncation offset {offset}")
        with self._sync_lock, self._lock:
            self._check_writable()
            end = self._segments.end_offset
            if offset >= end:
                return end
            seg = next(iter(self._segments.from_offset(offset)))
            if offset < seg.base_offset:  # below the first segment
                self._reset_locked(offset)
                return offset
            try:
                found = seg.find(offset)
            except OSError as exc:
                raise io_error(f"reading {seg.log_path}", exc) from exc
            assert found is not None  # offset < end lies in this segment
            cut_pos, cut_header = found
            new_end = cut_header.base_offset
            if new_end <= self._log_start:
                self._reset_locked(offset)
                return offset
            self._rewrites += 1
            self._epochs.truncate_from(new_end)
            self._recovery_point = min(self._recovery_point, new_end)
            self._durable = min(self._durable, new_end)
            try:
                with self._checkpoint_lock:
                    self._epochs.save(self.fileops, self.directory)
                    self._write_checkpoint()
                while self._segments.active is not seg:
                    gone = self._segments.pop_active()
                    self._unsynced.pop(gone.base_offset, None)
                    gone.remove_files()
                kept = self._replace_with_prefix(seg, cut_pos)
                self._segments.replace_active([kept])
                self._unsynced.pop(seg.base_offset, None)
                self._txns.truncate(list(self._segments), new_end)
                self.fileops.fsync_dir(self.directory)
            except OSError as exc:
                # The epochs in memory already say "cut": the log must not take
                # appends until it is reopened (recovery makes it consistent).
                self._failed = f"truncation failed: {exc.strerror or exc}"
                raise io_error(f"truncating {self.directory}", exc) from exc
            self._dir_dirty = False
            return self._segments.end_offset

    def _replace_with_prefix(self, seg: Segment, size: int) -> Segment:
        """Swap ``seg``'s log file for a copy of its first ``size`` bytes; the
        segment's indexes are rebuilt from the kept batches (their files go: they
        are written again at the next roll or clean close)."""
        tmp = seg.log_path + ".truncate.tmp"
        fileops = self.fileops
        out = fileops.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            done = 0
            with seg.handle() as fd:
                while done < size:
                    chunk = fileops.pread(fd, min(1 << 20, size - done), done)
                    if not chunk:
                        raise OSError(errno.EIO, f"short read of {seg.log_path}")
                    view = memoryview(chunk)
                    while view:
                        n = fileops.pwrite(out, view, done)
                        view = view[n:]
                        done += n
            fileops.fsync(out)
        finally:
            fileops.close(out)
        created = seg.created_ms
        seg.close()
        for path in (seg.index_path, seg.timeindex_path):
            with contextlib.suppress(FileNotFoundError):
                fileops.unlink(path)
        fileops.replace(tmp, seg.log_path)
        kept = Segment.open(fileops, self.directory, seg.base_offset, self.handles)
        scan_segment(kept, self.config.index_interval_bytes, verify=False)
        kept.created_ms = created
        return kept
