"""Leader-epoch start offsets of one partition (``leader-epoch-checkpoint``).

Kafka's text format (``LeaderEpochCheckpointFile``), one partition per file::

    0                 <- format version
    2                 <- number of entries
    0 0               <- epoch, start offset (first offset written in that epoch)
    3 150

It answers OffsetForLeaderEpoch (``epoch_end_offset``). The file is rewritten
atomically when the log is rolled or closed; after an unclean stop, recovery drops
entries at or past the log end and re-derives epochs from the batches it re-scanned.
"""

from __future__ import annotations

import bisect
import os

from storage.fileops import FileOps

FILE_NAME = "leader-epoch-checkpoint"


class EpochCache:
    """Sorted (epoch, start_offset) pairs."""

    def __init__(self) -> None:
        self.epochs: list[int] = []
        self.starts: list[int] = []
        self.dirty = False

    @property
    def latest_epoch(self) -> int:
        """The newest epoch, -1 when none is known."""
        return self.epochs[-1] if self.epochs else -1

    def assign(self, epoch: int, start_offset: int) -> None:
        """Record that ``epoch`` began at ``start_offset`` (older epochs are ignored)."""
        if epoch < 0 or (self.epochs and epoch <= self.epochs[-1]):
            return
        self.epochs.append(epoch)
        self.starts.append(start_offset)
        self.dirty = True

    def truncate_from(self, end_offset: int) -> None:
        """Drop epochs that start at or after ``end_offset`` (the log was cut there)."""
        while self.starts and self.starts[-1] >= end_offset:
            self.epochs.pop()
            self.starts.pop()
            self.dirty = True

    def clear(self) -> None:
        """Forget every epoch (the log was reset)."""
        if self.epochs:
            self.epochs.clear()
            self.starts.clear()
            self.dirty = True

    def end_offset_for(self, epoch: int, log_end_offset: int) -> tuple[int, int]:
        """Kafka ``LeaderEpochFileCache.endOffsetFor``: (epoch, end offset) or (-1, -1)."""
        if epoch < 0 or not self.epochs:
            return -1, -1
        if epoch == self.epochs[-1]:
            return epoch, log_end_offset
        higher = bisect.bisect_right(self.epochs, epoch)
        if higher >= len(self.epochs):
            return -1, -1
        if higher == 0:
            return epoch, self.starts[0]
        return self.epochs[higher - 1], self.starts[higher]

    def to_text(self) -> bytes:
        """The file image."""
        lines = ["0", str(len(self.epochs))]
        lines += [f"{e} {s}" for e, s in zip(self.epochs, self.starts, strict=True)]
        return ("\n".join(lines) + "\n").encode()

    def take_image(self) -> bytes | None:
        """The file image if it changed since the last save (then marked saved)."""
        if not self.dirty:
            return None
        self.dirty = False
        return self.to_text()

    def save(self, fileops: FileOps, directory: str) -> None:
        """Rewrite the checkpoint file atomically if anything changed."""
        if self.dirty:
            fileops.write_file_atomic(
                os.path.join(directory, FILE_NAME), self.to_text()
            )
            self.dirty = False

    @classmethod
    def load(cls, directory: str) -> EpochCache:
        """Read the checkpoint file; a missing or unreadable one gives an empty cache."""
        cache = cls()
        try:
            with open(os.path.join(directory, FILE_NAME), encoding="ascii") as f:
                lines = f.read().split("\n")
            count = int(lines[1])
            for line in lines[2 : 2 + count]:
                epoch, start = (int(x) for x in line.split())
                cache.assign(epoch, start)
        except (OSError, ValueError, IndexError, UnicodeDecodeError):
            return cls()
        cache.dirty = False
        return cache
