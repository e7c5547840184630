"""The transaction coordinator's decisions, as pure functions of a transactional
id's state (Kafka's ``TransactionCoordinator`` handle* methods and
``TransactionMetadata.prepare*``).

Each request maps the id's current :class:`TransactionMetadata` (None: unknown
here) to an :data:`Outcome`: :class:`Refuse` (an error code, nothing changes),
:class:`Done` (answer from this state, nothing to write: a retry), :class:`Write`
(write this new state to the log, then answer from it) or :class:`Prepare` (write
this PrepareCommit/PrepareAbort, then write the markers and complete it). ``pending``
is true while an earlier change of the same id is being written or its markers
are being sent (Kafka's ``pendingState``): most requests then answer
CONCURRENT_TRANSACTIONS, which clients retry.

Errors answered as Kafka does: INVALID_PRODUCER_ID_MAPPING (unknown id, or another
producer id), PRODUCER_FENCED (an older epoch; the handlers map it to
INVALID_PRODUCER_EPOCH for versions before KIP-588, :func:`fenced_code`),
CONCURRENT_TRANSACTIONS (markers pending), INVALID_TXN_STATE (EndTxn that cannot
apply: committing an aborted transaction, ending none), INVALID_TRANSACTION_TIMEOUT.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from broker.transactions.model import (
    NO_PRODUCER_EPOCH,
    NO_PRODUCER_ID,
    TopicPartition,
    TransactionMetadata,
    TxnState,
)
from protocol.error_codes import ErrorCode

# Kafka's TransactionMetadata.isEpochExhausted: Short.MaxValue - 1, so that one
# more bump (fencing) still fits.
MAX_EPOCH = 32767
EXHAUSTED_EPOCH = MAX_EPOCH - 1


@dataclass(frozen=True, slots=True)
class Refuse:
    """Answer ``code``; nothing changes."""

    code: ErrorCode


@dataclass(frozen=True, slots=True)
class Done:
    """Answer NONE from ``meta`` (unchanged: a retry, or nothing to add)."""

    meta: TransactionMetadata


@dataclass(frozen=True, slots=True)
class Write:
    """Write ``meta`` to the log, then answer from it."""

    meta: TransactionMetadata


@dataclass(frozen=True, slots=True)
class Prepare:
    """Write ``meta`` (PrepareCommit or PrepareAbort), then the markers, then its
    completion (:func:`complete`). ``answer``: what the requester is told once the
    prepare is written (NONE for EndTxn; CONCURRENT_TRANSACTIONS for the
    InitProducerId that fenced an ongoing transaction: it retries)."""

    meta: TransactionMetadata
    answer: ErrorCode = ErrorCode.NONE


@dataclass(frozen=True, slots=True)
class NeedProducerId:
    """Allocate a fresh producer id and ask again with it."""


Outcome = Refuse | Done | Write | Prepare | NeedProducerId


def is_epoch_exhausted(epoch: int) -> bool:
    """Kafka's rule: no further bump may be handed to a producer."""
    return epoch >= EXHAUSTED_EPOCH


def fenced_code(api_version: int, first_fenced_version: int) -> ErrorCode:
    """PRODUCER_FENCED from ``first_fenced_version`` on (KIP-588), else Kafka's
    older INVALID_PRODUCER_EPOCH."""
    if api_version >= first_fenced_version:
        return ErrorCode.PRODUCER_FENCED
    return ErrorCode.INVALID_PRODUCER_EPOCH


def new_metadata(
    transactional_id: str, producer_id: int, timeout_ms: int, now_ms: int
) -> TransactionMetadata:
    """A transactional id seen for the first time: Empty, epoch -1 (the first
    InitProducerId bumps it to 0)."""
    return TransactionMetadata(
        transactional_id=transactional_id,
        producer_id=producer_id,
        producer_epoch=NO_PRODUCER_EPOCH,
        timeout_ms=timeout_ms,
        state=TxnState.EMPTY,
        last_update_ms=now_ms,
    )


