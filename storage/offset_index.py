"""The sparse offset index of one segment (``<base>.index``), Kafka's format.

One entry per ``index.interval.bytes`` of log; all big-endian::

    +--------------------------+--------------------------+
    | relative_offset  int32   | position  int32          |   8 bytes, repeated
    +--------------------------+--------------------------+
    relative_offset = last offset of the indexed batch - segment base offset
    position        = byte position of that batch in the .log file

Both columns strictly increase. A lookup for offset ``o`` takes the last entry with
``relative_offset <= o - base`` and scans batch headers forward from its position
(Kafka ``OffsetIndex.java``). The file is written whole when a segment is rolled or
the log is closed; it is never trusted blindly: a file that is not a whole number of
entries, is not increasing, or points past the log is rebuilt from the log.
"""

from __future__ import annotations

import bisect
import struct
from array import array
from typing import Final

ENTRY: Final = struct.Struct(">ii")
ENTRY_SIZE: Final = ENTRY.size


class OffsetIndex:
    """In-memory columns of one segment's offset index."""

    __slots__ = ("base_offset", "positions", "relative_offsets")

    def __init__(self, base_offset: int) -> None:
        self.base_offset = base_offset
        self.relative_offsets = array("q")
        self.positions = array("q")

    def __len__(self) -> int:
        return len(self.positions)

    def append(self, offset: int, position: int) -> None:
        """Add an entry (callers add them in increasing order)."""
        self.relative_offsets.append(offset - self.base_offset)
        self.positions.append(position)

    def lookup(self, offset: int) -> int:
        """Position to start scanning from to find ``offset`` (0 if none is lower)."""
        i = bisect.bisect_right(self.relative_offsets, offset - self.base_offset) - 1
        return self.positions[i] if i >= 0 else 0

    def lookup_position(self, position: int) -> int:
        """Largest indexed position ``<= position`` (0 if none)."""
        i = bisect.bisect_right(self.positions, position) - 1
        return self.positions[i] if i >= 0 else 0

    def last_position(self) -> int:
        """Position of the last entry (0 if empty)."""
        return self.positions[-1] if self.positions else 0

    def to_bytes(self) -> bytes:
        """The file image."""
        out = bytearray(len(self) * ENTRY_SIZE)
        for i, (rel, pos) in enumerate(
            zip(self.relative_offsets, self.positions, strict=True)
        ):
            ENTRY.pack_into(out, i * ENTRY_SIZE, rel, pos)
        return bytes(out)

    @classmethod
    def from_bytes(
        cls, data: bytes, base_offset: int, log_size: int
    ) -> OffsetIndex | None:
        """Parse and sanity-check a file image; ``None`` if it must be rebuilt."""
        if len(data) % ENTRY_SIZE:
            return None
        index = cls(base_offset)
        last_rel = last_pos = -1
        for rel, pos in ENTRY.iter_unpack(data):
            if rel <= last_rel or pos <= last_pos or pos >= log_size or rel < 0:
                return None
            index.relative_offsets.append(rel)
            index.positions.append(pos)
            last_rel, last_pos = rel, pos
        return index
