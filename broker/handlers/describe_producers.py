"""DescribeProducers (key 61), v0 (KIP-664).

Behaviour: per named partition, the idempotent producers this broker's producer
state holds (:mod:`storage.producer_state`): producer id, epoch, last sequence and
the largest timestamp of its last batch, and ``current_txn_start_offset``, the
first offset of its open transaction on the partition (-1: none; what Kafka's
``kafka-transactions.sh find-hanging`` compares with the coordinators' answers);
``coordinator_epoch`` is -1. Answered only by the
partition's leader: NOT_LEADER_OR_FOLLOWER on a broker that holds no replica of
it or follows it (cluster mode), UNKNOWN_TOPIC_OR_PARTITION for a partition that
does not exist. A partition whose state is not tracked yet has it rebuilt from the
log tail first, in a worker thread.
Version notes: flexible from v0.
"""

from __future__ import annotations

from broker.net.dispatch import handler
from broker.net.request import Deferred, RequestContext
from protocol.error_codes import ErrorCode
from protocol.messages.describe_producers import (
    DescribeProducersRequest,
    DescribeProducersResponse,
    PartitionResponse,
    ProducerState,
    TopicResponse,
)
from storage.errors import StorageError
from storage.partition_log import PartitionLog


def _error(index: int, code: ErrorCode, message: str | None) -> PartitionResponse:
    return PartitionResponse(
        partition_index=index, error_code=code, error_message=message
    )


def _exists(rctx: RequestContext, topic: str, index: int) -> bool:
    topics = rctx.broker.topics
    cache = topics.cache
    if cache is not None:
        return cache.partition(topic, index) is not None
    meta = topics.find(topic)
    return meta is not None and 0 <= index < meta.partition_count


def _led(rctx: RequestContext, topic: str, index: int) -> PartitionLog | ErrorCode:
    """The partition's log when this broker leads it, else the error to answer."""
    topics = rctx.broker.topics
    meta = topics.find(topic)
    if meta is None:
        if _exists(rctx, topic, index):
            return ErrorCode.NOT_LEADER_OR_FOLLOWER
        return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    try:
        plog = topics.logs.partition(topic, index)
    except StorageError:
        if _exists(rctx, topic, index):
            return ErrorCode.NOT_LEADER_OR_FOLLOWER
        return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    if not topics.state(meta, plog).is_local_leader:
        return ErrorCode.NOT_LEADER_OR_FOLLOWER
    return plog


def _producers(
    rctx: RequestContext, index: int, plog: PartitionLog
) -> PartitionResponse:
    state = rctx.broker.producers.state(plog)
    open_txns = plog.open_transactions()
    return PartitionResponse(
        partition_index=index,
        error_code=ErrorCode.NONE,
        active_producers=tuple(
            ProducerState(
                producer_id=pid,
                producer_epoch=entry.epoch,
                last_sequence=entry.last_seq,
                last_timestamp=entry.last_timestamp,
                coordinator_epoch=-1,
                current_txn_start_offset=open_txns.get(pid, -1),
            )
            for pid, entry in sorted(state.entries().items())
        ),
    )


@handler(api_key=61, name="describe_producers", max_version=0)
def describe_producers(
    rctx: RequestContext, request: DescribeProducersRequest
) -> object:
    producers = rctx.broker.producers
    found: list[tuple[str, int, PartitionLog | ErrorCode]] = [
        (t.name, index, _led(rctx, t.name, index))
        for t in request.topics
        for index in t.partition_indexes
    ]
    untracked = [
        led
        for _, _, led in found
        if isinstance(led, PartitionLog) and not producers.tracks(led)
    ]

    def response() -> DescribeProducersResponse:
        by_topic: dict[str, list[PartitionResponse]] = {}
        for topic, index, led in found:
            if isinstance(led, PartitionLog):
                answer = _producers(rctx, index, led)
            else:
                rctx.broker.metrics.error("describe_producers", led.name)
                answer = _error(index, led, None)
            by_topic.setdefault(topic, []).append(answer)
        return DescribeProducersResponse(
            topics=tuple(
                TopicResponse(name=name, partitions=tuple(parts))
                for name, parts in by_topic.items()
            )
        )

    if not untracked:
        return response()

    async def load_then_answer() -> DescribeProducersResponse:
        for plog in dict.fromkeys(untracked):
            await producers.reload(plog)
        return response()

    return Deferred(load_then_answer)
