"""DescribeTransactions (key 65), v0 (KIP-664).

Behaviour: per transactional id, Kafka's ``TransactionCoordinator
.handleDescribeTransactions``: NOT_COORDINATOR when another broker coordinates the
id (the client asks each id's coordinator, FindCoordinator key type 1);
TRANSACTIONAL_ID_NOT_FOUND for an id the coordinator does not know, or one being
expired (Dead); else its state under Kafka's name ("Ongoing", "CompleteCommit",
...), timeout, start time (-1: none begun), producer id and epoch, and the
partitions of the current transaction grouped by topic. Authorisation (DESCRIBE on
each id, topics filtered) is :mod:`broker.authz.tooling`'s.
Version notes: flexible from v0.
"""

from __future__ import annotations

from broker.net.dispatch import handler
from broker.net.request import RequestContext
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


def _describe(rctx: RequestContext, transactional_id: str) -> TransactionState:
    txns = rctx.broker.transactions
    if not txns.coordinates(transactional_id):
        code = ErrorCode.NOT_COORDINATOR
    else:
        meta = txns.describe(transactional_id)
        if meta is not None and meta.state is not TxnState.DEAD:
            return TransactionState(
                error_code=ErrorCode.NONE,
                transactional_id=transactional_id,
                transaction_state=meta.state.kafka_name,
                transaction_timeout_ms=meta.timeout_ms,
                transaction_start_time_ms=meta.start_ms,
                producer_id=meta.producer_id,
                producer_epoch=meta.producer_epoch,
                topics=_topics(meta),
            )
        code = ErrorCode.TRANSACTIONAL_ID_NOT_FOUND
    rctx.broker.metrics.error("describe_transactions", code.name)
    return TransactionState(
        error_code=code,
        transactional_id=transactional_id,
        transaction_state="",
        transaction_timeout_ms=0,
        transaction_start_time_ms=0,
        producer_id=0,
        producer_epoch=0,
    )


@handler(api_key=65, name="describe_transactions", max_version=0)
def describe_transactions(
    rctx: RequestContext, request: DescribeTransactionsRequest
) -> DescribeTransactionsResponse:
    return DescribeTransactionsResponse(
        transaction_states=tuple(
            _describe(rctx, txn_id) for txn_id in request.transactional_ids
        )
    )
