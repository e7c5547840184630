"""One partition's log: its segments (segment_set.py), append/read/sync/retention.

Directory ``<data_dir>/kafka/<topic>/<partition>/``::

    00000000000000000000.log / .index / .timeindex    closed segments
    00000000000000004096.log / .index / .timeindex    ... the last one is active
    00000000000000000000.txnindex                     aborted transactions (txn_index.py)
    leader-epoch-checkpoint                           epoch_cache.py
    txn-state.json                                    transactions.py
    checkpoint.json   {"version": 1, "recovery_point": N, "log_start_offset": M}

``recovery_point``: every byte below it was fsynced and its segments' indexes were
written, so recovery trusts segments that end at or below it. ``log_start_offset``
moves with DeleteRecords and retention. Both are written atomically (tmp, fsync,
rename, fsync dir) by ``checkpoint()`` (the broker calls it periodically, in a
worker thread), DeleteRecords, retention and a clean close.

Threading: the broker calls everything from its event-loop thread except ``sync``,
``close``, recovery, snapshot copies and a follower's ``truncate_to`` and verbatim
appends, which run in worker threads (``truncate_to`` waits for a running sync). ``_lock``
guards the in-memory state (held briefly; never across an fsync); ``_sync_lock``
serialises syncs. ``sync`` fsyncs dup()ed descriptors, so a concurrent roll or
retention that closes a segment never closes an fd that is being fsynced.

This module holds the append and read paths; the rest of the class comes from one
module per concept over :class:`~storage.log_state.LogState`: partition_durability
(open, sync, checkpoint, close), partition_retention (DeleteRecords, retention,
reset, truncation), partition_cleaning (the cleaner's swap), partition_snapshots
(adopt, copies) and partition_txns (the last stable offset, aborted transactions).
"""

from __future__ import annotations

import contextlib
import errno
from typing import Final

from protocol.records import (
    CONTROL_BIT,
    TIMESTAMP_TYPE_BIT,
    TRANSACTIONAL_BIT,
    BatchHeader,
    read_header,
)
from storage.config import TopicConfig
from storage.errors import LogClosed, OffsetMismatch, OffsetOutOfRange
from storage.fd_cache import FdCache
from storage.fileops import Buffer, FileOps
from storage.log_reader import max_timestamp_offset, offset_for_timestamp, read_batches
from storage.log_state import io_error, wall_clock_ms
from storage.log_types import (
    AppendResult,
    CopiedSegment,
    PartitionRecovery,
    ReadResult,
    SegmentInfo,
)
from storage.partition_cleaning import LogCleaning
from storage.partition_durability import LogDurability
from storage.partition_retention import LogRetention
from storage.partition_snapshots import LogSnapshots
from storage.partition_txns import LogTxnQueries
from storage.record_rules import check_records
from storage.segment import Segment
from storage.transactions import marker_batch
from storage.txn_index import AbortedTxn
from storage.validation import stamp_batches, validate_batches

__all__ = [
    "AppendResult",
    "CopiedSegment",
    "PartitionLog",
    "PartitionRecovery",
    "ReadResult",
    "SegmentInfo",
]

# Write errors that mean "no space": refused, rolled back, and the log stays online.
# Any other write error (EIO, ...) marks the log failed, as a failed fsync does.
_SPACE_ERRNOS: Final = frozenset({errno.ENOSPC, errno.EDQUOT})
# Out of descriptors (reopening an evicted segment): refused, the log stays online.
_TRANSIENT_ERRNOS: Final = _SPACE_ERRNOS | {errno.EMFILE, errno.ENFILE}
_MAX_RELATIVE_OFFSET: Final = 2**31 - 1


