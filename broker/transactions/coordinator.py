"""The transaction coordinator's service: the transactional ids this broker owns.

Kafka's ``TransactionCoordinator`` with its ``TransactionStateManager``: the state
of each transactional id whose ``__transaction_state`` partition this broker leads,
kept in memory and written to that partition before it is acted on. The read side
(:meth:`TransactionCoordinator.describe`, :meth:`TransactionCoordinator
.list_transactions`) serves DescribeTransactions and ListTransactions.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from broker.transactions.model import TransactionMetadata, TxnState


class TransactionCoordinator:
    """The transactional ids this broker coordinates and their current state."""

    def __init__(self, *, coordinates: Callable[[str], bool]) -> None:
        # transactional id -> its state as last written to the log
        self._txns: dict[str, TransactionMetadata] = {}
        self._coordinates = coordinates

    def coordinates(self, transactional_id: str) -> bool:
        """Whether this broker is the coordinator of ``transactional_id`` (it leads
        the id's ``__transaction_state`` partition)."""
        return self._coordinates(transactional_id)

    def describe(self, transactional_id: str) -> TransactionMetadata | None:
        """The state of ``transactional_id`` (None: this broker knows no such id)."""
        return self._txns.get(transactional_id)

    def list_transactions(
        self,
        states: Collection[TxnState] = (),
        producer_ids: Collection[int] = (),
        min_duration_ms: int = -1,
        *,
        now_ms: int,
    ) -> list[TransactionMetadata]:
        """The transactions this broker coordinates, filtered as ListTransactions
        (KIP-664, KIP-994): an empty ``states``/``producer_ids`` keeps all; a
        ``min_duration_ms`` >= 0 keeps open transactions at least that old."""
        out = []
        for meta in self._txns.values():
            if states and meta.state not in states:
                continue
            if producer_ids and meta.producer_id not in producer_ids:
                continue
            if min_duration_ms >= 0 and (
                meta.start_ms < 0 or meta.duration_ms(now_ms) < min_duration_ms
            ):
                continue
            out.append(meta)
        return out
