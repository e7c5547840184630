"""DescribeTopicPartitions (key 75), v0 (KIP-966).

Behaviour: describes the named topics (an empty list: every topic) in name order,
each partition with its leader, leader epoch, replicas, ISR and offline replicas,
the same facts as Metadata (on a single node this node leads every partition; in
cluster mode they come from the watched cache). The answer holds at most
``response_partition_limit`` partitions (capped at 2000, Kafka's
``max.request.partition.size.limit``); ``next_cursor`` then names the topic and
partition to continue from, as Kafka's ``DescribeTopicPartitionsRequestHandler``
pages: a cursor topic named but absent from the list, or a negative cursor
partition, is INVALID_REQUEST for every named topic. A named topic that does not
exist is UNKNOWN_TOPIC_OR_PARTITION (left out of an all-topics answer).
Eligible leader replicas (a KRaft feature) are answered null.
Version notes: flexible from v0.
"""

from __future__ import annotations

from broker.cluster.model import NO_LEADER
from broker.cluster.view import INTERNAL_TOPICS
from broker.net.dispatch import handler
from broker.net.request import RequestContext
from broker.topics.service import ZERO_UUID
from protocol.error_codes import ErrorCode
from protocol.messages.describe_topic_partitions import (
    Cursor,
    DescribeTopicPartitionsRequest,
    DescribeTopicPartitionsResponse,
    DescribeTopicPartitionsResponsePartition,
    DescribeTopicPartitionsResponseTopic,
)
from storage.errors import StorageError

MAX_PARTITIONS = 2000  # Kafka's max.request.partition.size.limit default


def _failed(name: str, code: ErrorCode) -> DescribeTopicPartitionsResponseTopic:
    return DescribeTopicPartitionsResponseTopic(
        error_code=code, name=name, topic_id=ZERO_UUID
    )


Partition = DescribeTopicPartitionsResponsePartition


def _local(
    rctx: RequestContext, name: str
) -> tuple[bytes, bool, list[Partition]] | None:
    """(topic id, internal, partitions) of a topic of this node alone."""
    topics = rctx.broker.topics
    meta = topics.find(name)
    if meta is None:
        return None
    node = rctx.broker.config.node_id
    partitions = []
    for idx in range(meta.partition_count):
        try:
            state = topics.state(meta, topics.logs.partition(name, idx))
        except StorageError:
            partitions.append(
                Partition(
                    error_code=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                    partition_index=idx,
                    leader_id=node,
                    replica_nodes=(node,),
                    isr_nodes=(node,),
                )
            )
            continue
        partitions.append(
            Partition(
                error_code=ErrorCode.NONE,
                partition_index=idx,
                leader_id=state.leader_id,
                leader_epoch=state.leader_epoch,
                replica_nodes=state.replicas,
                isr_nodes=state.isr,
            )
        )
    return meta.topic_id, False, partitions


def _cluster(
    rctx: RequestContext, name: str
) -> tuple[bytes, bool, list[Partition]] | None:
    """(topic id, internal, partitions) of a topic from the cluster's cache."""
    cache = rctx.broker.topics.cache
    assert cache is not None
    record = cache.topic(name)
    if record is None:
        return None
    live = {b.node_id for b in cache.brokers()}
    partitions = []
    for idx in range(record.partitions):
        p = cache.partition(name, idx)
        if p is None:  # written after the topic record: not seen yet
            partitions.append(
                Partition(
                    error_code=ErrorCode.LEADER_NOT_AVAILABLE,
                    partition_index=idx,
                    leader_id=NO_LEADER,
                )
            )
            continue
        partitions.append(
            Partition(
                error_code=ErrorCode.NONE
                if p.online
                else ErrorCode.LEADER_NOT_AVAILABLE,
                partition_index=idx,
                leader_id=p.leader,
                leader_epoch=p.leader_epoch,
                replica_nodes=p.replicas,
                isr_nodes=p.isr,
                offline_replicas=tuple(r for r in p.replicas if r not in live),
            )
        )
    return record.topic_id.bytes, record.internal, partitions


@handler(api_key=75, name="describe_topic_partitions", max_version=0)
def describe_topic_partitions(
    rctx: RequestContext, request: DescribeTopicPartitionsRequest
) -> DescribeTopicPartitionsResponse:
    ctx = rctx.broker
    cursor = request.cursor
    after = "" if cursor is None else cursor.topic_name
    every = not request.topics
    cache = ctx.topics.cache
    if every:
        names = (
            [m.name for m in ctx.topics.logs.topics()]
            if cache is None
            else [r.name for r in cache.topics()]
        )
    else:
        names = [t.name for t in request.topics]
    wanted = sorted({n for n in names if n >= after})
    if cursor is not None and (
        cursor.partition_index < 0 or (not every and cursor.topic_name not in wanted)
    ):
        ctx.metrics.error("describe_topic_partitions", "INVALID_REQUEST")
        return DescribeTopicPartitionsResponse(
            topics=tuple(
                _failed(t.name, ErrorCode.INVALID_REQUEST) for t in request.topics
            )
        )
    remaining = max(1, min(request.response_partition_limit, MAX_PARTITIONS))
    out: list[DescribeTopicPartitionsResponseTopic] = []
    next_cursor: Cursor | None = None
    for name in wanted:
        if remaining == 0:
            next_cursor = Cursor(topic_name=name, partition_index=0)
            break
        entry = (_local if cache is None else _cluster)(rctx, name)
        if entry is None:
            if not every:
                out.append(_failed(name, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION))
            continue
        start = cursor.partition_index if cursor and name == cursor.topic_name else 0
        topic_id, internal, partitions = entry
        chosen = partitions[start : start + remaining]
        remaining -= len(chosen)
        if start + len(chosen) < len(partitions):
            next_cursor = Cursor(topic_name=name, partition_index=start + len(chosen))
        out.append(
            DescribeTopicPartitionsResponseTopic(
                error_code=ErrorCode.NONE,
                name=name,
                topic_id=topic_id,
                is_internal=internal or name in INTERNAL_TOPICS,
                partitions=tuple(chosen),
            )
        )
        if next_cursor is not None:
            break
    return DescribeTopicPartitionsResponse(topics=tuple(out), next_cursor=next_cursor)
