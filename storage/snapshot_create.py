"""Creating partition snapshots (the format is drawn in :mod:`storage.snapshot_meta`).

:func:`create_snapshot` puts a partition's batches in ``[start, end)`` into a new
snapshot directory: closed segments hard-linked (copied where the file system
refuses), the active segment's committed prefix copied, optionally compressed as
stored, everything fsynced under ``.<snapshot_id>.tmp`` and then renamed into place,
so a watcher never sees a half-made snapshot.

``end`` is cut back to where no transaction is open (KIP-98): at or below the last
stable offset, at a batch boundary below which every transaction that has a batch
in the snapshot has its marker too. The ``.txnindex`` entries of the ABORT markers
in the snapshot are written beside the segment holding each marker.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol

import crc32c as _crc32c

from protocol.records import BatchHeader
from storage.errors import StorageError
from storage.snapshot_files import compress_file, iter_chunks, read_meta_bytes
from storage.snapshot_groups import (
    GroupOffset,
    encode_group_offsets,
    fit_group_offsets,
)
from storage.snapshot_meta import (
    CODECS,
    GROUP_OFFSETS_FILE,
    META_FILE,
    META_VERSION,
    SegmentMeta,
    SnapshotIncomplete,
    SnapshotInvalid,
    SnapshotMeta,
    parse_meta,
)
from storage.snapshot_txn import encode_by_segment
from storage.txn_index import AbortedTxn

_READ_BYTES: Final = 4 * 1024 * 1024


class _Read(Protocol):
    @property
    def buffers(self) -> Sequence[bytes | memoryview]: ...

    @property
    def next_offset(self) -> int: ...


class SnapshotSource(Protocol):
    """What creation needs of a partition log (storage's PartitionLog)."""

    @property
    def log_start_offset(self) -> int: ...

    def read(
        self, offset: int, max_bytes: int, *, upper_bound: int | None = None
    ) -> _Read: ...

    def link_or_copy_segments_to(
        self, dest_dir: str, end_offset: int, *, start_offset: int = 0
    ) -> Sequence[_Copied]: ...

    def stable_end(self, start: int, end: int) -> int: ...

    def aborted_entries(self, start: int, end: int) -> list[AbortedTxn]: ...


class _Copied(Protocol):
    @property
    def file(self) -> str: ...

    @property
    def base_offset(self) -> int: ...

    @property
    def last_offset(self) -> int: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateRequest:
    """One partition's snapshot to create."""

    snapshots_dir: str  # <data_dir>/snapshots
    dir_name: str  # the topic id (or name) directory
    snapshot_id: str
    topic: str
    topic_id: str
    partition: int
    partition_count: int
    end_offset: int  # exclusive: the high watermark at the consistent point
    compression: str = "none"
    ancestor: SnapshotMeta | None = None
    topic_configs: Mapping[str, str] = field(default_factory=dict)
    # the groups' commits, stored as group-offsets.json (None: no such file)
    group_offsets: Sequence[GroupOffset] | None = None
    leader_epoch: int | None = None  # the partition's leader epoch at the cut


def create_snapshot(
    log: SnapshotSource,
    req: CreateRequest,
    *,
    before_publish: Callable[[str], None] | None = None,
) -> tuple[str, SnapshotMeta]:
    """Write a snapshot directory; returns its final path and meta.

    ``before_publish(final_path)`` runs before the rename (the broker records the
    snapshot as its own there, so its watcher never ingests it).

    Raises:
        SnapshotInvalid: nothing to snapshot (reason ``empty``) or the ancestor's end
            is no longer in the log (``ancestor-gone``).
        StorageError: I/O failed (the temporary directory is removed).
    """
    if req.compression not in CODECS:
        raise SnapshotInvalid("bad-meta", f"unknown compression {req.compression!r}")
    start = log.log_start_offset
    if req.ancestor is not None:
        start = req.ancestor.last_offset + 1
        if start < log.log_start_offset:
            raise SnapshotInvalid(
                "ancestor-gone", f"offset {start} was deleted from the log"
            )
    if req.end_offset <= start:
        raise SnapshotInvalid("empty", f"no batches in [{start}, {req.end_offset})")
    end = log.stable_end(start, req.end_offset)
    if end <= start:
        raise SnapshotInvalid(
            "empty", f"a transaction is open from {start} (last stable offset)"
        )
    parent = os.path.join(req.snapshots_dir, req.dir_name)
    final = os.path.join(parent, req.snapshot_id)
    tmp = os.path.join(parent, f".{req.snapshot_id}.tmp")
    if os.path.exists(final):
        raise SnapshotInvalid("exists", final)
    os.makedirs(parent, exist_ok=True)
    _rmtree(tmp)
    try:
        meta = _fill(log, req, start, end, tmp)
        _fsync_dir(tmp)
        if before_publish is not None:
            before_publish(final)
        os.replace(tmp, final)
        _fsync_dir(parent)
    except OSError as exc:
        _rmtree(tmp)
        raise StorageError(f"creating snapshot {final}: {exc}") from exc
    except BaseException:
        _rmtree(tmp)
        raise
    return final, meta


def _fill(
    log: SnapshotSource, req: CreateRequest, start: int, end: int, tmp: str
) -> SnapshotMeta:
    copied = log.link_or_copy_segments_to(tmp, end, start_offset=start)
    if not copied:
        raise SnapshotInvalid("empty", f"no batches in [{start}, {end})")
    segments = []
    last: BatchHeader | None = None
    max_ts = -1
    for c in copied:
        path = os.path.join(tmp, c.file)
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        crc = 0
        try:
            for view, batches in iter_chunks(fd, "none", verify=False):
                crc = _crc32c.crc32c(view, crc)
                for _, h in batches:
                    max_ts = max(max_ts, h.max_timestamp)
                    last = h
            size = os.fstat(fd).st_size
            if req.compression != "none":
                data = compress_file(_pread_all(fd, size), req.compression)
        finally:
            os.close(fd)
        name = c.file
        if req.compression != "none":
            name = c.file + CODECS[req.compression]
            _write_new(os.path.join(tmp, name), data)
            os.unlink(path)
            size = len(data)
            crc = _crc_bytes(data)
        segments.append(
            SegmentMeta(
                file=name,
                base_offset=c.base_offset,
                last_offset=c.last_offset,
                size=size,
                crc32c=crc,
            )
        )
    assert last is not None
    txn_indexes = _write_txn_indexes(
        tmp, [s.base_offset for s in segments], log.aborted_entries(start, end)
    )
    group_file = None
    if req.group_offsets is not None:
        groups = fit_group_offsets(req.group_offsets, last.last_offset)
        _write_new(
            os.path.join(tmp, GROUP_OFFSETS_FILE),
            encode_group_offsets(req.topic, req.partition, groups),
        )
        group_file = GROUP_OFFSETS_FILE
    meta = SnapshotMeta(
        version=META_VERSION,
        last_offset=last.last_offset,
        last_term=last.partition_leader_epoch,
        ancestor_snapshot_id=None if req.ancestor is None else req.ancestor.snapshot_id,
        compression=req.compression,
        size=sum(s.size or 0 for s in segments),
        snapshot_id=req.snapshot_id,
        topic=req.topic,
        topic_id=req.topic_id,
        partition=req.partition,
        partition_count=req.partition_count,
        base_offset=segments[0].base_offset,
        max_timestamp=max_ts,
        created_at=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        segments=tuple(segments),
        topic_configs=dict(req.topic_configs),
        group_offsets=group_file,
        leader_epoch=req.leader_epoch,
        last_stable_offset=last.next_offset,
        txn_indexes=txn_indexes,
    )
    _write_new(os.path.join(tmp, META_FILE), meta.encode())
    return meta


def _write_txn_indexes(
    tmp: str, bases: list[int], entries: list[AbortedTxn]
) -> tuple[SegmentMeta, ...]:
    """One ``.txnindex`` per snapshot segment holding ABORT markers: the entries
    whose marker is in it, as the log's index has them."""
    out = []
    for name, data in encode_by_segment(bases, entries).items():
        _write_new(os.path.join(tmp, name), data)
        out.append(
            SegmentMeta(
                file=name,
                base_offset=int(name[:20]),
                size=len(data),
                crc32c=_crc_bytes(data),
            )
        )
    return tuple(out)


def _crc_bytes(data: bytes) -> int:
    return int(_crc32c.crc32c(data))


def _pread_all(fd: int, size: int) -> bytes:
    parts = []
    pos = 0
    while pos < size and (chunk := os.pread(fd, min(_READ_BYTES, size - pos), pos)):
        parts.append(chunk)
        pos += len(chunk)
    return b"".join(parts)


def _write_new(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(data)
        done = 0
        while done < len(view):
            done += os.write(fd, view[done:])
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _rmtree(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(path)


def read_snapshot_meta(path: str, root: str) -> SnapshotMeta:
    """Parse a snapshot directory's ``meta.json`` (no completeness check)."""
    try:
        return parse_meta(read_meta_bytes(path, root))
    except SnapshotIncomplete as exc:
        raise SnapshotInvalid(exc.reason, exc.detail) from exc
