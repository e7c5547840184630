"""Partition snapshots: create, check (completeness, validation), plan and apply.

The on-disk format (directory layout and ``meta.json``) is drawn in
:mod:`storage.snapshot_meta`. This module works on one snapshot and one partition:

- :func:`create_snapshot` (:mod:`storage.snapshot_create`, re-exported) puts a
  partition's batches in ``[start, end)`` into a new
  snapshot directory: closed segments hard-linked (copied if the file system refuses),
  the active segment's committed prefix copied, optionally compressed, all under
  ``.<snapshot_id>.tmp`` and renamed into place once complete and fsynced.
- :func:`inspect_snapshot` waits out copies in progress (sizes and checksums of every
  segment, as ``meta.json`` records them) and validates the batches: every CRC,
  offsets increasing from ``base_offset`` to ``last_offset`` (dense, except for the
  gaps log compaction leaves), the last batch's epoch equal
  to ``last_term``; and the ``group-offsets.json`` that ``meta.json`` names
  (:mod:`storage.snapshot_groups`). It never trusts events, only what the files hold.
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

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Protocol

import crc32c as _crc32c

from protocol.records import BatchHeader, iter_batches
from storage.errors import OffsetOutOfRange
from storage.snapshot_create import (  # re-exported: the snapshot API in one place
    CreateRequest,
    create_snapshot,
    read_snapshot_meta,
)
from storage.snapshot_files import (
    check_entry,
    file_crc32c,
    iter_chunks,
    list_segment_files,
    open_segment,
    read_meta_bytes,
)
from storage.snapshot_groups import parse_group_offsets, read_group_offsets_bytes
from storage.snapshot_meta import (
    META_FILE,
    SegmentMeta,
    SnapshotIncomplete,
    SnapshotInvalid,
    SnapshotMeta,
    is_utf8_name,
    parse_meta,
)
from storage.snapshot_txn import (
    check_txn_index_sizes,
    load_txn_indexes,
    snapshot_aborted,
    txn_index_mtimes,
)
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


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    """A complete, validated snapshot directory."""

    path: str
    meta: SnapshotMeta
    segments: tuple[SegmentMeta, ...]  # with last_offset and size filled in
    base_offset: int
    last_offset: int
    last_term: int
    max_timestamp: int
    stored_bytes: int


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


# -- inspection ----------------------------------------------------------------------


def precheck_snapshot(
    path: str, root: str, *, settle_s: float = 2.0, now: float | None = None
) -> None:
    """The cheap part of :func:`inspect_snapshot`: names, meta.json and file sizes.

    A copy in progress almost always fails here, so a watcher can call this often
    and leave the full pass (every byte read) for when the sizes add up.

    Raises:
        SnapshotIncomplete, SnapshotInvalid: as :func:`inspect_snapshot`.
    """
    _size_check(path, root, settle_s, now)


def _size_check(
    path: str, root: str, settle_s: float, now: float | None
) -> tuple[
    SnapshotMeta,
    tuple[SegmentMeta, ...],
    list[int],
    bool,
]:
    check_entry(path, root, directory=True)
    for name in os.listdir(path):
        if not is_utf8_name(name):
            raise SnapshotInvalid("non-utf8-name", repr(name))
    now = time.time() if now is None else now
    data = read_meta_bytes(path, root)
    newest = os.stat(os.path.join(path, META_FILE)).st_mtime
    try:
        meta = parse_meta(data)
    except SnapshotIncomplete as exc:
        # unparsable and untouched for settle_s: a broken file, not a copy
        raise _unfinished(now - newest >= settle_s)(exc.reason, exc.detail) from exc
    listed = (
        meta.segments
        if meta.segments is not None
        else list_segment_files(path, meta.compression)
    )
    sizes = []
    for seg in listed:
        st = check_entry(os.path.join(path, seg.file), root)
        newest = max(newest, st.st_mtime)
        sizes.append(st.st_size)
    for mtime in txn_index_mtimes(path, root, meta):
        newest = max(newest, mtime)
    groups: bytes | None = None
    if meta.group_offsets is not None:
        groups, mtime = read_group_offsets_bytes(path, root)
        newest = max(newest, mtime)
    settled = now - newest >= settle_s
    unfinished = _unfinished(settled)
    for seg, size in zip(listed, sizes, strict=True):
        if seg.size is not None and size != seg.size:
            raise unfinished(
                "size-mismatch", f"{seg.file} has {size} of {seg.size} bytes"
            )
    if sum(sizes) != meta.size:
        raise unfinished(
            "size-mismatch", f"segments hold {sum(sizes)} of {meta.size} bytes"
        )
    check_txn_index_sizes(path, root, meta, unfinished)
    if groups is not None:
        try:
            parse_group_offsets(groups, meta)
        except SnapshotIncomplete as exc:
            raise unfinished(exc.reason, exc.detail) from exc
    return meta, tuple(listed), sizes, settled


def _unfinished(
    settled: bool,
) -> Callable[[str, str], SnapshotIncomplete | SnapshotInvalid]:
    """What a mismatch means: still copying until the files settled, then damaged."""

    def unfinished(reason: str, detail: str) -> SnapshotIncomplete | SnapshotInvalid:
        return (
            SnapshotInvalid(reason, detail)
            if settled
            else SnapshotIncomplete(reason, detail)
        )

    return unfinished


def inspect_snapshot(
    path: str, root: str, *, settle_s: float = 2.0, now: float | None = None
) -> Snapshot:
    """Check a snapshot directory is complete and valid.

    ``root`` is the real path of the data dir (symlinks must stay inside it).
    Mismatched sizes or checksums mean a copy in progress while any file changed in
    the last ``settle_s`` seconds, and a damaged snapshot after that.

    Raises:
        SnapshotIncomplete: wait and look again.
        SnapshotInvalid: never apply it (``reason`` says why).
    """
    meta, listed, sizes, settled = _size_check(path, root, settle_s, now)
    unfinished = _unfinished(settled)
    # Uncompressed segments with a crc32c are checksummed in the validation pass
    # (one read); the rest first, on their own.
    fused = meta.compression == "none"
    for seg in listed:
        if (seg.crc32c is None or fused) and seg.sha256 is None:
            continue
        fd = open_segment(os.path.join(path, seg.file), root)
        try:
            _check_digest(fd, seg, unfinished)
        finally:
            os.close(fd)
    try:
        snap, crcs = _validate(path, root, meta, listed, sizes)
    except SnapshotInvalid as exc:
        if fused:  # a checksum mismatch says "still copying" (or damaged) first
            _check_crcs(path, root, listed, unfinished)
        if meta.segments is None and not settled:
            raise SnapshotIncomplete(exc.reason, exc.detail) from exc
        raise
    for seg, crc in zip(listed, crcs, strict=True):
        if fused and seg.crc32c is not None and crc != seg.crc32c:
            raise unfinished(
                "checksum-mismatch", f"{seg.file} crc32c {crc} != {seg.crc32c}"
            )
    load_txn_indexes(path, root, meta, snap.segments, unfinished)
    return snap


def _check_crcs(
    path: str,
    root: str,
    listed: tuple[SegmentMeta, ...],
    unfinished: Callable[[str, str], SnapshotIncomplete | SnapshotInvalid],
) -> None:
    for seg in listed:
        if seg.crc32c is None:
            continue
        fd = open_segment(os.path.join(path, seg.file), root)
        try:
            _check_digest(fd, seg, unfinished)
        finally:
            os.close(fd)


def _check_digest(
    fd: int,
    seg: SegmentMeta,
    unfinished: Callable[[str, str], SnapshotIncomplete | SnapshotInvalid],
) -> None:
    if seg.crc32c is not None:
        _, crc = file_crc32c(fd)
        if crc != seg.crc32c:
            raise unfinished(
                "checksum-mismatch", f"{seg.file} crc32c {crc} != {seg.crc32c}"
            )
    if seg.sha256 is not None:
        sha = hashlib.sha256()
        pos = 0
        while chunk := os.pread(fd, _READ_BYTES, pos):
            sha.update(chunk)
            pos += len(chunk)
        if sha.hexdigest() != seg.sha256:
            raise unfinished("checksum-mismatch", f"{seg.file} sha256 differs")


def _validate(
    path: str,
    root: str,
    meta: SnapshotMeta,
    listed: tuple[SegmentMeta, ...],
    sizes: list[int],
) -> tuple[Snapshot, list[int]]:
    expected = listed[0].base_offset
    if meta.base_offset is not None and meta.base_offset != expected:
        raise SnapshotInvalid(
            "offsets", f"base_offset {meta.base_offset} but first segment {expected}"
        )
    last: BatchHeader | None = None
    max_ts = -1
    resolved = []
    crcs = []
    for seg, size in zip(listed, sizes, strict=True):
        if seg.base_offset < expected:
            raise SnapshotInvalid(
                "offsets",
                f"{seg.file} starts at {seg.base_offset}, expected {expected}",
            )
        fd = open_segment(os.path.join(path, seg.file), root)
        seg_last: BatchHeader | None = None
        crc = 0
        try:
            for view, batches in iter_chunks(fd, meta.compression, verify=True):
                crc = _crc32c.crc32c(view, crc)
                for _, header in batches:
                    if header.base_offset < expected:  # compaction: gaps
                        raise SnapshotInvalid(
                            "offsets",
                            f"{seg.file}: batch at {header.base_offset}, expected {expected}",
                        )
                    expected = header.next_offset
                    max_ts = max(max_ts, header.max_timestamp)
                    seg_last = header
        finally:
            os.close(fd)
        if seg_last is None:
            raise SnapshotInvalid("empty-segment", seg.file)
        if seg.last_offset is not None and seg.last_offset != seg_last.last_offset:
            raise SnapshotInvalid(
                "offsets",
                f"{seg.file} ends at {seg_last.last_offset}, meta says {seg.last_offset}",
            )
        resolved.append(
            SegmentMeta(
                file=seg.file,
                base_offset=seg.base_offset,
                last_offset=seg_last.last_offset,
                size=size,
                crc32c=seg.crc32c,
                sha256=seg.sha256,
            )
        )
        last = seg_last
        crcs.append(crc)
    assert last is not None
    if last.last_offset != meta.last_offset:
        raise SnapshotInvalid(
            "offsets",
            f"batches end at {last.last_offset}, last_offset is {meta.last_offset}",
        )
    if last.partition_leader_epoch != meta.last_term:
        raise SnapshotInvalid(
            "last-term-mismatch",
            f"last batch epoch {last.partition_leader_epoch}, last_term {meta.last_term}",
        )
    snap = Snapshot(
        path=path,
        meta=meta,
        segments=tuple(resolved),
        base_offset=listed[0].base_offset,
        last_offset=meta.last_offset,
        last_term=meta.last_term,
        max_timestamp=max_ts,
        stored_bytes=sum(sizes),
    )
    return snap, crcs


def snapshot_to_json(snap: Snapshot) -> dict[str, object]:
    """A validated snapshot as JSON (it crosses from the validating worker process)."""
    return {
        "path": snap.path,
        "meta": snap.meta.to_json(),
        "segments": [seg.to_json() for seg in snap.segments],
        "base_offset": snap.base_offset,
        "last_offset": snap.last_offset,
        "last_term": snap.last_term,
        "max_timestamp": snap.max_timestamp,
        "stored_bytes": snap.stored_bytes,
    }


def snapshot_from_json(obj: Mapping[str, object]) -> Snapshot:
    """Inverse of :func:`snapshot_to_json`.

    Raises:
        SnapshotInvalid: it is not one (anything but what snapshot_to_json wrote).
    """
    meta = parse_meta(json.dumps(obj.get("meta")).encode())
    # meta.json's own parser checks the segment entries too
    listed = parse_meta(
        json.dumps({**meta.to_json(), "segments": obj.get("segments")}).encode()
    ).segments
    numbers = {}
    for key in (
        "base_offset",
        "last_offset",
        "last_term",
        "max_timestamp",
        "stored_bytes",
    ):
        value = obj.get(key)
        if not isinstance(value, int) or isinstance(value, bool):
            raise SnapshotInvalid("bad-meta", f"{key} is not an integer")
        numbers[key] = value
    path = obj.get("path")
    if not isinstance(path, str) or listed is None:
        raise SnapshotInvalid("bad-meta", "not a validated snapshot")
    return Snapshot(path=path, meta=meta, segments=listed, **numbers)


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
    "read_batches",
    "read_snapshot_meta",
]
