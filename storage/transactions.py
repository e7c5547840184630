"""One partition's transactions on disk: ongoing ones, aborted ones, and their files.

:class:`PartitionTxns` is the partition log's transaction bookkeeping (called with
the log's lock held): the :class:`~storage.txn_state.TxnTracker` of the ongoing
transactions (the last stable offset), the ``.txnindex`` of every segment with an
abort (storage/txn_index.py), and ``txn-state.json``, the tracker's state at a log
offset, from which it is rebuilt after a restart::

    <partition dir>/txn-state.json
        {"version": 1, "offset": N,
         "open": [[producer_id, first_offset], ...],
         "producers": [[producer_id, producer_epoch, coordinator_epoch], ...]}

The file exists only once the partition took a transactional batch: it is written
(atomically) before the first one is appended, so a partition without one never
replays anything on open. It is rewritten at each checkpoint with the state at the
newest *mark* at or below the recovery point (marks: the state at each segment
roll, at open and after truncation, kept in memory), and at a clean close with the
state at the log end. On open the state is read and the batch headers from its
offset to the log end are replayed; the ``.txnindex`` entries from that offset on
are rebuilt by the replay, so an index that is missing or torn in the part recovery
re-scanned is made whole again (Kafka rebuilds the same way from its producer
snapshot). A follower's truncation (KIP-101) trims the indexes and replays from the
newest mark below the cut, which reopens the transactions whose markers were cut.
"""

from __future__ import annotations

import bisect
import json
import os
from collections.abc import Iterable
from typing import Final

from protocol.record_builder import ControlType, build_control_batch, iter_records
from protocol.records import CONTROL_BIT, TRANSACTIONAL_BIT, BatchHeader
from storage.errors import CorruptSegment, InvalidBatch
from storage.fileops import FileOps
from storage.segment import TXNINDEX_SUFFIX, Segment, segment_name
from storage.txn_index import AbortedTxn, TxnIndexFile
from storage.txn_state import MarkerInfo, TxnTracker

__all__ = [
    "STATE_FILE",
    "TXN_BITS",
    "PartitionTxns",
    "clean_cut",
    "marker_batch",
    "marker_of",
]

STATE_FILE: Final = "txn-state.json"
TXN_BITS: Final = TRANSACTIONAL_BIT | CONTROL_BIT
_MARKER_KEY_SIZE: Final = 4  # version int16 + type int16 (ControlRecordType)
_MARKER_VALUE_SIZE: Final = 6  # version int16 + coordinator epoch int32


def marker_batch(
    producer_id: int,
    producer_epoch: int,
    *,
    commit: bool,
    coordinator_epoch: int,
    base_offset: int,
    leader_epoch: int,
    timestamp: int,
) -> bytes:
    """A COMMIT/ABORT control batch in Kafka's format (``EndTransactionMarker``)."""
    return build_control_batch(
        ControlType.COMMIT if commit else ControlType.ABORT,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        coordinator_epoch=coordinator_epoch,
        base_offset=base_offset,
        partition_leader_epoch=leader_epoch,
        timestamp=timestamp,
    )


def marker_of(batch: bytes | memoryview) -> MarkerInfo | None:
    """COMMIT/ABORT and coordinator epoch of a control batch; None for another
    control record (Kafka ignores unknown control types)."""
    for record in iter_records(batch):
        key, value = record.key, record.value
        if key is None or len(key) < _MARKER_KEY_SIZE:
            raise InvalidBatch("control record without a 4-byte key")
        kind = int.from_bytes(key[2:4], "big", signed=True)
        if kind not in (0, 1):
            return None
        coord = -1
        if value is not None and len(value) >= _MARKER_VALUE_SIZE:
            coord = int.from_bytes(value[2:6], "big", signed=True)
        return MarkerInfo(commit=kind == 1, coordinator_epoch=coord)
    return None


