"""A partition log's transaction queries: the last stable offset and aborted ones.

KIP-98 as the log answers it: the first unstable offset and the last stable offset
(a read_committed Fetch reads below it, the cleaner cleans below it), the aborted
transactions of a Fetch range (from the ``.txnindex`` files), a snapshot's cut with
no transaction open, and each producer's epoch. The bookkeeping itself is
:class:`~storage.transactions.PartitionTxns` (the log's ``_txns``); the writes (a
transactional batch, a marker) are appends, in :mod:`storage.partition_log`.
"""

from __future__ import annotations

from storage.log_state import LogState, io_error
from storage.txn_index import AbortedTxn

__all__ = ["LogTxnQueries"]


class LogTxnQueries(LogState):
    """The transaction side of :class:`~storage.partition_log.PartitionLog`."""

    @property
    def first_unstable_offset(self) -> int | None:
        """First offset of the oldest open transaction (None: none is open)."""
        return self._txns.tracker.first_unstable_offset

    def last_stable_offset(self, high_watermark: int) -> int:
        """The last stable offset: min(first unstable offset, ``high_watermark``)
        (KIP-98; a read_committed consumer reads below it)."""
        first = self._txns.tracker.first_unstable_offset
        return high_watermark if first is None or first >= high_watermark else first

    def aborted_transactions(self, start: int, upper: int) -> list[AbortedTxn]:
        """Aborted transactions overlapping [start, upper), from the
        ``.txnindex`` files (a read_committed Fetch's ``aborted_transactions``)."""
        if not self._txns.indexes:
            return []  # no abort in the log (every read_committed fetch asks)
        with self._lock:
            return self._txns.aborted(start, upper)

    def txn_producer_epoch(self, producer_id: int) -> int | None:
        """The epoch of a transactional producer in this partition (None: it
        never wrote a transactional batch or marker here)."""
        known = self._txns.tracker.producers.get(producer_id)
        return None if known is None else known[0]

    def stable_end(self, start: int, end: int) -> int:
        """Where a copy of [start, end) may end so that it holds no open
        transaction and every transaction it holds a batch of is complete in it:
        the largest such batch boundary at or below the last stable offset
        (``end`` itself for a partition that never took a transaction)."""
        with self._lock:
            if not self._txns.enabled:
                return end
            try:
                return self._txns.stable_end(
                    list(self._segments), start, self.last_stable_offset(end)
                )
            except OSError as exc:
                raise io_error(f"reading {self.directory}", exc) from exc

    def aborted_entries(self, start: int, end: int) -> list[AbortedTxn]:
        """The ``.txnindex`` entries whose ABORT marker is in [start, end)."""
        with self._lock:
            return self._txns.entries_between(start, end)

    def open_transactions(self) -> dict[int, int]:
        """Producer id -> first offset of each open transaction."""
        with self._lock:
            return dict(self._txns.tracker.open)
