"""The ordered segments of one partition: oldest first, the last one active.

``SegmentSet`` keeps the segments and their base offsets side by side (the bases
are what a read bisects), and answers the questions asked of the whole set: the
active segment, where the log ends, its size and newest timestamp. It changes only
at the ends: a roll or an adopted segment appends, retention and DeleteRecords pop
the oldest, a truncation or an adopt over an empty active segment replaces the
active one, log compaction replaces a run of closed segments by their cleaned
copy, and a reset replaces everything.

Readers that take no lock (the event loop asking where a log ends while a worker
thread truncates or adopts) must never see it empty: every change that takes a
segment out and puts others in makes the new list first and swaps it in with one
assignment.

It holds segments and nothing else: it does not open, close or fsync them, and it
takes no lock. ``PartitionLog`` owns the locking, the descriptors (through
``storage.fd_cache``), checkpoints and epochs, and calls it with its lock held.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator

from storage.segment import Segment

__all__ = ["SegmentSet"]


class SegmentSet:
    """One partition's segments, oldest first; never empty once the log is open."""

    __slots__ = ("_bases", "_segments")

    def __init__(self, segments: Iterable[Segment] = ()) -> None:
        self._segments: list[Segment] = list(segments)
        self._bases: list[int] = [s.base_offset for s in self._segments]

    def __len__(self) -> int:
        return len(self._segments)

    def __iter__(self) -> Iterator[Segment]:
        return iter(self._segments)

    @property
    def active(self) -> Segment:
        """The segment appends go to (the newest)."""
        return self._segments[-1]

    @property
    def first(self) -> Segment:
        """The oldest segment."""
        return self._segments[0]

    @property
    def base_offset(self) -> int:
        """Base offset of the oldest segment."""
        return self._segments[0].base_offset

    @property
    def end_offset(self) -> int:
        """The offset the next appended record will get."""
        return self._segments[-1].next_offset

    @property
    def size_bytes(self) -> int:
        """Bytes of all segment files."""
        return sum(s.size for s in self._segments)

    @property
    def max_timestamp(self) -> int:
        """Largest batch max_timestamp over all segments (-1 if none)."""
        return max((s.max_timestamp for s in self._segments), default=-1)

    def closed(self) -> list[Segment]:
        """Every segment but the active one (they never change again)."""
        return self._segments[:-1]

    def from_offset(self, offset: int) -> Iterator[Segment]:
        """The segments from the one whose base offset is the greatest at or below
        ``offset`` (the oldest if there is none) to the active one."""
        segments = self._segments
        for i in range(
            max(bisect.bisect_right(self._bases, offset) - 1, 0), len(segments)
        ):
            yield segments[i]

    def append(self, seg: Segment) -> None:
        """Add ``seg`` as the new active segment."""
        self._segments.append(seg)
        self._bases.append(seg.base_offset)

    def pop_first(self) -> Segment:
        """Take the oldest segment out of the set (its files are the caller's)."""
        self._bases.pop(0)
        return self._segments.pop(0)

    def pop_active(self) -> Segment:
        """Take the active segment out of the set (its files are the caller's)."""
        self._bases.pop()
        return self._segments.pop()

    def extend(self, segments: Iterable[Segment]) -> None:
        """Add ``segments`` (oldest first) after the active one; the last becomes
        the active segment. One swap: a reader sees all of them or none."""
        added = list(segments)
        self._bases = self._bases + [s.base_offset for s in added]
        self._segments = self._segments + added

    def replace_active(self, segments: Iterable[Segment]) -> Segment:
        """Put ``segments`` (oldest first, at least one) where the active segment
        is, in one swap; the segment taken out (its files are the caller's)."""
        added = list(segments)
        if not added:
            raise ValueError("the active segment must be replaced by at least one")
        gone = self._segments[-1]
        self._bases = self._bases[:-1] + [s.base_offset for s in added]
        self._segments = self._segments[:-1] + added
        return gone

    def replace_run(self, index: int, count: int, segment: Segment) -> list[Segment]:
        """Put ``segment`` in place of the ``count`` segments from ``index`` (log
        compaction: a cleaned group), in one swap; the segments taken out."""
        gone = self._segments[index : index + count]
        self._segments = [
            *self._segments[:index],
            segment,
            *self._segments[index + count :],
        ]
        self._bases = [s.base_offset for s in self._segments]
        return gone

    def replace_all(self, segments: Iterable[Segment]) -> None:
        """Make ``segments`` the whole set."""
        self._segments = list(segments)
        self._bases = [s.base_offset for s in self._segments]
