"""A partition log's durability: opening (recovery), fsync, checkpoints, clean close.

What is on disk and what recovery may trust: ``_open`` recovers the segments
(storage/recovery.py) against ``checkpoint.json`` and rebuilds the epochs and the
transaction state; :meth:`LogDurability.sync` fsyncs what was written (dup()ed
descriptors, outside the log lock) and moves the durable offset;
:meth:`LogDurability.checkpoint` moves the recovery point to it; a clean
:meth:`LogDurability.close` fsyncs everything and checkpoints the log end. The file
layout and the threading rules are in :mod:`storage.partition_log`.
"""

from __future__ import annotations

import contextlib
import os
import time

from storage.epoch_cache import FILE_NAME as EPOCH_FILE
from storage.epoch_cache import EpochCache
from storage.errors import StorageError, StorageIOError
from storage.log_state import LogState, io_error, wall_clock_ms
from storage.log_types import PartitionRecovery
from storage.recovery import recover_segments
from storage.segment import Segment
from storage.segment_set import SegmentSet

__all__ = ["LogDurability"]


class LogDurability(LogState):
    """Opening, syncing, checkpointing and closing a partition log."""

    def _open(self, clean: bool) -> None:
        fileops = self.fileops
        fileops.makedirs(self.directory)
        recovery_point, log_start = self._read_checkpoint()
        self._epochs = EpochCache.load(self.directory)
        segments, reports, removed_segments, removed_files = recover_segments(
            fileops,
            self.directory,
            self.config.index_interval_bytes,
            clean=clean,
            recovery_point=recovery_point,
            epochs=self._epochs,
            handles=self.handles,
        )
        self._segments = SegmentSet(segments)  # closed by open() if the rest fails
        bases = [r.base_offset for r in reports]
        if not segments:
            start = max(log_start, recovery_point) if not bases else bases[0]
            self._segments.append(
                Segment.create(fileops, self.directory, start, self.handles)
            )
            self._dir_dirty = True
        active = self._segments.active
        if active.size:
            active.created_ms = wall_clock_ms()  # segment.ms counts from the restart
        end = active.next_offset
        self._epochs.truncate_from(end)
        self._log_start = min(max(log_start, self._segments.base_offset), end)
        # Everything that survived recovery is on disk: what was scanned got fsynced
        # by the truncation or was already durable; a clean close fsynced the rest.
        for seg in self._segments:
            if not clean:
                with seg.handle() as fd:
                    fileops.fsync(fd)
            if seg.indexes_dirty and seg is not active:
                seg.seal_time_index()
                seg.write_indexes()
        self._durable = end
        self._recovery_point = end
        self._txns.open(
            list(self._segments), fileops.listdir(self.directory), recovery_point
        )
        if not clean or removed_files or removed_segments or self._dir_dirty:
            fileops.fsync_dir(self.directory)
        self._dir_dirty = False
        if (recovery_point, log_start) != (end, self._log_start):
            self._write_checkpoint()
        self._epochs.save(fileops, self.directory)
        self.recovery = PartitionRecovery(
            topic=self.topic,
            partition=self.partition,
            clean=clean,
            log_end_offset=end,
            segments=reports,
            removed_segments=removed_segments,
            removed_files=removed_files,
        )

    def sync(self) -> int:
        """fsync written data (and new directory entries); returns the durable offset.

        Safe to call from a worker thread while the loop thread appends.

        Raises:
            StorageIOError: fsync failed; the log refuses writes until reopened.
        """
        with self._sync_lock:
            with self._lock:
                if self._failed is not None:
                    raise StorageIOError(
                        f"{self.topic}-{self.partition}: {self._failed}"
                    )
                if self._closed:
                    return self._durable
                target = self._segments.end_offset
                segs = [s for s in self._unsynced.values() if not s.closed]
                fds: list[int] = []
                try:
                    fds.extend(self._dup(s) for s in segs)
                except OSError as exc:  # out of descriptors: retried next round
                    for fd in fds:
                        with contextlib.suppress(OSError):
                            self.fileops.close(fd)
                    raise io_error(f"syncing {self.directory}", exc) from exc
                self._unsynced.clear()
                dir_dirty, self._dir_dirty = self._dir_dirty, False
                rewrites = self._rewrites
                txn_indexes = self._txns.unsynced() if self._txns.indexes else []
            try:
                for fd in fds:
                    self.fileops.fdatasync(fd)
                for index in txn_indexes:
                    index.sync()
                if dir_dirty:
                    self.fileops.fsync_dir(self.directory)
            except OSError as exc:
                with self._lock:
                    self._failed = f"fsync failed: {exc.strerror or exc}"
                raise io_error(f"syncing {self.directory}", exc) from exc
            finally:
                for fd in fds:
                    with contextlib.suppress(OSError):
                        self.fileops.close(fd)
            with self._lock:
                if self._rewrites == rewrites:
                    self._durable = max(self._durable, target)
                durable = self._durable
                stale = (
                    self._recovery_point < self._segments.active.base_offset
                    and time.monotonic() - self._checkpointed_at
                    >= self.checkpoint_interval_s
                )
            if stale:
                # Worker thread already: keep crash re-scans bounded without
                # waiting for the broker's own checkpoint schedule.
                with contextlib.suppress(StorageError):
                    self.checkpoint()
            return durable

    def checkpoint(self) -> None:
        """Persist the recovery point (= durable offset) so a crash re-scans less.

        For a worker thread: the log lock is held only to take a snapshot of the
        state; index files and the checkpoint are written (and fsynced) outside it.
        """
        with self._lock:
            self._check_writable()
            recovery_point = self._durable
            dirty = [s for s in self._segments.closed() if s.indexes_dirty]
            epoch_image = self._epochs.take_image()
            txn_image = self._txns.checkpoint_image(recovery_point)
            self._checkpointed_at = time.monotonic()
        try:
            for seg in dirty:  # closed segments: their indexes no longer change
                if not seg.closed:
                    seg.write_indexes()
            with self._checkpoint_lock:
                if epoch_image is not None:
                    self.fileops.write_file_atomic(
                        os.path.join(self.directory, EPOCH_FILE), epoch_image
                    )
                if txn_image is not None:
                    self.fileops.write_file_atomic(self._txns.state_path, txn_image)
                self._recovery_point = max(self._recovery_point, recovery_point)
                self._write_checkpoint()
        except OSError as exc:
            self._epochs.dirty = self._epochs.dirty or epoch_image is not None
            raise io_error(f"checkpointing {self.directory}", exc) from exc

    def close(self, clean: bool = True) -> None:
        """Close; a clean close fsyncs everything and checkpoints the log end."""
        with self._sync_lock, self._lock:
            if self._closed:
                return
            try:
                if clean and self._failed is None:
                    for seg in self._segments:
                        if (
                            seg.base_offset in self._unsynced
                            or seg is self._segments.active
                        ):
                            with seg.handle() as fd:
                                self.fileops.fsync(fd)
                            seg.seal_time_index()
                        if seg.indexes_dirty:
                            seg.write_indexes()
                    self._durable = self._recovery_point = self._segments.end_offset
                    for index in self._txns.unsynced():
                        index.sync()
                    with self._checkpoint_lock:
                        self._epochs.save(self.fileops, self.directory)
                        if self._txns.enabled:
                            self._txns.write_state(
                                self._recovery_point, self._txns.tracker
                            )
                        self._write_checkpoint()
            except OSError as exc:
                raise io_error(f"closing {self.directory}", exc) from exc
            finally:
                self._closed = True
                self._close_fds()
