"""Transactions in log compaction: aborted data goes, markers go once idle (KIP-98).

Kafka's ``CleanedTransactionMetadata``, pure: fed the batches of a cleaning round in
log order, it says which go, given the aborted transactions the ``.txnindex`` files
list (``UnifiedLog.collectAbortedTransactions`` over the cleaned range):

* an aborted transaction "starts" at its first offset: from then on, a
  transactional data batch of its producer belongs to it and is removed (its
  records never enter the offset map either), until its ABORT marker;
* a transactional data batch of a producer with no aborted transaction going on
  belongs to a committed one;
* a COMMIT marker may go once no batch of its transaction was seen in the round; an
  ABORT marker once none of its transaction's batches was left (they were removed
  in an earlier round). A marker that may go is not removed at once: like a
  tombstone it first gets a delete horizon (``delete.retention.ms`` from the round
  that found it idle, KIP-534, in the batch header) and goes in the first round
  after it (a consumer reading the topic within that time sees the marker);
* the ``.txnindex`` of a cleaned segment keeps the entry of each ABORT marker it
  keeps, as the log had it. Kafka drops the entry a round earlier, when the marker
  becomes idle; keeping it while the marker stays answers read_committed fetches
  the same (the transaction has no record left) and keeps entry and marker
  together, so a snapshot restores both as they are.

Batches at or above the last stable offset are never cleaned: the round's upper
bound is below the first unstable offset (``PartitionLog.compaction_view``), as
Kafka's ``firstUncleanableDirtyOffset``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from protocol.records import CONTROL_BIT, TRANSACTIONAL_BIT, BatchHeader
from storage.txn_index import AbortedTxn
from storage.txn_state import MarkerInfo

__all__ = ["CleanedTxns", "MarkerVerdict"]


@dataclass(frozen=True, slots=True)
class MarkerVerdict:
    """A control batch's fate before its delete horizon is looked at: ``idle``
    (it may go once its horizon passed); ``entry``: its abort's index entry."""

    idle: bool
    entry: AbortedTxn | None


@dataclass(slots=True)
class _Aborted:
    entry: AbortedTxn
    seen_batch: bool = False


class CleanedTxns:
    """The transaction state of one pass over a cleaning round's batches."""

    __slots__ = ("_aborted", "_committed", "_ongoing")

    def __init__(self, aborted: Iterable[AbortedTxn]) -> None:
        self._aborted = deque(sorted(aborted, key=lambda e: e.first_offset))
        self._ongoing: dict[int, _Aborted] = {}  # producer id -> its aborted txn
        self._committed: set[int] = set()  # producers seen in a committed txn

    def _start_upto(self, offset: int) -> None:
        while self._aborted and self._aborted[0].first_offset <= offset:
            entry = self._aborted.popleft()
            self._ongoing.setdefault(entry.producer_id, _Aborted(entry))

    def on_data(self, header: BatchHeader) -> bool:
        """A data batch: whether it belongs to an aborted transaction (it goes)."""
        self._start_upto(header.last_offset)
        if not header.attributes & TRANSACTIONAL_BIT or header.producer_id < 0:
            return False
        aborted = self._ongoing.get(header.producer_id)
        if aborted is None:
            self._committed.add(header.producer_id)
            return False
        aborted.seen_batch = True
        return True

    def on_control(
        self, header: BatchHeader, marker: MarkerInfo | None
    ) -> MarkerVerdict:
        """A control batch (``marker``: what it says; None: no COMMIT/ABORT record)."""
        self._start_upto(header.last_offset)
        if not header.attributes & CONTROL_BIT:
            raise ValueError("not a control batch")
        pid = header.producer_id
        if marker is None:
            # an empty control batch was cleaned before; an unknown one stays
            return MarkerVerdict(idle=header.record_count == 0, entry=None)
        if marker.commit:
            seen = pid in self._committed
            self._committed.discard(pid)
            return MarkerVerdict(idle=not seen, entry=None)
        aborted = self._ongoing.pop(pid, None)
        if aborted is None:
            return MarkerVerdict(idle=True, entry=None)
        return MarkerVerdict(idle=not aborted.seen_batch, entry=aborted.entry)
