"""ListOffsets (key 2), v1–11.

Behaviour: timestamp -2 -> log start offset (earliest), -1 -> latest: the high
watermark for isolation_level 0 (read_uncommitted), the last stable offset for 1
(read_committed: below the first open transaction, KIP-98), -3 -> the batch with the
largest timestamp (KIP-734, v7+), -4 / -5 (tiered-storage specials) -> earliest;
any other timestamp -> the first batch whose max timestamp is >= it, or offset -1
with timestamp -1 when none is (Kafka's answer). Offsets by timestamp are bounded
the same way: at or past the high watermark (read_committed: the last stable
offset) they are not answered, as Kafka's ``Partition.fetchOffsetForTimestamp``. Per partition:
UNKNOWN_TOPIC_OR_PARTITION, NOT_LEADER_OR_FOLLOWER (this node does not lead it: see
broker.topics.state), FENCED_LEADER_EPOCH / UNKNOWN_LEADER_EPOCH (an older / newer
current_leader_epoch). Offsets by timestamp have
batch granularity. v0 (old_style_offsets) is not served.
Version notes: v2 isolation level; v4 leader epochs; v6 flexible; v7 max timestamp.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from broker.net.dispatch import handler
from broker.net.request import RequestContext
from protocol.error_codes import ErrorCode
from protocol.messages.list_offsets import (
    ListOffsetsPartition,
    ListOffsetsPartitionResponse,
    ListOffsetsRequest,
    ListOffsetsResponse,
    ListOffsetsTopicResponse,
)

if TYPE_CHECKING:
    from broker.context import BrokerContext
    from storage.log_manager import TopicMeta
    from storage.partition_log import PartitionLog

EARLIEST, LATEST, MAX_TIMESTAMP = -2, -1, -3
READ_COMMITTED = 1


@handler(api_key=2, name="list_offsets", min_version=1, max_version=11)
def list_offsets(
    rctx: RequestContext, request: ListOffsetsRequest
) -> ListOffsetsResponse:
    ctx = rctx.broker
    topics = []
    for topic in request.topics:
        meta = ctx.topics.find(topic.name)
        parts = tuple(
            ctx.topics.answer_partition(
                "list_offsets",
                meta,
                p.partition_index,
                partial(_offset, ctx, p, request.isolation_level == READ_COMMITTED),
                partial(_failed, p),
            )
            for p in topic.partitions
        )
        topics.append(ListOffsetsTopicResponse(name=topic.name, partitions=parts))
    return ListOffsetsResponse(topics=tuple(topics))


def _failed(p: ListOffsetsPartition, code: ErrorCode) -> ListOffsetsPartitionResponse:
    return ListOffsetsPartitionResponse(
        partition_index=p.partition_index, error_code=code
    )


def _offset(
    ctx: BrokerContext,
    p: ListOffsetsPartition,
    committed: bool,
    meta: TopicMeta,
    plog: PartitionLog,
) -> ListOffsetsPartitionResponse | ErrorCode:
    state = ctx.topics.state(meta, plog)
    epoch = state.leader_epoch
    refused = state.refusal(p.current_leader_epoch)
    if refused is not None:
        return refused
    # the last offset a consumer of this isolation level may read up to
    hw = state.last_stable_offset if committed else state.high_watermark
    ts = p.timestamp
    if ts == LATEST:
        offset, timestamp = hw, -1
    elif ts == MAX_TIMESTAMP:
        offset, timestamp = plog.max_timestamp_offset()
        if offset >= hw:
            offset, timestamp = -1, -1
    elif ts < 0:
        offset, timestamp = state.log_start_offset, -1
    else:
        found = plog.offset_for_timestamp(ts)
        if found is None or found[0] >= hw:
            offset, timestamp = -1, -1
        else:
            offset, timestamp = found
    return ListOffsetsPartitionResponse(
        partition_index=p.partition_index,
        error_code=ErrorCode.NONE,
        timestamp=timestamp,
        offset=offset,
        leader_epoch=epoch,
    )