class PartitionLog(
    LogDurability, LogRetention, LogCleaning, LogSnapshots, LogTxnQueries
):
    """A partition's segments; see the module docstring for the threading rules."""

    # -- opening ---------------------------------------------------------------
    @classmethod
    def open(
        cls,
        directory: str,
        *,
        topic: str,
        partition: int,
        config: TopicConfig,
        fileops: FileOps,
        clean: bool,
        handles: FdCache | None = None,
    ) -> PartitionLog:
        """Open (creating if needed) and recover the partition in ``directory``.

        ``handles``: the descriptor cache its segments share with other partitions
        (None: descriptors stay open until the log is closed).
        """
        log = cls(
            directory,
            topic=topic,
            partition=partition,
            config=config,
            fileops=fileops,
            handles=handles,
        )
        try:
            log._open(clean)
        except OSError as exc:
            log._close_fds()
            raise io_error(f"opening {directory}", exc) from exc
        except BaseException:
            log._close_fds()  # no descriptor outlives a failed open
            raise
        return log

    # -- properties --------------------------------------------------------------
    @property
    def log_start_offset(self) -> int:
        """First offset that can be read."""
        return self._log_start

    @property
    def log_end_offset(self) -> int:
        """The offset the next record will get."""
        return self._segments.end_offset

    @property
    def durable_offset(self) -> int:
        """Every record below this offset is fsynced."""
        return self._durable

    @property
    def needs_sync(self) -> bool:
        """Whether sync() has something to do."""
        return self._durable < self._segments.end_offset or self._dir_dirty

    @property
    def failed(self) -> str | None:
        """Why the log refuses writes (failed fsync, or write error but ENOSPC)."""
        return self._failed

    @property
    def leader_epoch(self) -> int:
        """The newest leader epoch written to this log (-1 if none)."""
        return self._epochs.latest_epoch

    @property
    def max_timestamp(self) -> int:
        """Largest batch max_timestamp in the log (-1 if none)."""
        return self._segments.max_timestamp

    @property
    def size_bytes(self) -> int:
        """Bytes of all segment files."""
        return self._segments.size_bytes

    def segments(self) -> list[SegmentInfo]:
        """Every segment, oldest first; the last one is active."""
        with self._lock:
            return [self._info(s) for s in self._segments]

    def closed_segments(self) -> list[SegmentInfo]:
        """Segments that will never change again (all but the active one)."""
        return self.segments()[:-1]

    # -- append ------------------------------------------------------------------
    def validate(
        self, records: Buffer, *, now_ms: int | None = None
    ) -> list[tuple[int, BatchHeader]]:
        """Check a produced payload as :meth:`append` does; (position, header) of
        each batch. The records are looked at only when the topic's config or a
        batch header asks for it (storage.record_rules).

        Raises:
            InvalidBatch / MessageTooLarge / InvalidRecord / InvalidTimestamp.
        """
        config = self.config
        batches = validate_batches(
            records,
            max_message_bytes=config.max_message_bytes,
            topic_partition=self.name,
        )
        inspect = config.inspects_records
        if not inspect:
            for _, header in batches:
                if header.attributes & TIMESTAMP_TYPE_BIT:
                    inspect = True  # the producer set LogAppendTime itself
                    break
        if inspect:
            check_records(
                records,
                batches,
                config,
                wall_clock_ms() if now_ms is None else now_ms,
                self.name,
            )
        return batches

    def append(
        self, records: Buffer, *, leader_epoch: int, now_ms: int | None = None
    ) -> AppendResult:
        """Validate every batch, then assign offsets and write them all at once.

        Raises:
            InvalidBatch / MessageTooLarge / InvalidRecord / InvalidTimestamp:
                nothing was written (:meth:`validate`).
            StorageIOError: the write failed; the log is unchanged (partial bytes
                are truncated away). Unless the error was ENOSPC/EDQUOT the log is
                also marked ``failed`` and refuses writes until it is reopened.
        """
        now = wall_clock_ms() if now_ms is None else now_ms
        batches = self.validate(records, now_ms=now)
        view = memoryview(records)
        append_time = now if self.config.log_append_time else -1
        span = -1
        attributes = 0
        for _, h in batches:
            span += h.last_offset_delta + 1
            attributes |= h.attributes
        txn = bool(attributes & TRANSACTIONAL_BIT)
        with self._lock:
            self._check_writable()
            self._maybe_roll(len(view), now, span)
            first = offset = self._segments.end_offset
            parts, offset = stamp_batches(
                view, batches, first, leader_epoch, append_time
            )
            if txn:
                self._before_txn_append(first)
            self._epochs.assign(leader_epoch, first)
            self._write(parts, batches, first, append_time, now, txn=txn)
            return AppendResult(
                base_offset=first,
                last_offset=offset - 1,
                log_append_time_ms=append_time,
                log_start_offset=self._log_start,
            )

    def append_verbatim(
        self, batches: Buffer, *, aborted: dict[int, AbortedTxn] | None = None
    ) -> AppendResult:
        """Append batches that already carry their offsets (snapshot restore).

        They must start at or after log_end_offset and increase; they are dense
        but where a compacted leader or snapshot cleaned records away (gaps are
        kept, as Kafka's followers keep them). CRCs are checked and leader epochs
        kept. Batches are spread over new segments as segment.bytes demands.
        ``aborted`` (ABORT marker offset -> entry): the source's ``.txnindex``
        entries, indexed instead of those the replay of the markers derives (a
        snapshot carries them); None: derived.

        Raises:
            OffsetMismatch: before the log end or not increasing.
            InvalidBatch: a batch is damaged.
        """
        found = validate_batches(batches, max_message_bytes=None)
        view = memoryview(batches)
        with self._lock:
            self._check_writable()
            expected = first = self._segments.end_offset
            attributes = 0
            for _, header in found:
                if header.base_offset < expected:
                    raise OffsetMismatch(
                        f"batch at offset {header.base_offset}, expected {expected}"
                    )
                expected = header.next_offset
                attributes |= header.attributes
            txn = bool(attributes & (TRANSACTIONAL_BIT | CONTROL_BIT))
            if txn:
                self._before_txn_append(first)
            now = wall_clock_ms()
            self._txns.given = aborted
            try:
                self._write_runs(view, found, now, txn)
            finally:
                self._txns.given = None
            if txn and aborted is not None:
                # a checkpoint makes this state durable: a restart then replays
                # nothing of the restored batches (their entries stay as given)
                self._txns.marks[expected] = self._txns.tracker.copy()
            return AppendResult(
                base_offset=max(first, found[0][1].base_offset),
                last_offset=expected - 1,
                log_append_time_ms=-1,
                log_start_offset=self._log_start,
            )

    def _write_runs(
        self,
        view: memoryview,
        found: list[tuple[int, BatchHeader]],
        now: int,
        txn: bool,
    ) -> None:
        """Write verbatim batches, spread over segments as segment.bytes demands."""
        i = 0
        while i < len(found):
            # Take as many batches as fit in the active segment (at least one).
            seg = self._segments.active
            room = self.config.segment_bytes - seg.size
            j = i + 1
            used = found[i][1].size
            while j < len(found) and used + found[j][1].size <= room:
                used += found[j][1].size
                j += 1
            run = found[i:j]
            # the span from the active segment's end (a gap counts: relative
            # offsets in a segment must fit in 31 bits)
            self._maybe_roll(used, now, run[-1][1].last_offset - seg.next_offset)
            start = run[0][0]
            chunk = view[start : start + used]
            rebased = [(pos - start, header) for pos, header in run]
            for _, header in rebased:
                self._epochs.assign(header.partition_leader_epoch, header.base_offset)
            self._write(chunk, rebased, header_offsets=True, now=now, txn=txn)
            i = j

    def _write(
        self,
        data: Buffer | list[Buffer],
        batches: list[tuple[int, BatchHeader]],
        first: int = 0,
        append_time: int = -1,
        now: int = 0,
        *,
        header_offsets: bool = False,
        txn: bool = False,
    ) -> None:
        seg = self._segments.active
        start = seg.size
        try:
            if isinstance(data, list):
                seg.write_parts(data, start)
            else:
                seg.write(data, start)
        except OSError as exc:
            with contextlib.suppress(OSError), seg.handle() as fd:
                self.fileops.ftruncate(fd, start)
            if exc.errno not in _TRANSIENT_ERRNOS:
                # A failing disk (EIO, ...): like a failed fsync, the partition goes
                # offline until it is reopened. Running out of space does not: the
                # disk-full floor (broker/disk/guard.py) resumes without a restart.
                self._failed = f"write failed: {exc.strerror or exc}"
            raise io_error(f"writing {seg.log_path}", exc) from exc
        if seg.created_ms is None:
            seg.created_ms = now
        interval = self.config.index_interval_bytes
        offset = first
        for pos, header in batches:
            if header_offsets:
                offset = header.base_offset
            last = offset + header.last_offset_delta
            max_ts = append_time if append_time >= 0 else header.max_timestamp
            seg.note_batch(start + pos, last, max_ts, header.size, interval)
            offset = last + 1
        self._unsynced[seg.base_offset] = seg
        if txn:
            self._note_txn_batches(seg, start, batches, first, header_offsets)

    def _before_txn_append(self, offset: int) -> None:
        try:
            self._txns.before_append(offset)
        except OSError as exc:
            raise io_error(
                f"writing transaction state of {self.directory}", exc
            ) from exc

    def _note_txn_batches(
        self,
        seg: Segment,
        start: int,
        batches: list[tuple[int, BatchHeader]],
        first: int,
        header_offsets: bool,
    ) -> None:
        """Open and close transactions for the batches just written (an ABORT
        marker's ``.txnindex`` entry is written here)."""
        try:
            self._txns.on_written(seg, start, batches, first, header_offsets)
        except OSError as exc:
            self._failed = f"transaction index write failed: {exc.strerror or exc}"
            raise io_error(f"indexing transactions in {self.directory}", exc) from exc

    def append_marker(
        self,
        producer_id: int,
        producer_epoch: int,
        commit: bool,
        coordinator_epoch: int,
        *,
        leader_epoch: int,
        now_ms: int | None = None,
    ) -> AppendResult:
        """Write a COMMIT or ABORT marker (a control batch in Kafka's format) for
        ``producer_id``'s transaction: the transaction closes, an ABORT is added to
        the segment's ``.txnindex`` (what WriteTxnMarkers does for a partition).

        Raises:
            ProducerFenced: ``producer_epoch`` is older than the producer's.
            CoordinatorFenced: ``coordinator_epoch`` is older than the producer's
                last marker's.
            StorageIOError: the write failed (see :meth:`append`).
        """
        now = wall_clock_ms() if now_ms is None else now_ms
        with self._lock:
            self._check_writable()
            self._txns.tracker.check_marker(
                producer_id, producer_epoch, coordinator_epoch
            )
            batch = marker_batch(
                producer_id,
                producer_epoch,
                commit=commit,
                coordinator_epoch=coordinator_epoch,
                base_offset=self._segments.end_offset,
                leader_epoch=leader_epoch,
                timestamp=now,
            )
            self._maybe_roll(len(batch), now, 0)
            first = self._segments.end_offset
            append_time = now if self.config.log_append_time else -1
            self._before_txn_append(first)
            self._epochs.assign(leader_epoch, first)
            header = read_header(batch)
            self._write(
                batch,
                [(0, header)],
                first,
                append_time,
                now,
                header_offsets=True,
                txn=True,
            )
            return AppendResult(
                base_offset=first,
                last_offset=first,
                log_append_time_ms=append_time,
                log_start_offset=self._log_start,
            )

    def _maybe_roll(self, incoming: int, now: int, span: int) -> None:
        seg = self._segments.active
        if seg.size == 0:
            return
        too_big = seg.size + incoming > self.config.segment_bytes
        config = self.config
        max_age = config.segment_ms
        if config.compact and config.max_compaction_lag_ms > 0:
            # Kafka's LogConfig.maxSegmentMs: a compacted topic's active segment
            # rolls by max.compaction.lag.ms too, so the cleaner may take it in time
            max_age = min(max_age, config.max_compaction_lag_ms)
        too_old = seg.created_ms is not None and now - seg.created_ms >= max_age
        too_far = seg.next_offset + span - seg.base_offset > _MAX_RELATIVE_OFFSET
        if too_big or too_old or too_far:
            self._roll_locked()

    def roll(self) -> None:
        """Close the active segment and start a new one (no-op if it is empty)."""
        with self._lock:
            self._check_writable()
            if self._segments.active.size:
                self._roll_locked()

    def _roll_locked(self) -> None:
        old = self._segments.active
        try:
            old.seal_time_index()
            old.write_indexes()
            new = Segment.create(
                self.fileops, self.directory, old.next_offset, self.handles
            )
        except OSError as exc:
            raise io_error(f"rolling {old.log_path}", exc) from exc
        self._segments.append(new)
        self._txns.on_roll(new.base_offset)
        self._dir_dirty = True
        # Nothing is fsynced here (a roll is on the append path): the recovery point
        # and epoch file move on at the next checkpoint() or clean close, and until
        # then recovery re-scans from the older recovery point.

    # -- read --------------------------------------------------------------------
    def read(
        self,
        offset: int,
        max_bytes: int,
        *,
        upper_bound: int | None = None,
        min_one: bool = True,
    ) -> ReadResult:
        """Whole batches from the one holding ``offset``, at most ``max_bytes``
        (but at least one batch unless ``min_one`` is False), never past
        ``upper_bound`` or the log end.

        Raises:
            OffsetOutOfRange: offset < log_start_offset or > log_end_offset.
        """
        with self._lock:
            if self._closed:
                raise LogClosed(f"{self.topic}-{self.partition} is closed")
            end_offset = self._segments.end_offset
            if offset < self._log_start or offset > end_offset:
                raise OffsetOutOfRange(offset, self._log_start, end_offset)
            if upper_bound is not None:
                end_offset = min(end_offset, upper_bound)
            try:
                return read_batches(
                    self._segments,
                    offset,
                    max_bytes,
                    end_offset,
                    mmap=self.read_mode == "mmap",
                    min_one=min_one,
                )
            except OSError as exc:  # reopening an evicted segment (EMFILE, ...)
                raise io_error(f"reading {self.directory}", exc) from exc

    # -- ListOffsets / OffsetForLeaderEpoch ---------------------------------------
    def offset_for_timestamp(self, timestamp_ms: int) -> tuple[int, int] | None:
        """ListOffsets by time: (offset, timestamp) of the first record at or after
        the log start whose timestamp is >= ``timestamp_ms``; None if there is none.
        """
        with self._lock:
            try:
                return offset_for_timestamp(
                    self._segments, self._log_start, timestamp_ms
                )
            except OSError as exc:
                raise io_error(f"reading {self.directory}", exc) from exc

    def max_timestamp_offset(self) -> tuple[int, int]:
        """ListOffsets -3: (offset, timestamp) of the first record with the largest
        timestamp at or after the log start; (-1, -1) if the log is empty."""
        with self._lock:
            try:
                return max_timestamp_offset(self._segments, self._log_start)
            except OSError as exc:
                raise io_error(f"reading {self.directory}", exc) from exc

    def epoch_end_offset(self, epoch: int) -> tuple[int, int]:
        """OffsetForLeaderEpoch: (largest epoch <= ``epoch``, its end offset)."""
        with self._lock:
            return self._epochs.end_offset_for(epoch, self._segments.end_offset)
