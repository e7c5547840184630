"""The ``.txnindex`` files of a snapshot: checked like its segments, read for restore.

A snapshot made since transactions carries, beside each segment holding ABORT
markers, that segment's aborted-transaction entries in Kafka's ``.txnindex`` format
(storage/txn_index.py), listed in ``meta.json``'s ``txn_indexes`` with their size and
crc32c (storage/snapshot_meta.py). They are checked as the segments are: a size or
checksum mismatch means a copy in progress until the files settled, then damage; an
entry that is torn, or whose marker is not in its segment, makes the snapshot
invalid. A restore indexes them as they are (:func:`snapshot_aborted`), so the
restored partition lists the same aborted transactions as its source did.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import crc32c as _crc32c

from protocol.records import CONTROL_BIT, TRANSACTIONAL_BIT, BatchHeader
from storage.snapshot_files import check_entry, read_capped
from storage.snapshot_meta import (
    SegmentMeta,
    SnapshotIncomplete,
    SnapshotInvalid,
    SnapshotMeta,
)
from storage.txn_index import (
    ENTRY_SIZE,
    TXNINDEX_SUFFIX,
    AbortedTxn,
    decode_entries,
    encode_entries,
)

__all__ = [
    "check_txn_index_sizes",
    "encode_by_segment",
    "load_txn_indexes",
    "snapshot_aborted",
    "stable_prefix",
    "txn_index_mtimes",
]

Unfinished = Callable[[str, str], SnapshotIncomplete | SnapshotInvalid]
_MAX_BYTES = 64 * 1024 * 1024  # 2 million aborted transactions in one segment


def txn_index_mtimes(path: str, root: str, meta: SnapshotMeta) -> list[float]:
    """The modification times of the listed ``.txnindex`` files (safe to read).

    Raises:
        SnapshotIncomplete: one is missing (yet).
        SnapshotInvalid: one is not a regular file inside the data dir.
    """
    return [
        check_entry(os.path.join(path, idx.file), root).st_mtime
        for idx in meta.txn_indexes or ()
    ]


def check_txn_index_sizes(
    path: str, root: str, meta: SnapshotMeta, unfinished: Unfinished
) -> None:
    """Each listed ``.txnindex`` has the size ``meta.json`` gives it."""
    for idx in meta.txn_indexes or ():
        size = check_entry(os.path.join(path, idx.file), root).st_size
        if size != idx.size:
            raise unfinished(
                "size-mismatch", f"{idx.file} has {size} of {idx.size} bytes"
            )


def load_txn_indexes(
    path: str,
    root: str,
    meta: SnapshotMeta,
    segments: Sequence[SegmentMeta],
    unfinished: Unfinished,
) -> dict[int, AbortedTxn]:
    """ABORT marker offset -> entry, from every listed ``.txnindex``, checked.

    Raises:
        SnapshotIncomplete / SnapshotInvalid: a checksum differs (``unfinished``);
            an entry is torn or its marker lies outside its segment (invalid).
    """
    ends = {s.base_offset: s.last_offset for s in segments}
    out: dict[int, AbortedTxn] = {}
    for idx in meta.txn_indexes or ():
        file = os.path.join(path, idx.file)
        check_entry(file, root)
        data = read_capped(file, _MAX_BYTES + 1)
        if idx.crc32c is not None and _crc32c.crc32c(data) != idx.crc32c:
            raise unfinished("checksum-mismatch", f"{idx.file} crc32c differs")
        entries, intact = decode_entries(data)
        if not intact or not entries or len(data) % ENTRY_SIZE:
            raise SnapshotInvalid("bad-txn-index", f"{idx.file} is damaged")
        last = ends.get(idx.base_offset)
        for entry in entries:
            inside = last is None or entry.last_offset <= last
            if entry.last_offset < idx.base_offset or not inside:
                raise SnapshotInvalid(
                    "bad-txn-index",
                    f"{idx.file}: marker {entry.last_offset} is not in its segment",
                )
            out[entry.last_offset] = entry
    return out


def snapshot_aborted(
    path: str, root: str, meta: SnapshotMeta, segments: Sequence[SegmentMeta]
) -> dict[int, AbortedTxn] | None:
    """The entries a restore indexes (checked again: the files may have changed);
    None for a snapshot without ``txn_indexes`` (the markers' replay derives them).
    """
    if meta.txn_indexes is None:
        return None

    def invalid(reason: str, detail: str) -> SnapshotInvalid:
        return SnapshotInvalid(reason, detail)

    return load_txn_indexes(path, root, meta, segments, invalid)


def stable_prefix(headers: Sequence[BatchHeader]) -> int:
    """How many of ``headers`` (consecutive batches from a point where no
    transaction is open) may be kept so that no transaction is left open: the
    longest prefix after which every transaction with a batch in it has its
    marker in it too (a snapshot cut at an offset, ``snapshot restore
    --to-offset``)."""
    open_: set[int] = set()
    keep = 0
    for i, header in enumerate(headers):
        if header.producer_id >= 0 and header.attributes & CONTROL_BIT:
            open_.discard(header.producer_id)
        elif header.producer_id >= 0 and header.attributes & TRANSACTIONAL_BIT:
            open_.add(header.producer_id)
        if not open_:
            keep = i + 1
    return keep


def encode_by_segment(
    bases: Sequence[int], entries: Sequence[AbortedTxn]
) -> dict[str, bytes]:
    """``<base>.txnindex`` name -> bytes, each segment (of ``bases``, sorted) with
    the entries whose ABORT marker it holds (none: no file)."""
    found: dict[int, list[AbortedTxn]] = {}
    for entry in entries:
        base = max((b for b in bases if b <= entry.last_offset), default=None)
        if base is not None:
            found.setdefault(base, []).append(entry)
    return {
        f"{base:020d}{TXNINDEX_SUFFIX}": encode_entries(listed)
        for base, listed in sorted(found.items())
    }