def init_producer_id(
    meta: TransactionMetadata | None,
    *,
    transactional_id: str,
    timeout_ms: int,
    max_timeout_ms: int,
    expected: tuple[int, int] | None,
    fresh_id: int | None,
    now_ms: int,
    pending: bool = False,
) -> Outcome:
    """InitProducerId with a transactional id (``handleInitProducerId``).

    ``expected``: the (producer id, epoch) a KIP-360 client passes to bump its
    own epoch, None otherwise. ``fresh_id``: a newly allocated producer id, if the
    caller has one (else :class:`NeedProducerId` when one is needed).
    """
    if not 0 < timeout_ms <= max_timeout_ms:
        return Refuse(ErrorCode.INVALID_TRANSACTION_TIMEOUT)
    if meta is None:
        if fresh_id is None:
            return NeedProducerId()
        meta = new_metadata(transactional_id, fresh_id, timeout_ms, now_ms)
        fresh_id = None
    if pending:
        return Refuse(ErrorCode.CONCURRENT_TRANSACTIONS)
    if expected is not None and not _valid_producer_id(meta, *expected):
        return Refuse(ErrorCode.PRODUCER_FENCED)
    state = meta.state
    if state in (TxnState.PREPARE_COMMIT, TxnState.PREPARE_ABORT):
        return Refuse(ErrorCode.CONCURRENT_TRANSACTIONS)
    if state is TxnState.ONGOING:
        # the fenced producer's transaction is aborted first (a bumped epoch fences
        # its in-flight batches); the new producer retries meanwhile
        return Prepare(fence(meta, now_ms), ErrorCode.CONCURRENT_TRANSACTIONS)
    if state not in (TxnState.EMPTY, TxnState.COMPLETE_COMMIT, TxnState.COMPLETE_ABORT):
        return Refuse(ErrorCode.CONCURRENT_TRANSACTIONS)  # Dead, PrepareEpochFence
    base = replace(
        meta,
        timeout_ms=timeout_ms,
        state=TxnState.EMPTY,
        partitions=frozenset(),
        groups=frozenset(),
        start_ms=-1,
        last_update_ms=now_ms,
    )
    if is_epoch_exhausted(meta.producer_epoch) and (
        expected is None or expected[1] == meta.producer_epoch
    ):
        if fresh_id is None:
            return NeedProducerId()
        return Write(
            replace(
                base,
                producer_id=fresh_id,
                producer_epoch=0,
                last_producer_id=meta.producer_id,
                last_producer_epoch=(
                    meta.producer_epoch if expected is not None else NO_PRODUCER_EPOCH
                ),
            )
        )
    if expected is None or expected[1] in (NO_PRODUCER_EPOCH, meta.producer_epoch):
        return Write(
            replace(
                base,
                producer_epoch=meta.producer_epoch + 1,
                last_producer_epoch=(
                    meta.producer_epoch if expected is not None else NO_PRODUCER_EPOCH
                ),
            )
        )
    if expected[1] == meta.last_producer_epoch:
        return Done(meta)  # a retry of the bump that was answered already
    return Refuse(ErrorCode.PRODUCER_FENCED)


def _valid_producer_id(meta: TransactionMetadata, producer_id: int, epoch: int) -> bool:
    # Kafka's isValidProducerId: a just-created id; the current producer id (its
    # epoch is checked by the bump); or the previous one after an id rotation.
    return (
        meta.producer_epoch == NO_PRODUCER_EPOCH
        or producer_id == meta.producer_id
        or (
            producer_id == meta.last_producer_id
            and producer_id != NO_PRODUCER_ID
            and is_epoch_exhausted(epoch)
        )
    )


def fence(meta: TransactionMetadata, now_ms: int) -> TransactionMetadata:
    """The PrepareAbort of an ongoing transaction the coordinator aborts itself (a
    new producer's InitProducerId, or the timeout): the epoch is bumped so that
    the old producer is fenced (Kafka's PrepareEpochFence, KIP-588)."""
    epoch = min(meta.producer_epoch + 1, MAX_EPOCH)
    return replace(
        meta,
        producer_epoch=epoch,
        last_producer_epoch=meta.producer_epoch,
        state=TxnState.PREPARE_ABORT,
        last_update_ms=now_ms,
    )


def _check_producer(
    meta: TransactionMetadata | None, producer_id: int, epoch: int, pending: bool
) -> Refuse | None:
    if meta is None or producer_id != meta.producer_id:
        return Refuse(ErrorCode.INVALID_PRODUCER_ID_MAPPING)
    if epoch != meta.producer_epoch:
        return Refuse(ErrorCode.PRODUCER_FENCED)
    if pending or meta.state.is_prepare:
        return Refuse(ErrorCode.CONCURRENT_TRANSACTIONS)
    return None


def _begin(meta: TransactionMetadata, now_ms: int) -> TransactionMetadata:
    """``meta`` in Ongoing, started now unless it was already."""
    if meta.state is TxnState.ONGOING:
        return replace(meta, last_update_ms=now_ms)
    return replace(
        meta,
        state=TxnState.ONGOING,
        partitions=frozenset(),
        groups=frozenset(),
        start_ms=now_ms,
        last_update_ms=now_ms,
    )


