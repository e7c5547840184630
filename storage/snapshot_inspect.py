"""Checking a snapshot directory: complete (still being copied?) and valid.

:func:`precheck_snapshot` is the cheap pass (names, ``meta.json``, file sizes) a
watcher runs often; :func:`inspect_snapshot` waits out copies in progress (sizes and
checksums of every segment, as ``meta.json`` records them) and validates the
batches: every CRC, offsets increasing from ``base_offset`` to ``last_offset``
(dense, except for the gaps log compaction leaves), the last batch's epoch equal to
``last_term``; and the ``.txnindex`` files and ``group-offsets.json`` that
``meta.json`` names (:mod:`storage.snapshot_txn`, :mod:`storage.snapshot_groups`).
It never trusts events, only what the files hold. The result, a :class:`Snapshot`,
crosses from the validating worker process as JSON (:func:`snapshot_to_json`).
Everything here is re-exported by :mod:`storage.snapshot`.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

import crc32c as _crc32c

from protocol.records import BatchHeader
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
    txn_index_mtimes,
)

__all__ = [
    "Snapshot",
    "inspect_snapshot",
    "precheck_snapshot",
    "snapshot_from_json",
    "snapshot_to_json",
]

_READ_BYTES: Final = 4 * 1024 * 1024  # one pread of a checksum pass


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