class PartitionTxns:
    """Ongoing and aborted transactions of one partition (under the log's lock)."""

    def __init__(self, fileops: FileOps, directory: str) -> None:
        self.fileops = fileops
        self.directory = directory
        self.tracker = TxnTracker()
        self.indexes: dict[int, TxnIndexFile] = {}  # segment base -> its .txnindex
        self._bases: list[int] = []  # sorted keys of ``indexes``
        self.marks: dict[int, TxnTracker] = {}  # offset -> state there
        self.enabled = False  # the partition took a transactional batch once
        # ABORT marker offset -> the entry to index for it, while batches that
        # come with their source's .txnindex are appended (a snapshot restore):
        # set, the replay's own entries are replaced by these
        self.given: dict[int, AbortedTxn] | None = None

    @property
    def state_path(self) -> str:
        """``txn-state.json``."""
        return os.path.join(self.directory, STATE_FILE)

    # -- opening ---------------------------------------------------------------
    def open(
        self, segments: list[Segment], names: Iterable[str], recovery_point: int = 0
    ) -> bool:
        """Load the indexes and state of a recovered log; returns whether the
        indexes or the state file had to be rebuilt. The entries of markers below
        ``recovery_point`` were fsynced before it was written: unless a file was
        damaged they are kept as they are (a compacted or restored segment's
        entries are not what a replay of its markers derives)."""
        intact = True
        for name in names:
            stem, _dot, suffix = name.partition(".")
            if "." + suffix == TXNINDEX_SUFFIX and stem.isdigit():
                index, whole = TxnIndexFile.load(
                    self.fileops, os.path.join(self.directory, name)
                )
                intact = intact and whole
                if index.entries:
                    self._put_index(int(stem), index)
        self._adopt_orphans([seg.base_offset for seg in segments])
        end = segments[-1].next_offset
        for base in list(self._bases):
            # aborts whose markers a torn tail took away
            self.indexes[base].truncate_from(end)
            if not self.indexes[base].entries:
                self._drop_index(base)
        try:
            with open(self.state_path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return False
        self.enabled = True
        start = segments[0].base_offset
        try:
            loaded = TxnTracker.from_image(json.loads(raw))
        except ValueError:
            loaded = None
        if loaded is not None and start <= loaded[0] <= end:
            offset, self.tracker = loaded
        else:  # unreadable, or from a longer log: replay everything
            offset, self.tracker = start, TxnTracker()
        self.marks = {offset: self.tracker.copy()}
        rebuilt = offset < end
        if rebuilt:
            trusted = max(offset, recovery_point) if intact else offset
            self._replay(segments, offset, end, rebuild=True, trusted=trusted)
        self.marks[end] = self.tracker.copy()
        if rebuilt:
            self.write_state(end, self.tracker)
        return rebuilt

    def _adopt_orphans(self, bases: list[int]) -> None:
        """Fold the entries of a ``.txnindex`` whose segment is gone (a crash
        between a cleaning swap's renames and its index's) into the index of the
        segment now holding its offsets; one below every segment just goes."""
        known = set(bases)
        for base in [b for b in self._bases if b not in known]:
            orphan = self.indexes[base]
            self._drop_index(base)
            holder = max((b for b in bases if b < base), default=None)
            if holder is not None:
                index = self._index(holder)
                merged = list(index.entries)
                merged += [e for e in orphan.entries if e not in merged]
                index.rewrite(sorted(merged, key=lambda e: e.last_offset))
            orphan.remove()

    def _replay(
        self,
        segments: list[Segment],
        start: int,
        end: int,
        *,
        rebuild: bool,
        trusted: int = 0,
    ) -> None:
        """Feed the batches in [start, end) to the tracker; ``rebuild``: their
        aborts replace the ``.txnindex`` entries from ``max(start, trusted)`` on
        (those below ``trusted`` stay as the files have them)."""
        keep_below = max(start, trusted)
        for seg in segments:
            if seg.next_offset <= start or seg.base_offset >= end:
                continue
            found = seg.find(max(start, seg.base_offset))
            if found is None:
                continue
            if seg.base_offset >= start:
                self.marks[seg.base_offset] = self.tracker.copy()
            fresh: list[AbortedTxn] = []
            for position, header in seg.iter_headers(found[0]):
                if header.base_offset >= end:
                    break
                if header.attributes & TXN_BITS:
                    aborted = self._apply(seg, position, header, header.base_offset)
                    if aborted is not None and aborted.last_offset >= keep_below:
                        fresh.append(aborted)
            if rebuild:
                old = self.indexes.get(seg.base_offset)
                kept = [] if old is None else old.entries
                entries = [e for e in kept if e.last_offset < keep_below] + fresh
                if entries != kept:
                    self._index(seg.base_offset).rewrite(entries)
                    if not entries:
                        self._drop_index(seg.base_offset)

    # -- appends ---------------------------------------------------------------
    def before_append(self, offset: int) -> None:
        """A transactional batch is about to be appended at ``offset``: make the
        state durable from here the first time (a restart then replays it)."""
        if not self.enabled:
            self.marks[offset] = self.tracker.copy()
            self.write_state(offset, self.tracker)
            self.enabled = True

    def on_written(
        self,
        seg: Segment,
        start: int,
        batches: list[tuple[int, BatchHeader]],
        first: int,
        header_offsets: bool,
    ) -> None:
        """Batches (position from ``start`` in ``seg``, header) were written to
        ``seg`` from offset ``first`` (``header_offsets``: their headers carry their
        offsets): open and close transactions, index the aborts."""
        offset = first
        for pos, header in batches:
            if header_offsets:
                offset = header.base_offset
            if header.attributes & TXN_BITS:
                aborted = self._apply(seg, start + pos, header, offset)
                if aborted is not None and self.given is not None:
                    aborted = self.given.get(offset)
                if aborted is not None:
                    self._index(seg.base_offset).append(aborted)
            offset += header.last_offset_delta + 1

    def _apply(
        self, seg: Segment, position: int, header: BatchHeader, base: int
    ) -> AbortedTxn | None:
        if header.producer_id < 0:
            return None
        if not header.attributes & CONTROL_BIT:
            self.tracker.on_data(header.producer_id, header.producer_epoch, base)
            return None
        try:
            marker = marker_of(seg.read_bytes(position, header.size))
        except (InvalidBatch, CorruptSegment, ValueError):
            return None
        if marker is None:
            return None
        return self.tracker.on_marker(
            header.producer_id, header.producer_epoch, marker, base
        )

    def on_adopted(self, segments: list[Segment]) -> None:
        """Segments built elsewhere were put at the log's end (snapshot ingest),
        each with the ``.txnindex`` it was built with (renamed in beside it): their
        transactional batches are replayed from their headers for the open
        transactions and producer epochs, and their indexes are loaded as they
        are (a compacted source's entries are not what a replay would derive)."""
        for seg in segments:
            path = os.path.join(self.directory, segment_name(seg.base_offset))
            index, _intact = TxnIndexFile.load(self.fileops, path + TXNINDEX_SUFFIX)
            if index.entries:
                self._put_index(seg.base_offset, index)
            for position, header in seg.iter_headers(0):
                if header.attributes & TXN_BITS:
                    self.before_append(header.base_offset)
                    self._apply(seg, position, header, header.base_offset)
        if self.enabled and segments:
            end = segments[-1].next_offset
            self.marks[end] = self.tracker.copy()

    def on_roll(self, base_offset: int) -> None:
        """A new segment starts at ``base_offset``: remember the state there."""
        if self.enabled:
            self.marks[base_offset] = self.tracker.copy()

    # -- reads -------------------------------------------------------------------
    def aborted(self, start: int, upper: int) -> list[AbortedTxn]:
        """Aborted transactions overlapping [start, upper), oldest marker first
        (Kafka ``UnifiedLog.collectAbortedTransactions``)."""
        out: list[AbortedTxn] = []
        if not self._bases:
            return out
        i = max(bisect.bisect_right(self._bases, start) - 1, 0)
        for base in self._bases[i:]:
            for entry in self.indexes[base].entries:
                if entry.last_offset >= start and entry.first_offset < upper:
                    out.append(entry)
                if entry.last_stable_offset >= upper:
                    return out
        return out

    def entries_between(self, start: int, end: int) -> list[AbortedTxn]:
        """Every entry whose ABORT marker is in [start, end), in marker order."""
        return [
            entry
            for base in self._bases
            for entry in self.indexes[base].entries
            if start <= entry.last_offset < end
        ]

    def stable_end(self, segments: list[Segment], start: int, limit: int) -> int:
        """The largest batch boundary in [start, limit] (``limit``: the last
        stable offset) that splits no transaction: every transaction with a batch
        in [start, cut) has its marker there too (:func:`clean_cut`), and no
        aborted transaction the ``.txnindex`` lists starts in [start, cut) and
        ends at or past it (compaction may have removed its records)."""
        while True:
            cut = clean_cut(segments, self.stable_start(start, limit), limit)
            lower = self.spanning(start, cut)
            if lower is None:
                return cut
            limit = lower  # the cut moves before that transaction's first offset

    def spanning(self, start: int, offset: int) -> int | None:
        """The smallest first offset, at or after ``start``, of an aborted
        transaction that ``offset`` would split (first offset < ``offset`` <= its
        ABORT marker's); None if there is none. Compaction may have removed its
        records, so the batches alone do not show it."""
        return min(
            (
                entry.first_offset
                for index in self.indexes.values()
                for entry in index.entries
                if start <= entry.first_offset < offset <= entry.last_offset
            ),
            default=None,
        )

    def stable_start(self, start: int, limit: int) -> int:
        """Where :func:`clean_cut` may start scanning: the newest remembered state
        in [start, limit] with no transaction open (else ``start``)."""
        clean = [o for o, t in self.marks.items() if start <= o <= limit and not t.open]
        return max(clean, default=start)

    # -- segments going --------------------------------------------------------------
    def drop_segment(self, base_offset: int, next_base: int) -> None:
        """A segment was deleted (retention, DeleteRecords): forget its index
        (its file went with the segment) and the marks inside it."""
        self.indexes.pop(base_offset, None)
        if base_offset in self._bases:
            self._bases.remove(base_offset)
        for offset in [o for o in self.marks if o < next_base]:
            if len(self.marks) > 1:
                del self.marks[offset]

    def swapped(self, bases: list[int]) -> None:
        """Cleaned segments replaced those of ``bases`` (the first one's name
        stays): load the cleaned ``.txnindex``, forget the others."""
        for base in bases:
            self._drop_index(base)
        path = os.path.join(self.directory, segment_name(bases[0]) + TXNINDEX_SUFFIX)
        index, _intact = TxnIndexFile.load(self.fileops, path)
        if index.entries:
            self._put_index(bases[0], index)

    def reset(self, base_offset: int) -> None:
        """Every segment went; the log restarts empty at ``base_offset``."""
        for index in self.indexes.values():
            index.remove()
        self.indexes.clear()
        self._bases.clear()
        self.tracker = TxnTracker()
        self.marks = {base_offset: TxnTracker()} if self.enabled else {}
        if self.enabled:
            self.write_state(base_offset, self.tracker)

    def truncate(self, segments: list[Segment], new_end: int) -> None:
        """The log was cut at ``new_end`` (a batch boundary): trim the indexes and
        rebuild the open transactions from the newest mark below the cut."""
        for base in list(self._bases):
            index = self.indexes[base]
            if base >= new_end:
                index.remove()
                self._drop_index(base)
            else:
                index.truncate_from(new_end)
                if not index.entries:
                    self._drop_index(base)
        if not self.enabled:
            return
        for index in self.unsynced():
            index.sync()  # the state file below says they are durable
        below = [o for o in self.marks if o <= new_end]
        start = max(below) if below else segments[0].base_offset
        self.tracker = self.marks[start].copy() if start in self.marks else TxnTracker()
        self.marks = {o: t for o, t in self.marks.items() if o <= start}
        self._replay(segments, start, new_end, rebuild=False)
        self.marks[new_end] = self.tracker.copy()
        self.write_state(new_end, self.tracker)

    # -- durability --------------------------------------------------------------
    def unsynced(self) -> list[TxnIndexFile]:
        """Indexes with entries not fsynced yet."""
        return [i for i in self.indexes.values() if i.unsynced]

    def checkpoint_image(self, recovery_point: int) -> bytes | None:
        """The state file's bytes for a checkpoint at ``recovery_point`` (the
        newest mark at or below it), None when there is nothing to write."""
        if not self.enabled:
            return None
        below = [o for o in self.marks if o <= recovery_point]
        if not below:
            return None
        offset = max(below)
        # older marks are no longer needed: a truncation below the recovery
        # point replays from the first segment instead
        for old in [o for o in self.marks if o < offset]:
            del self.marks[old]
        return _encode(self.marks[offset].image(offset))

    def write_state(self, offset: int, tracker: TxnTracker) -> None:
        """Write ``txn-state.json`` (atomically)."""
        self.fileops.write_file_atomic(self.state_path, _encode(tracker.image(offset)))

    def remove_state(self) -> None:
        """Delete ``txn-state.json`` (the partition goes)."""
        if self.enabled:
            self.fileops.unlink(self.state_path)

    # -- helpers -------------------------------------------------------------------
    def _index(self, base: int) -> TxnIndexFile:
        index = self.indexes.get(base)
        if index is None:
            path = os.path.join(self.directory, segment_name(base) + TXNINDEX_SUFFIX)
            index = TxnIndexFile(self.fileops, path)
            self._put_index(base, index)
        return index

    def _put_index(self, base: int, index: TxnIndexFile) -> None:
        if base not in self.indexes:
            bisect.insort(self._bases, base)
        self.indexes[base] = index

    def _drop_index(self, base: int) -> None:
        self.indexes.pop(base, None)
        if base in self._bases:
            self._bases.remove(base)


def clean_cut(segments: Iterable[Segment], start: int, limit: int) -> int:
    """The largest batch boundary in [start, limit] below which every transaction
    with a batch at or after ``start`` is complete (its marker is below it too);
    ``start`` if there is none. ``limit`` is at most the last stable offset, so the
    cut never holds an open transaction's batches (a snapshot's end)."""
    cut = start
    open_: set[int] = set()
    for seg in segments:
        if seg.next_offset <= start or seg.base_offset >= limit:
            continue
        found = seg.find(max(start, seg.base_offset))
        if found is None:
            continue
        for _position, header in seg.iter_headers(found[0]):
            if header.next_offset > limit:
                return cut
            if header.producer_id >= 0 and header.attributes & TXN_BITS:
                if header.attributes & CONTROL_BIT:
                    open_.discard(header.producer_id)
                else:
                    open_.add(header.producer_id)
            if not open_:
                cut = header.next_offset
    return cut


def _encode(image: dict[str, int | list[list[int]]]) -> bytes:
    return json.dumps(image).encode()
