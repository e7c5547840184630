"""AddPartitionsToTxn (key 24), v0–3.

Behaviour: the transaction coordinator (``broker.transactions``) adds the
partitions to the producer's transaction, which begins (Ongoing) with the first
ones; the answer waits until the new state is durable in ``__transaction_state``.
Every partition gets the same error code, as in Kafka: NOT_COORDINATOR,
COORDINATOR_LOAD_IN_PROGRESS, INVALID_PRODUCER_ID_MAPPING, PRODUCER_FENCED
(INVALID_PRODUCER_EPOCH before v2), CONCURRENT_TRANSACTIONS (the previous
transaction's markers are being written: the client retries); unless a partition
does not exist: that one answers UNKNOWN_TOPIC_OR_PARTITION, the others
OPERATION_NOT_ATTEMPTED (Kafka's ``handleAddPartitionsToTxnRequest``). With ACLs
enforced the request needs WRITE on the transactional id and on each topic
(broker.authz.groups).
Version notes: v1 same as v0; v2 PRODUCER_FENCED; v3 flexible; v4+ (the batched
broker-to-coordinator form of KIP-890) is not offered.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from broker.net.dispatch import handler
from broker.net.request import Deferred, RequestContext
from broker.transactions.state_machine import fenced_code
from protocol.error_codes import ErrorCode
from protocol.messages.add_partitions_to_txn import (
    AddPartitionsToTxnPartitionResult,
    AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse,
    AddPartitionsToTxnTopic,
    AddPartitionsToTxnTopicResult,
)

_FENCED_FROM_VERSION = 2  # KIP-588


@handler(api_key=24, name="add_partitions_to_txn", max_version=3)
def add_partitions_to_txn(
    rctx: RequestContext, request: AddPartitionsToTxnRequest
) -> object:
    topics = request.v3_and_below_topics
    wanted = [(t.name, p) for t in topics for p in t.partitions]
    unknown = {(t, p) for t, p in wanted if not _exists(rctx, t, p)}
    if unknown:
        return _response(
            topics,
            lambda tp: (
                ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                if tp in unknown
                else ErrorCode.OPERATION_NOT_ATTEMPTED
            ),
        )
    coordinator = rctx.broker.transactions
    version = rctx.api_version
    metrics = rctx.broker.metrics

    async def add() -> AddPartitionsToTxnResponse:
        code = await coordinator.add_partitions(
            request.v3_and_below_transactional_id,
            request.v3_and_below_producer_id,
            request.v3_and_below_producer_epoch,
            wanted,
        )
        if code == ErrorCode.PRODUCER_FENCED:
            code = fenced_code(version, _FENCED_FROM_VERSION)
        if code != ErrorCode.NONE:
            metrics.error("add_partitions_to_txn", code.name)
        return _response(topics, lambda tp: code)

    return Deferred(add)


def _exists(rctx: RequestContext, topic: str, partition: int) -> bool:
    meta = rctx.broker.topics.find(topic)
    return meta is not None and 0 <= partition < meta.partition_count


def _response(
    topics: Sequence[AddPartitionsToTxnTopic],
    code_of: Callable[[tuple[str, int]], ErrorCode],
) -> AddPartitionsToTxnResponse:
    return AddPartitionsToTxnResponse(
        results_by_topic_v3_and_below=tuple(
            AddPartitionsToTxnTopicResult(
                name=t.name,
                results_by_partition=tuple(
                    AddPartitionsToTxnPartitionResult(
                        partition_index=p, partition_error_code=code_of((t.name, p))
                    )
                    for p in t.partitions
                ),
            )
            for t in topics
        )
    )
