"""Values the partition log hands out: append/read results, segment and recovery info.

They live apart from :mod:`storage.partition_log` to keep that module readable;
import them from either place.
"""

from __future__ import annotations

from dataclasses import dataclass

from storage.recovery import SegmentRecovery

__all__ = [
    "AppendResult",
    "CopiedSegment",
    "PartitionRecovery",
    "ReadResult",
    "SegmentInfo",
    "SegmentRecovery",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class AppendResult:
    """Offsets assigned to an append (ProduceResponse fields)."""

    base_offset: int
    last_offset: int
    log_append_time_ms: int  # -1 for CreateTime topics
    log_start_offset: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadResult:
    """Whole batches for a fetch; ``buffers`` go to the socket as they are."""

    buffers: list[bytes | memoryview]
    size: int
    first_offset: int  # base offset of the first batch (-1 if nothing was read)
    next_offset: int  # offset after the last batch returned


@dataclass(frozen=True, slots=True, kw_only=True)
class SegmentInfo:
    """A segment as seen from outside (snapshots, admin, retention reports)."""

    base_offset: int
    last_offset: int  # base_offset - 1 if empty
    size: int
    max_timestamp: int
    path: str
    active: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class CopiedSegment:
    """A segment file placed in a snapshot directory."""

    file: str
    base_offset: int
    last_offset: int
    size: int
    linked: bool  # hard link (True) or byte copy of a prefix (False)


@dataclass(frozen=True, slots=True, kw_only=True)
class PartitionRecovery:
    """What opening a partition found and repaired (the broker logs it)."""

    topic: str
    partition: int
    clean: bool
    log_end_offset: int
    segments: list[SegmentRecovery]
    removed_segments: list[int]  # base offsets of segments dropped after a cut
    removed_files: list[str]  # stray temp / orphan files

    @property
    def truncated(self) -> bool:
        """Whether any data was cut or dropped."""
        return bool(self.removed_segments) or any(
            s.truncated_bytes for s in self.segments
        )
