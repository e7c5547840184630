"""A partition log's side of log compaction: what may be cleaned, and the swap.

The cleaner (storage/log_cleaner.py) asks :meth:`LogCleaning.compaction_view` which
closed segments it may clean, builds the cleaned segment outside the log lock
(storage/cleaner_build.py), and hands it to :meth:`LogCleaning.swap_cleaned`, which
puts it in place of the group if the log still holds that group as it was
(storage/cleaner_swap.py does the renames).
"""

from __future__ import annotations

from storage.cleaner_swap import CleanedSegment, swap_in
from storage.log_state import io_error
from storage.partition_txns import LogTxnQueries
from storage.segment import Segment

__all__ = ["LogCleaning"]


class LogCleaning(LogTxnQueries):
    """The cleaner's view of a partition log and its swap of cleaned segments."""

    def compaction_view(self, upto: int | None = None) -> tuple[list[Segment], int]:
        """Every segment (oldest first, the last one active) and how many of the
        first ones the cleaner may clean: closed and wholly below ``upto``, the
        durable offset (only fsynced data is cleaned, so the recovery point can be
        moved past it before a swap) and the first unstable offset (an open
        transaction's batches are never cleaned: Kafka's
        ``firstUncleanableDirtyOffset``)."""
        with self._lock:
            self._check_writable()
            limit = self._durable if upto is None else min(upto, self._durable)
            limit = self.last_stable_offset(limit)
            segments = list(self._segments)
            count = 0
            for seg in segments[:-1]:
                if seg.next_offset > limit:
                    break
                count += 1
            return segments, count

    def swap_cleaned(self, group: list[Segment], writer: CleanedSegment) -> bool:
        """Replace ``group`` (consecutive closed segments) by the cleaned segment
        ``writer`` wrote (storage/cleaner_swap.py); False (nothing done) if the
        group is no longer in the log as it was (retention, truncation, a reset or
        a close came first) or the recovery point is below its end.

        Raises:
            StorageIOError: a rename or unlink failed (the log is marked failed;
                reopening it finishes the swap).
        """
        with self._lock:
            if self._closed or self._failed is not None:
                return False
            current = list(self._segments)
            index = next((i for i, s in enumerate(current) if s is group[0]), -1)
            run = current[index : index + len(group)]
            if (
                index < 0
                or index + len(group) >= len(current)  # never the active segment
                or any(a is not b for a, b in zip(run, group, strict=True))
                or self._recovery_point < group[-1].next_offset
            ):
                return False
            end = group[-1].next_offset
            try:
                cleaned = swap_in(self.fileops, self.directory, group, writer)
            except OSError as exc:
                self._failed = (
                    f"swapping cleaned segments failed: {exc.strerror or exc}"
                )
                raise io_error(
                    f"swapping cleaned segments in {self.directory}", exc
                ) from exc
            cleaned.next_offset = end
            cleaned.created_ms = group[-1].created_ms
            self._segments.replace_run(index, len(group), cleaned)
            self._txns.swapped([s.base_offset for s in group])
            for seg in group:
                self._unsynced.pop(seg.base_offset, None)
            return True
