"""The aborted-transaction index: ``<base>.txnindex`` beside each segment.

Kafka's ``TransactionIndex`` format: one fixed-size entry per ABORT marker written
to the segment, in marker order, big-endian, no header::

    +---------+-------------+--------------+-------------+--------------------+
    | version | producer_id | first_offset | last_offset | last_stable_offset |
    | int16=0 | int64       | int64        | int64       | int64              |
    +---------+-------------+--------------+-------------+--------------------+
      34 bytes per entry (Kafka ``AbortedTxn.TOTAL_SIZE``)

``first_offset`` is the transaction's first offset, ``last_offset`` its ABORT
marker's, ``last_stable_offset`` the partition's LSO once the marker was written (the
first offset of the next open transaction, else ``last_offset + 1``). A read_committed
Fetch answers the entries overlapping the range it returns, so the consumer drops
the aborted records (KIP-98). The file exists only for segments with an abort
(Kafka creates it lazily too); a torn tail (a size that is not a multiple of 34) is
cut on load.
"""

from __future__ import annotations

import contextlib
import os
import struct
from dataclasses import dataclass
from typing import Final

from storage.fileops import FileOps
from storage.segment import TXNINDEX_SUFFIX

__all__ = [
    "ENTRY_SIZE",
    "TXNINDEX_SUFFIX",
    "AbortedTxn",
    "TxnIndexFile",
    "decode_entries",
    "encode_entries",
]

_ENTRY: Final = struct.Struct(">hqqqq")
ENTRY_SIZE: Final = _ENTRY.size  # 34, as Kafka's
_VERSION: Final = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class AbortedTxn:
    """One aborted transaction: producer, first offset, marker offset, LSO after."""

    producer_id: int
    first_offset: int
    last_offset: int
    last_stable_offset: int


def encode_entries(entries: list[AbortedTxn]) -> bytes:
    """The bytes of ``entries`` in the ``.txnindex`` format."""
    return b"".join(
        _ENTRY.pack(
            _VERSION, e.producer_id, e.first_offset, e.last_offset, e.last_stable_offset
        )
        for e in entries
    )


def decode_entries(data: bytes) -> tuple[list[AbortedTxn], bool]:
    """The whole entries of ``data`` and whether it was intact (no torn tail, no
    unknown version; decoding stops at the first bad entry)."""
    entries: list[AbortedTxn] = []
    whole = len(data) - len(data) % ENTRY_SIZE
    for pos in range(0, whole, ENTRY_SIZE):
        version, pid, first, last, lso = _ENTRY.unpack_from(data, pos)
        if version != _VERSION or first > last:
            return entries, False
        entries.append(
            AbortedTxn(
                producer_id=pid,
                first_offset=first,
                last_offset=last,
                last_stable_offset=lso,
            )
        )
    return entries, whole == len(data)


class TxnIndexFile:
    """One segment's ``.txnindex``: its entries in memory, appended to on disk."""

    __slots__ = ("entries", "fileops", "path", "unsynced")

    def __init__(self, fileops: FileOps, path: str) -> None:
        self.fileops = fileops
        self.path = path
        self.entries: list[AbortedTxn] = []
        self.unsynced = False

    @classmethod
    def load(cls, fileops: FileOps, path: str) -> tuple[TxnIndexFile, bool]:
        """The file's entries (none if it is missing) and whether it was intact;
        a damaged file is rewritten with its good prefix."""
        index = cls(fileops, path)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return index, True
        index.entries, intact = decode_entries(data)
        if not intact:
            index.rewrite(index.entries)
        return index, intact

    def append(self, entry: AbortedTxn) -> None:
        """Write ``entry`` at the end of the file (created on the first abort)."""
        at = len(self.entries) * ENTRY_SIZE
        fd = self.fileops.open(self.path, os.O_WRONLY | os.O_CREAT)
        try:
            view = memoryview(encode_entries([entry]))
            done = 0
            while done < len(view):
                done += self.fileops.pwrite(fd, view[done:], at + done)
        finally:
            self.fileops.close(fd)
        self.entries.append(entry)
        self.unsynced = True

    def rewrite(self, entries: list[AbortedTxn]) -> None:
        """Replace the file's content with ``entries`` (atomically; no entries: the
        file goes)."""
        self.entries = list(entries)
        self.unsynced = False
        if entries:
            self.fileops.write_file_atomic(self.path, encode_entries(entries))
        else:
            self.remove()

    def truncate_from(self, offset: int) -> None:
        """Forget the aborts whose marker is at or after ``offset`` (Kafka
        ``TransactionIndex.truncateTo``)."""
        kept = [e for e in self.entries if e.last_offset < offset]
        if len(kept) != len(self.entries):
            self.rewrite(kept)

    def sync(self) -> None:
        """fsync appended entries (with the segment's own fsync)."""
        if not self.unsynced:
            return
        self.unsynced = False
        fd = self.fileops.open(self.path, os.O_RDONLY)
        try:
            self.fileops.fsync(fd)
        finally:
            self.fileops.close(fd)

    def remove(self) -> None:
        """Delete the file (its segment went)."""
        self.entries = []
        self.unsynced = False
        with contextlib.suppress(FileNotFoundError):
            self.fileops.unlink(self.path)
