"""Partition snapshots: create, check (completeness, validation), plan and apply.

The on-disk format (directory layout and ``meta.json``) is drawn in
:mod:`storage.snapshot_meta`. This module works on one snapshot and one partition:

- :func:`create_snapshot` (:mod:`storage.snapshot_create`, re-exported) puts a
  partition's batches in ``[start, end)`` into a new
  snapshot directory: closed segments hard-linked (copied if the file system refuses),
  the active segment's committed prefix copied, optionally compressed, all under
  ``.<snapshot_id>.tmp`` and renamed into place once complete and fsynced.
- :func:`inspect_snapshot` and :func:`precheck_snapshot`
  (:mod:`storage.snapshot_inspect`, re-exported) check that a snapshot directory is
  complete (not still being copied) and valid, batch by batch.
- :func:`plan_apply` compares a snapshot with a partition log (batch CRCs at the
  same offsets) and says what to do: apply from the log end, nothing
  (already-present), nothing ever (diverged), or wait for an ancestor.
- :func:`apply_plan` appends the missing batches verbatim, in whole-batch chunks,
  then fsyncs. A crash leaves the log without the new batches or with a prefix of
  them (recovery cuts a torn tail at a batch boundary); the next plan sees the
  prefix as an identical overlap and appends the rest, so offsets never repeat.

Everything here is synchronous; the broker runs it in worker threads, holding the
partition's append order (no producer appends between plan and apply).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Protocol

from protocol.records import BatchHeader, iter_batches
from storage.errors import OffsetOutOfRange
from storage.snapshot_create import (  # re-exported: the snapshot API in one place
    CreateRequest,
    create_snapshot,
    read_snapshot_meta,
)
from storage.snapshot_files import iter_chunks, open_segment
from storage.snapshot_inspect import (  # re-exported: the snapshot API in one place
    Snapshot,
    inspect_snapshot,
    precheck_snapshot,
    snapshot_from_json,
    snapshot_to_json,
)
from storage.snapshot_meta import SegmentMeta
from storage.snapshot_txn import snapshot_aborted
from storage.txn_index import AbortedTxn

BatchRef = tuple[int, int, int]  # (base_offset, last_offset, crc)
_READ_BYTES: Final = 4 * 1024 * 1024
_SYNC_EVERY: Final = 16 * 1024 * 1024


class Status(StrEnum):
    """Ingest status of a snapshot (persisted; shown by ``snapshot list``)."""

    WAITING = "waiting"  # incomplete: still being copied
    INVALID = "invalid"
    WAITING_FOR_ANCESTOR = "waiting-for-ancestor"
    APPLYING = "applying"
    APPLIED = "applied"
    ALREADY_PRESENT = "already-present"
    DIVERGED = "diverged"
    CREATED = "created"  # made by this broker: never ingested by it
    HANDED_OVER = "handed-over"  # sent to the partition's leader (cluster mode)


class LogView(Protocol):
    """What planning and applying need of a partition log (storage's PartitionLog)."""

    @property
    def log_start_offset(self) -> int: ...

    @property
    def log_end_offset(self) -> int: ...

    def read(
        self, offset: int, max_bytes: int, *, upper_bound: int | None = None
    ) -> _Read: ...


class _Read(Protocol):
    @property
    def buffers(self) -> Sequence[bytes | memoryview]: ...

    @property
    def next_offset(self) -> int: ...


# -- reading batches ------------------------------------------------------------------


def snapshot_chunks(
    snap: Snapshot, start: int, root: str, *, verify: bool = True
) -> Iterator[tuple[memoryview, list[tuple[int, BatchHeader]]]]:
    """Runs of whole batches of ``snap`` whose base offset is >= ``start``."""
    return segment_chunks(
        snap.path, snap.meta.compression, snap.segments, start, root, verify=verify
    )


def segment_chunks(
    path: str,
    compression: str,
    segments: Sequence[SegmentMeta],
    start: int,
    root: str,
    *,
    verify: bool = True,
) -> Iterator[tuple[memoryview, list[tuple[int, BatchHeader]]]]:
    """Runs of whole batches of the segment files in ``path`` from offset ``start``."""
    for seg in segments:
        if seg.last_offset is not None and seg.last_offset < start:
            continue
        fd = open_segment(os.path.join(path, seg.file), root)
        try:
            for view, batches in iter_chunks(fd, compression, verify=verify):
                keep = [(p, h) for p, h in batches if h.base_offset >= start]
                if not keep:
                    continue
                first = keep[0][0]
                yield view[first:], [(p - first, h) for p, h in keep]
        finally:
            os.close(fd)


def snapshot_refs(snap: Snapshot, lo: int, hi: int, root: str) -> list[BatchRef]:
    """(base, last, crc) of the snapshot's batches with lo <= base < hi."""
    out: list[BatchRef] = []
    for _, batches in snapshot_chunks(snap, lo, root):
        for _, h in batches:
            if h.base_offset >= hi:
                return out
            out.append((h.base_offset, h.last_offset, h.crc))
    return out


def log_refs(log: LogView, lo: int, hi: int) -> list[BatchRef]:
    """(base, last, crc) of the log's batches with lo <= base < hi."""
    out: list[BatchRef] = []
    offset = lo
    while offset < hi:
        try:
            result = log.read(offset, _READ_BYTES, upper_bound=hi)
        except OffsetOutOfRange:
            break
        if not result.buffers:
            break
        for buf in result.buffers:
            for _, h in iter_batches(buf):
                if lo <= h.base_offset < hi:
                    out.append((h.base_offset, h.last_offset, h.crc))
        if result.next_offset <= offset:
            break
        offset = result.next_offset
    return out


# -- planning and applying ------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """What applying a snapshot to a partition would do."""

    status: Status  # APPLY is APPLYING; else ALREADY_PRESENT / DIVERGED / WAITING_FOR_ANCESTOR
    reason: str = ""
    from_offset: int = -1  # first offset to append
    reset_start: bool = False  # empty partition: its log starts at base_offset
    log_end: int = -1  # the log end offset the plan was made against


def plan_apply(snap: Snapshot, log: LogView, root: str) -> Plan:
    """Decide how ``snap`` relates to ``log`` (see the module docstring)."""
    start, end = log.log_start_offset, log.log_end_offset
    base, last = snap.base_offset, snap.last_offset
    if end == 0:
        # No record ever: the log starts at base_offset. An incremental snapshot
        # waits for its ancestor instead, or the ancestor's batches could never
        # be applied below it.
        if snap.meta.incremental:
            return Plan(
                status=Status.WAITING_FOR_ANCESTOR,
                reason="partition is empty; the ancestor is not applied",
            )
        return Plan(
            status=Status.APPLYING, from_offset=base, reset_start=base != 0, log_end=end
        )
    if end < base:
        return Plan(
            status=Status.WAITING_FOR_ANCESTOR,
            reason=f"log ends at {end}, snapshot starts at {base}",
        )
    lo, hi = max(base, start), min(end, last + 1)
    if lo < hi:
        mine = log_refs(log, lo, hi)
        theirs = snapshot_refs(snap, lo, hi, root)
        if mine != theirs:
            where = next(
                (a[0] for a, b in zip(mine, theirs, strict=False) if a != b),
                min(len(mine), len(theirs)),
            )
            return Plan(
                status=Status.DIVERGED, reason=f"batches differ near offset {where}"
            )
    if end > last:
        return Plan(status=Status.ALREADY_PRESENT, reason=f"log already ends at {end}")
    if not _is_boundary(snap, end, root):
        return Plan(
            status=Status.DIVERGED, reason=f"log end {end} is inside a snapshot batch"
        )
    return Plan(status=Status.APPLYING, from_offset=end, log_end=end)


def _is_boundary(snap: Snapshot, offset: int, root: str) -> bool:
    if offset == snap.base_offset:
        return True
    for _, batches in snapshot_chunks(snap, offset, root):
        return bool(batches) and batches[0][1].base_offset == offset
    return False


class VerbatimLog(LogView, Protocol):
    """A log that takes already-offset batches (storage's PartitionLog)."""

    def append_verbatim(
        self,
        batches: bytes | bytearray | memoryview,
        *,
        aborted: dict[int, AbortedTxn] | None = None,
    ) -> object: ...

    def reset_start(self, base_offset: int) -> None: ...

    def sync(self) -> int: ...


def apply_plan(
    log: VerbatimLog,
    snap: Snapshot,
    plan: Plan,
    root: str,
    *,
    throttle: Callable[[int], None] | None = None,
) -> int:
    """Append the snapshot's batches from ``plan.from_offset``; fsync; bytes appended.

    ``throttle(n)`` is called after each chunk of ``n`` bytes (the broker sleeps there
    to keep other partitions' latency low).

    Raises:
        StorageError: the log refused (OffsetMismatch if it moved since the plan).
    """
    if plan.status is not Status.APPLYING:
        return 0
    if plan.reset_start:
        log.reset_start(plan.from_offset)
    aborted = aborted_of(snap, root)
    written = unsynced = 0
    # Validated already; append_verbatim checks every CRC again as it writes.
    for view, batches in snapshot_chunks(snap, plan.from_offset, root, verify=False):
        if not batches:
            continue
        log.append_verbatim(view, aborted=aborted)
        written += len(view)
        unsynced += len(view)
        if unsynced >= _SYNC_EVERY:  # spread writeback: no giant fsync at the end
            log.sync()
            unsynced = 0
        if throttle is not None:
            throttle(len(view))
    log.sync()
    return written


def aborted_of(snap: Snapshot, root: str) -> dict[int, AbortedTxn] | None:
    """The aborted transactions ``snap`` carries, by ABORT marker offset (None: an
    older snapshot without ``.txnindex`` files; the restore derives them)."""
    return snapshot_aborted(snap.path, root, snap.meta, snap.segments)


def read_batches(snap: Snapshot, start: int, root: str, limit: int) -> bytes | None:
    """The snapshot's batches from ``start`` as one buffer; None if over ``limit`` bytes."""
    parts: list[bytes] = []
    total = 0
    for view, _ in snapshot_chunks(snap, start, root, verify=False):
        total += len(view)
        if total > limit:
            return None
        parts.append(bytes(view))
    return b"".join(parts)


def apply_order(snaps: Sequence[Snapshot]) -> list[Snapshot]:
    """Snapshots of one partition in the order they apply: ancestors first, then by
    base and last offset (so a chain applies in order whatever order it arrived in)."""
    by_id = {s.meta.snapshot_id: s for s in snaps if s.meta.snapshot_id}

    def depth(s: Snapshot) -> int:
        n = 0
        seen = set()
        while s.meta.ancestor_snapshot_id in by_id and n < len(snaps):
            if s.meta.ancestor_snapshot_id in seen:
                break
            seen.add(s.meta.ancestor_snapshot_id)
            s = by_id[s.meta.ancestor_snapshot_id]
            n += 1
        return n

    return sorted(snaps, key=lambda s: (s.base_offset, depth(s), s.last_offset, s.path))


__all__ = [
    "CreateRequest",
    "Plan",
    "Snapshot",
    "Status",
    "aborted_of",
    "apply_order",
    "apply_plan",
    "create_snapshot",
    "inspect_snapshot",
    "plan_apply",
    "precheck_snapshot",
    "read_batches",
    "read_snapshot_meta",
    "snapshot_from_json",
    "snapshot_to_json",
]
