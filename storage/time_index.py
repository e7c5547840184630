"""The sparse time index of one segment (``<base>.timeindex``), Kafka's format.

An entry is added with an offset-index entry when the segment's max timestamp grew;
all big-endian::

    +------------------------------------+--------------------------+
    | timestamp  int64                   | relative_offset  int32   |   12 bytes
    +------------------------------------+--------------------------+
    timestamp       = max batch timestamp of the segment up to this entry
    relative_offset = last offset of the batch that raised it - segment base offset

Timestamps and offsets strictly increase (Kafka ``TimeIndex.java``). To find the first
batch with ``max_timestamp >= t`` take the last entry with ``timestamp < t``: every
batch up to its offset is older than ``t``, so the scan starts there.
"""

from __future__ import annotations

import bisect
import struct
from array import array
from typing import Final

ENTRY: Final = struct.Struct(">qi")
ENTRY_SIZE: Final = ENTRY.size


class TimeIndex:
    """In-memory columns of one segment's time index."""

    __slots__ = ("base_offset", "relative_offsets", "timestamps")

    def __init__(self, base_offset: int) -> None:
        self.base_offset = base_offset
        self.timestamps = array("q")
        self.relative_offsets = array("q")

    def __len__(self) -> int:
        return len(self.timestamps)

    def maybe_append(self, timestamp: int, offset: int) -> None:
        """Add an entry if ``timestamp`` is above the last one."""
        if not self.timestamps or timestamp > self.timestamps[-1]:
            self.timestamps.append(timestamp)
            self.relative_offsets.append(offset - self.base_offset)

    def offset_before(self, timestamp: int) -> int | None:
        """Offset of the last entry strictly older than ``timestamp`` (None if none)."""
        i = bisect.bisect_left(self.timestamps, timestamp) - 1
        return self.base_offset + self.relative_offsets[i] if i >= 0 else None

    def to_bytes(self) -> bytes:
        """The file image."""
        out = bytearray(len(self) * ENTRY_SIZE)
        for i, (ts, rel) in enumerate(
            zip(self.timestamps, self.relative_offsets, strict=True)
        ):
            ENTRY.pack_into(out, i * ENTRY_SIZE, ts, rel)
        return bytes(out)

    @classmethod
    def from_bytes(cls, data: bytes, base_offset: int) -> TimeIndex | None:
        """Parse and sanity-check a file image; ``None`` if it must be rebuilt."""
        if len(data) % ENTRY_SIZE:
            return None
        index = cls(base_offset)
        last_ts = None
        last_rel = -1
        for ts, rel in ENTRY.iter_unpack(data):
            if rel < last_rel or (last_ts is not None and ts <= last_ts) or rel < 0:
                return None
            index.timestamps.append(ts)
            index.relative_offsets.append(rel)
            last_ts, last_rel = ts, rel
        return index
