"""Copying a partition's segments out, for snapshots.

Closed segments wholly inside the requested offset range are hard-linked (a
snapshot of closed segments costs no data copy); a segment the range cuts (the
active one, or one holding ``start_offset`` / ``end_offset``) is copied as a
whole-batch slice and named after its first batch's offset, so every file placed
is itself a valid segment: ``<base offset, 20 digits>.log``.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from typing import Final

from storage.errors import StorageError
from storage.fileops import FileOps
from storage.log_types import CopiedSegment
from storage.segment import LOG_SUFFIX, Segment
from storage.segment_set import SegmentSet

_LINK_REFUSED: Final = (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP)
_COPY_CHUNK: Final = 8 << 20


@dataclass(frozen=True, slots=True, kw_only=True)
class CopyStep:
    """One file to place: bytes [begin, stop) of a segment."""

    segment: Segment
    begin: int
    stop: int
    first_offset: int
    last_offset: int
    whole: bool  # the entire (closed) segment: hard-link it


def plan_copy(
    segments: SegmentSet, start_offset: int, end_offset: int
) -> list[CopyStep]:
    """Which byte ranges hold the batches in [start_offset, end_offset).

    Call with the log's lock held (it reads segment state).
    """
    plan: list[CopyStep] = []
    for seg in segments:
        if (
            seg.next_offset <= start_offset
            or seg.base_offset >= end_offset
            or seg.size == 0  # a segment compaction emptied
        ):
            continue
        if (
            seg is not segments.active
            and seg.base_offset >= start_offset
            and seg.next_offset <= end_offset
        ):
            plan.append(
                CopyStep(
                    segment=seg,
                    begin=0,
                    stop=seg.size,
                    first_offset=seg.base_offset,
                    # a cleaned segment's last batch may end before next_offset
                    last_offset=seg.last_batch_offset(),
                    whole=True,
                )
            )
            continue
        first = seg.find(max(start_offset, seg.base_offset))
        if first is None:
            continue
        position, header = first
        if header.base_offset < start_offset:  # start falls inside a batch: skip it
            position, first_offset = position + header.size, header.next_offset
        else:
            first_offset = header.base_offset
        boundary = seg.find(end_offset) if end_offset < seg.next_offset else None
        stop = seg.size if boundary is None else boundary[0]
        if stop > position:
            last = _last_offset_in(seg, position, stop)
            plan.append(
                CopyStep(
                    segment=seg,
                    begin=position,
                    stop=stop,
                    first_offset=first_offset,
                    last_offset=last,
                    whole=False,
                )
            )
    return plan


def _last_offset_in(seg: Segment, position: int, stop: int) -> int:
    """Last offset of the batches in ``[position, stop)`` of ``seg`` (compaction may
    leave a gap before the next batch, so it is read, not derived)."""
    last = -1
    start = max(position, seg.index.lookup_position(stop - 1))
    for _, header in seg.iter_headers(start, stop):
        last = header.last_offset
    return last


def execute_copy(
    fileops: FileOps, plan: list[CopyStep], fds: list[int], dest_dir: str
) -> list[CopiedSegment]:
    """Link or copy each planned range into ``dest_dir`` (``fds``: dups to read)."""
    fileops.makedirs(dest_dir)
    out: list[CopiedSegment] = []
    for fd, step in zip(fds, plan, strict=True):
        name = f"{step.first_offset:020d}{LOG_SUFFIX}"
        dest = os.path.join(dest_dir, name)
        linked = False
        if step.whole:
            try:
                fileops.link(step.segment.log_path, dest)
                linked = True
            except OSError as exc:
                if exc.errno not in _LINK_REFUSED:
                    raise
        if not linked:
            _copy_range(fileops, fd, step.begin, step.stop, dest)
        out.append(
            CopiedSegment(
                file=name,
                base_offset=step.first_offset,
                last_offset=step.last_offset,
                size=step.stop - step.begin,
                linked=linked,
            )
        )
    return out


def _copy_range(
    fileops: FileOps, src_fd: int, begin: int, stop: int, dest: str
) -> None:
    out = fileops.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        pos = begin
        while pos < stop:
            chunk = fileops.pread(src_fd, min(_COPY_CHUNK, stop - pos), pos)
            if not chunk:
                raise StorageError(f"segment shrank while copying to {dest}")
            view = memoryview(chunk)
            written = 0
            while written < len(view):
                written += fileops.pwrite(out, view[written:], pos - begin + written)
            pos += len(chunk)
        fileops.fsync(out)
    finally:
        fileops.close(out)
