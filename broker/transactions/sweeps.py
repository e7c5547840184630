"""The transaction coordinator's periodic sweeps: timed-out transactions, expired ids.

:class:`Sweeps` is a mixin of
:class:`~broker.transactions.coordinator.TransactionCoordinator` (its attributes
are the coordinator's), run every
``transaction.abort.timed.out.transaction.cleanup.interval.ms`` and
``transaction.remove.expired.transaction.cleanup.interval.ms``:

- an Ongoing transaction older than its producer's ``transaction.timeout.ms`` is
  aborted at a bumped epoch, which fences the producer (Kafka's
  ``abortTimedOutTransactions``, KIP-588's PrepareEpochFence);
- an id with no open transaction whose state has not changed for
  ``transactional.id.expiration.ms`` (7 days) gets a tombstone in
  ``__transaction_state`` and is forgotten (Kafka's
  ``removeExpiredTransactionalIds``); loading the partition again skips it, and
  its next InitProducerId starts afresh with a new producer id at epoch 0.
"""

from __future__ import annotations

import time

import structlog

from broker.transactions import state_machine as sm
from broker.transactions.config import TxnConfig
from broker.transactions.model import TransactionMetadata
from broker.transactions.txn_log import TxnLog
from protocol.error_codes import ErrorCode

log = structlog.get_logger("broker.transactions")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Sweeps:
    """The coordinator's timeout abort and id expiration (a mixin)."""

    config: TxnConfig
    _txns: dict[str, TransactionMetadata]
    _by_producer: dict[int, str]
    _pending: set[str]
    _log: TxnLog | None

    async def _apply(
        self, transactional_id: str, outcome: sm.Outcome
    ) -> tuple[ErrorCode, TransactionMetadata | None]:
        raise NotImplementedError  # the coordinator's

    async def abort_timed_out(self, now_ms: int | None = None) -> int:
        """Abort every ongoing transaction older than its timeout, fencing its
        producer (Kafka's ``abortTimedOutTransactions``); how many."""
        now = _now_ms() if now_ms is None else now_ms
        aborted = 0
        for txn_id, meta in list(self._txns.items()):
            outcome = sm.expire(meta, now, pending=txn_id in self._pending)
            if outcome is None:
                continue
            log.info(
                "txn_timed_out",
                transactional_id=txn_id,
                producer_id=meta.producer_id,
                age_ms=now - meta.start_ms,
                timeout_ms=meta.timeout_ms,
            )
            code, _ = await self._apply(txn_id, outcome)
            if code == ErrorCode.NONE:
                aborted += 1
        return aborted

    async def remove_expired(self, now_ms: int | None = None) -> int:
        """Write a tombstone for every id idle longer than
        ``transactional.id.expiration.ms`` and forget it (Kafka's
        ``removeExpiredTransactionalIds``); how many. Its next InitProducerId
        starts afresh: a new producer id at epoch 0."""
        now = _now_ms() if now_ms is None else now_ms
        txn_log = self._log
        removed = 0
        for txn_id, meta in list(self._txns.items()):
            if (
                txn_log is None
                or txn_id in self._pending
                or not meta.id_expired(now, self.config.id_expiration_ms)
            ):
                continue
            self._pending.add(txn_id)
            try:
                code = await txn_log.remove(txn_id)
                if code == ErrorCode.NONE and self._txns.get(txn_id) == meta:
                    del self._txns[txn_id]
                    if self._by_producer.get(meta.producer_id) == txn_id:
                        del self._by_producer[meta.producer_id]
                    removed += 1
            finally:
                self._pending.discard(txn_id)
        if removed:
            log.info("txn_ids_expired", transactional_ids=removed)
        return removed
