"""Ongoing transactions of one partition: the last stable offset's input (KIP-98).

:class:`TxnTracker` is a pure state machine fed with the transactional batches of
the log, in log order (Kafka's ``ProducerStateManager`` ongoing-transaction part):

* a transactional data batch of producer P opens P's transaction at the batch's
  first offset, unless one is open already;
* a control batch (COMMIT or ABORT marker) of P closes it; an ABORT yields the
  :class:`~storage.txn_index.AbortedTxn` entry of the ``.txnindex``, whose last
  stable offset is the first offset of the next open transaction (else the
  marker's offset + 1), as Kafka's ``ProducerStateManager.lastStableOffset``;
* the first unstable offset is the smallest first offset of an open transaction;
  the partition's last stable offset is min(it, high watermark).

It also keeps each transactional producer's epoch and the coordinator epoch of its
last marker, so a marker can be fenced the way Kafka's ``ProducerAppendInfo
.appendEndTxnMarker`` does. :meth:`TxnTracker.image` / :meth:`TxnTracker.from_image`
are the JSON form kept in ``txn-state.json`` (see storage/transactions.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from storage.errors import CoordinatorFenced, ProducerFenced
from storage.txn_index import AbortedTxn

__all__ = ["MarkerInfo", "TxnTracker"]

_IMAGE_VERSION: Final = 1
JsonImage = dict[str, int | list[list[int]]]


@dataclass(frozen=True, slots=True, kw_only=True)
class MarkerInfo:
    """What a control batch says: COMMIT or ABORT, and the coordinator's epoch."""

    commit: bool
    coordinator_epoch: int


class TxnTracker:
    """Open transactions and transactional producers' epochs (loop thread or the
    partition log's lock)."""

    __slots__ = ("_first_unstable", "open", "producers")

    def __init__(self) -> None:
        self.open: dict[int, int] = {}  # producer id -> first offset of its txn
        # producer id -> [producer epoch, coordinator epoch of its last marker]
        self.producers: dict[int, tuple[int, int]] = {}
        self._first_unstable: int | None = None

    @property
    def first_unstable_offset(self) -> int | None:
        """The first offset of the oldest open transaction (None: none is open)."""
        return self._first_unstable

    def copy(self) -> TxnTracker:
        """An independent copy (a mark to replay from)."""
        other = TxnTracker()
        other.open = dict(self.open)
        other.producers = dict(self.producers)
        other._first_unstable = self._first_unstable
        return other

    def check_marker(
        self, producer_id: int, producer_epoch: int, coordinator_epoch: int
    ) -> None:
        """Refuse a marker Kafka would refuse for this partition.

        Raises:
            ProducerFenced: its epoch is older than the producer's.
            CoordinatorFenced: its coordinator epoch is older than the one of the
                producer's last marker.
        """
        known = self.producers.get(producer_id)
        if known is None:
            return
        epoch, coord = known
        if producer_epoch < epoch:
            raise ProducerFenced(
                f"marker of producer {producer_id} with epoch {producer_epoch}, "
                f"current epoch {epoch}"
            )
        if coordinator_epoch < coord:
            raise CoordinatorFenced(
                f"marker of producer {producer_id} from coordinator epoch "
                f"{coordinator_epoch}, last seen {coord}"
            )

    def on_data(self, producer_id: int, producer_epoch: int, base_offset: int) -> None:
        """A transactional data batch at ``base_offset`` was appended."""
        known = self.producers.get(producer_id)
        if known is None or producer_epoch > known[0]:
            self.producers[producer_id] = (producer_epoch, known[1] if known else -1)
        if producer_id not in self.open:
            self.open[producer_id] = base_offset
            if self._first_unstable is None:
                self._first_unstable = base_offset

    def on_marker(
        self, producer_id: int, producer_epoch: int, marker: MarkerInfo, offset: int
    ) -> AbortedTxn | None:
        """A marker at ``offset`` was appended; the abort's index entry, if any."""
        known = self.producers.get(producer_id)
        epoch = producer_epoch if known is None else max(known[0], producer_epoch)
        coord = marker.coordinator_epoch
        if known is not None:
            coord = max(coord, known[1])
        self.producers[producer_id] = (epoch, coord)
        # Kafka: a marker without an ongoing transaction completes one that
        # starts at the marker itself
        first = self.open.pop(producer_id, offset)
        if first == self._first_unstable:
            self._first_unstable = min(self.open.values()) if self.open else None
        if marker.commit:
            return None
        lso = self._first_unstable
        return AbortedTxn(
            producer_id=producer_id,
            first_offset=first,
            last_offset=offset,
            last_stable_offset=offset + 1 if lso is None else lso,
        )

    # -- persistence ---------------------------------------------------------------
    def image(self, offset: int) -> JsonImage:
        """The JSON form of this state, valid at log offset ``offset``."""
        return {
            "version": _IMAGE_VERSION,
            "offset": offset,
            "open": [[pid, first] for pid, first in sorted(self.open.items())],
            "producers": [
                [pid, epoch, coord]
                for pid, (epoch, coord) in sorted(self.producers.items())
            ],
        }

    @classmethod
    def from_image(cls, data: object) -> tuple[int, TxnTracker] | None:
        """(offset, state) from :meth:`image`'s form; None if it is not one."""
        if not isinstance(data, dict) or data.get("version") != _IMAGE_VERSION:
            return None
        offset = data.get("offset")
        opened = data.get("open")
        producers = data.get("producers")
        if not isinstance(offset, int) or offset < 0:
            return None
        if not isinstance(opened, list) or not isinstance(producers, list):
            return None
        tracker = cls()
        for row in opened:
            if not _ints(row, 2) or not 0 <= row[1] < offset:
                return None
            tracker.open[row[0]] = row[1]
        for row in producers:
            if not _ints(row, 3):
                return None
            tracker.producers[row[0]] = (row[1], row[2])
        tracker._first_unstable = min(tracker.open.values()) if tracker.open else None
        return offset, tracker


def _ints(row: object, n: int) -> bool:
    return (
        isinstance(row, list)
        and len(row) == n
        and all(isinstance(v, int) and not isinstance(v, bool) for v in row)
    )
