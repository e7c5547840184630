"""DescribeTransactions (key 65), v0 (KIP-664).

Behaviour: per transactional id, Kafka's ``TransactionCoordinator
.handleDescribeTransactions``: NOT_COORDINATOR when another broker coordinates the
id (the client asks each id's coordinator, FindCoordinator key type 1);
COORDINATOR_LOAD_IN_PROGRESS while it loads the id's ``__transaction_state``
partition; TRANSACTIONAL_ID_NOT_FOUND for an id the coordinator does not know, or
one being expired (Dead); else its state under Kafka's name ("Ongoing", "CompleteCommit",
...), timeout, start time (-1: none begun), producer id and epoch, and the
partitions of the current transaction grouped by topic. Authorisation (DESCRIBE on
each id, topics filtered) is :mod:`broker.authz.tooling`'s.
Version notes: flexible from v0.
"""

from __future__ import annotations

from broker.net.dispatch import handler
from broker.net.request import Deferred, RequestContext
from broker.transactions.model import TransactionMetadata, TxnState
from protocol.error_codes import ErrorCode
from protocol.messages.describe_transactions import (
    DescribeTransactionsRequest,
    DescribeTransactionsResponse,
    TopicData,
    TransactionState,
)


def _topics(meta: TransactionMetadata) -> tuple[TopicData, ...]:
    by_topic: dict[str, list[int]] = {}
    for topic, partition in sorted(meta.partitions):
        by_topic.setdefault(topic, []).append(partition)
    return tuple(
        TopicData(topic=topic, partitions=tuple(parts))
        for topic, parts in by_topic.items()
    )


def _found(meta: TransactionMetadata) -> TransactionState:
    return TransactionState(
        error_code=ErrorCode.NONE,
        transactional_id=meta.transactional_id,
        transaction_state=meta.state.kafka_name,
        transaction_timeout_ms=meta.timeout_ms,
        transaction_start_time_ms=meta.start_ms,
        producer_id=meta.producer_id,
        producer_epoch=meta.producer_epoch,
        topics=_topics(meta),
    )


def _error(rctx: RequestContext, txn_id: str, code: ErrorCode) -> TransactionState:
    rctx.broker.metrics.error("describe_transactions", code.name)
    return TransactionState(
        error_code=code,
        transactional_id=txn_id,
        transaction_state="",
        transaction_timeout_ms=0,
        transaction_start_time_ms=0,
        producer_id=0,
        producer_epoch=0,
    )


def _known(rctx: RequestContext, txn_id: str) -> TransactionState | None:
    """The answer for an id this broker coordinates and knows; None when it does
    not know it (it may be loading its state log)."""
    txns = rctx.broker.transactions
    if not txns.coordinates(txn_id):
        return _error(rctx, txn_id, ErrorCode.NOT_COORDINATOR)
    meta = txns.describe(txn_id)
    if meta is None:
        return None
    if meta.state is TxnState.DEAD:  # being expired (Kafka answers it unknown)
        return _error(rctx, txn_id, ErrorCode.TRANSACTIONAL_ID_NOT_FOUND)
    return _found(meta)


@handler(api_key=65, name="describe_transactions", max_version=0)
def describe_transactions(
    rctx: RequestContext, request: DescribeTransactionsRequest
) -> object:
    ids = request.transactional_ids
    answers = [_known(rctx, txn_id) for txn_id in ids]
    if all(a is not None for a in answers):
        return DescribeTransactionsResponse(
            transaction_states=tuple(a for a in answers if a is not None)
        )

    async def unknown_then_answer() -> DescribeTransactionsResponse:
        # An id this broker does not know: still loading its state log
        # (COORDINATOR_LOAD_IN_PROGRESS, the client retries) or truly unknown.
        out = []
        for txn_id, answer in zip(ids, answers, strict=True):
            if answer is None:
                code = await rctx.broker.transactions.refusal(txn_id)
                meta = rctx.broker.transactions.describe(txn_id)
                if code == ErrorCode.NONE and meta is not None:
                    answer = _found(meta)
                elif code in (ErrorCode.NONE, ErrorCode.INVALID_REQUEST):
                    answer = _error(rctx, txn_id, ErrorCode.TRANSACTIONAL_ID_NOT_FOUND)
                else:
                    answer = _error(rctx, txn_id, code)
            out.append(answer)
        return DescribeTransactionsResponse(transaction_states=tuple(out))

    return Deferred(unknown_then_answer)
