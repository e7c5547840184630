"""What the transaction coordinator knows of one transactional id.

Kafka's ``TransactionMetadata`` and ``TransactionState``: a transactional id maps to
its current producer id and epoch (and the previous ones, KIP-360/KIP-588), its
transaction timeout, the state of its current transaction, the partitions and
consumer groups that transaction touched, and two timestamps. The int8 codes of
:class:`TxnState` are those of the ``__transaction_state`` log
(``TransactionLogValue.transaction_status``) and of ListTransactions/
DescribeTransactions' state names.

Values are immutable: the state machine (:mod:`broker.transactions.state_machine`)
answers a new :class:`TransactionMetadata` and the coordinator replaces the old one
once the new one is written to the log.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace

NO_PRODUCER_ID = -1
NO_PRODUCER_EPOCH = -1


class TxnState(enum.IntEnum):
    """A transaction's state, with Kafka's int8 codes (``TransactionState.id``)."""

    EMPTY = 0
    ONGOING = 1
    PREPARE_COMMIT = 2
    PREPARE_ABORT = 3
    COMPLETE_COMMIT = 4
    COMPLETE_ABORT = 5
    DEAD = 6
    PREPARE_EPOCH_FENCE = 7

    @property
    def kafka_name(self) -> str:
        """Kafka's name for the state (ListTransactions, DescribeTransactions)."""
        return _NAMES[self]

    @classmethod
    def from_kafka_name(cls, name: str) -> TxnState:
        """The state Kafka calls ``name`` (case-sensitive, as Kafka's).

        Raises:
            ValueError: no state has that name.
        """
        for state, known in _NAMES.items():
            if known == name:
                return state
        raise ValueError(f"unknown transaction state {name!r}")

    @property
    def is_prepare(self) -> bool:
        """PrepareCommit or PrepareAbort: markers are being written."""
        return self in (TxnState.PREPARE_COMMIT, TxnState.PREPARE_ABORT)

    @property
    def is_complete(self) -> bool:
        """CompleteCommit or CompleteAbort: the last transaction is closed."""
        return self in (TxnState.COMPLETE_COMMIT, TxnState.COMPLETE_ABORT)


_NAMES: dict[TxnState, str] = {
    TxnState.EMPTY: "Empty",
    TxnState.ONGOING: "Ongoing",
    TxnState.PREPARE_COMMIT: "PrepareCommit",
    TxnState.PREPARE_ABORT: "PrepareAbort",
    TxnState.COMPLETE_COMMIT: "CompleteCommit",
    TxnState.COMPLETE_ABORT: "CompleteAbort",
    TxnState.DEAD: "Dead",
    TxnState.PREPARE_EPOCH_FENCE: "PrepareEpochFence",
}

# Kafka's TransactionState.validPreviousStates, read backwards: from -> to.
VALID_TRANSITIONS: dict[TxnState, frozenset[TxnState]] = {
    TxnState.EMPTY: frozenset(
        {TxnState.EMPTY, TxnState.ONGOING, TxnState.DEAD, TxnState.PREPARE_ABORT}
    ),
    TxnState.ONGOING: frozenset(
        {
            TxnState.ONGOING,
            TxnState.PREPARE_COMMIT,
            TxnState.PREPARE_ABORT,
            TxnState.PREPARE_EPOCH_FENCE,
        }
    ),
    TxnState.PREPARE_COMMIT: frozenset({TxnState.COMPLETE_COMMIT}),
    TxnState.PREPARE_ABORT: frozenset({TxnState.COMPLETE_ABORT}),
    TxnState.COMPLETE_COMMIT: frozenset(
        {TxnState.EMPTY, TxnState.ONGOING, TxnState.DEAD, TxnState.PREPARE_ABORT}
    ),
    TxnState.COMPLETE_ABORT: frozenset(
        {TxnState.EMPTY, TxnState.ONGOING, TxnState.DEAD, TxnState.PREPARE_ABORT}
    ),
    TxnState.DEAD: frozenset(),
    TxnState.PREPARE_EPOCH_FENCE: frozenset({TxnState.PREPARE_ABORT}),
}


def can_transition(old: TxnState, new: TxnState) -> bool:
    """Whether Kafka allows a transaction in ``old`` to move to ``new``."""
    return new in VALID_TRANSITIONS[old]


TopicPartition = tuple[str, int]


@dataclass(frozen=True, slots=True, kw_only=True)
class TransactionMetadata:
    """One transactional id's coordinator state (Kafka's ``TransactionMetadata``).

    ``last_producer_id``/``last_producer_epoch`` are the id and epoch before the
    last bump (KIP-360: a producer retrying InitProducerId with its old epoch is
    answered the current one). ``partitions`` and ``groups`` belong to the current
    transaction (empty once it completes); ``start_ms`` is when it began (-1: none),
    ``last_update_ms`` the time of the last change.
    """

    transactional_id: str
    producer_id: int
    last_producer_id: int = NO_PRODUCER_ID
    producer_epoch: int
    last_producer_epoch: int = NO_PRODUCER_EPOCH
    timeout_ms: int
    state: TxnState = TxnState.EMPTY
    partitions: frozenset[TopicPartition] = field(default_factory=frozenset)
    groups: frozenset[str] = field(default_factory=frozenset)
    start_ms: int = -1
    last_update_ms: int = -1

    def with_state(self, state: TxnState, now_ms: int) -> TransactionMetadata:
        """This metadata moved to ``state`` at ``now_ms`` (no transition check)."""
        return replace(self, state=state, last_update_ms=now_ms)

    def duration_ms(self, now_ms: int) -> int:
        """How long the current transaction has been open (0: none is)."""
        if self.start_ms < 0 or self.state not in _OPEN:
            return 0
        return max(0, now_ms - self.start_ms)

    def id_expired(self, now_ms: int, expiration_ms: int) -> bool:
        """No transaction open and no change for ``expiration_ms``: the id may be
        removed (Kafka's ``transactional.id.expiration.ms``, ``shouldExpire``)."""
        return (
            self.state in _EXPIRABLE and now_ms - self.last_update_ms >= expiration_ms
        )

    def expired(self, now_ms: int) -> bool:
        """An Ongoing transaction older than its timeout (the coordinator aborts it)."""
        return (
            self.state is TxnState.ONGOING
            and self.start_ms >= 0
            and now_ms - self.start_ms > self.timeout_ms
        )


_EXPIRABLE = frozenset(
    {TxnState.EMPTY, TxnState.COMPLETE_COMMIT, TxnState.COMPLETE_ABORT}
)
_OPEN = frozenset(
    {
        TxnState.ONGOING,
        TxnState.PREPARE_COMMIT,
        TxnState.PREPARE_ABORT,
        TxnState.PREPARE_EPOCH_FENCE,
    }
)