def add_partitions(
    meta: TransactionMetadata | None,
    *,
    producer_id: int,
    producer_epoch: int,
    partitions: Iterable[TopicPartition],
    now_ms: int,
    pending: bool = False,
) -> Outcome:
    """AddPartitionsToTxn (``handleAddPartitionsToTransaction``)."""
    refused = _check_producer(meta, producer_id, producer_epoch, pending)
    if refused is not None:
        return refused
    assert meta is not None
    if meta.state not in (
        TxnState.EMPTY,
        TxnState.ONGOING,
        TxnState.COMPLETE_COMMIT,
        TxnState.COMPLETE_ABORT,
    ):
        return Refuse(ErrorCode.CONCURRENT_TRANSACTIONS)
    wanted = frozenset(partitions)
    if meta.state is TxnState.ONGOING and wanted <= meta.partitions:
        return Done(meta)
    began = _begin(meta, now_ms)
    return Write(replace(began, partitions=began.partitions | wanted))


def add_group(
    meta: TransactionMetadata | None,
    *,
    producer_id: int,
    producer_epoch: int,
    group_id: str,
    now_ms: int,
    pending: bool = False,
    offsets_partition: TopicPartition | None = None,
) -> Outcome:
    """AddOffsetsToTxn: the group's offsets join the transaction. The group id is
    kept (DescribeTransactions, and a single node completes its offsets directly);
    in a cluster ``offsets_partition``, the group's ``__consumer_offsets``
    partition, joins the transaction's partitions too, as in Kafka, so that its
    marker completes the offsets at the group's coordinator."""
    refused = _check_producer(meta, producer_id, producer_epoch, pending)
    if refused is not None:
        return refused
    assert meta is not None
    if meta.state not in (
        TxnState.EMPTY,
        TxnState.ONGOING,
        TxnState.COMPLETE_COMMIT,
        TxnState.COMPLETE_ABORT,
    ):
        return Refuse(ErrorCode.CONCURRENT_TRANSACTIONS)
    wanted = frozenset(() if offsets_partition is None else (offsets_partition,))
    if (
        meta.state is TxnState.ONGOING
        and group_id in meta.groups
        and wanted <= meta.partitions
    ):
        return Done(meta)
    began = _begin(meta, now_ms)
    return Write(
        replace(
            began,
            groups=began.groups | {group_id},
            partitions=began.partitions | wanted,
        )
    )


def end_txn(
    meta: TransactionMetadata | None,
    *,
    producer_id: int,
    producer_epoch: int,
    commit: bool,
    now_ms: int,
    pending: bool = False,
) -> Outcome:
    """EndTxn from the producer (``endTransaction`` with ``isFromClient``)."""
    if meta is None or producer_id != meta.producer_id:
        return Refuse(ErrorCode.INVALID_PRODUCER_ID_MAPPING)
    if producer_epoch != meta.producer_epoch:
        return Refuse(ErrorCode.PRODUCER_FENCED)
    if pending:
        return Refuse(ErrorCode.CONCURRENT_TRANSACTIONS)
    state = meta.state
    if state is TxnState.ONGOING:
        target = TxnState.PREPARE_COMMIT if commit else TxnState.PREPARE_ABORT
        return Prepare(meta.with_state(target, now_ms))
    same = TxnState.COMPLETE_COMMIT if commit else TxnState.COMPLETE_ABORT
    if state is same:
        return Done(meta)  # a retry of an EndTxn that completed
    if state is (TxnState.PREPARE_COMMIT if commit else TxnState.PREPARE_ABORT):
        return Refuse(ErrorCode.CONCURRENT_TRANSACTIONS)  # its markers are pending
    return Refuse(ErrorCode.INVALID_TXN_STATE)


def complete(meta: TransactionMetadata, now_ms: int) -> TransactionMetadata:
    """A PrepareCommit/PrepareAbort whose markers are all written: CompleteCommit/
    CompleteAbort, with no partitions or groups left."""
    target = (
        TxnState.COMPLETE_COMMIT
        if meta.state is TxnState.PREPARE_COMMIT
        else TxnState.COMPLETE_ABORT
    )
    return replace(
        meta,
        state=target,
        partitions=frozenset(),
        groups=frozenset(),
        last_update_ms=now_ms,
    )


def expire(
    meta: TransactionMetadata, now_ms: int, *, pending: bool = False
) -> Prepare | None:
    """The coordinator's abort of a transaction older than its timeout (Kafka's
    ``abortTimedOutTransactions``: fence the epoch, then abort); None if
    ``meta`` is not such a transaction."""
    if pending or not meta.expired(now_ms):
        return None
    return Prepare(fence(meta, now_ms))
