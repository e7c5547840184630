"""OffsetForLeaderEpoch (key 23), v0–4.

Behaviour: for each partition, the largest leader epoch <= the requested one and
its end offset (the start of the next epoch, or the log end offset for the latest
epoch), as consumers use it to detect log truncation (KIP-320). A request for the
current epoch gets (epoch, log end offset). Per partition:
UNKNOWN_TOPIC_OR_PARTITION, NOT_LEADER_OR_FOLLOWER (this node does not lead it),
UNKNOWN_LEADER_EPOCH / FENCED_LEADER_EPOCH (a newer / older
``current_leader_epoch``).
Version notes: v1 returns the epoch; v2 current_leader_epoch; v3 replica id; v4
flexible.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from broker.net.dispatch import handler
from broker.net.request import RequestContext
from protocol.error_codes import ErrorCode
from protocol.messages.offset_for_leader_epoch import (
    EpochEndOffset,
    OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse,
    OffsetForLeaderPartition,
    OffsetForLeaderTopicResult,
)

if TYPE_CHECKING:
    from broker.context import BrokerContext
    from storage.log_manager import TopicMeta
    from storage.partition_log import PartitionLog


@handler(api_key=23, name="offset_for_leader_epoch", max_version=4)
def offset_for_leader_epoch(
    rctx: RequestContext, request: OffsetForLeaderEpochRequest
) -> OffsetForLeaderEpochResponse:
    ctx = rctx.broker
    topics = []
    for topic in request.topics:
        meta = ctx.topics.find(topic.topic)
        parts = tuple(
            ctx.topics.answer_partition(
                "offset_for_leader_epoch",
                meta,
                p.partition,
                partial(_epoch_end, ctx, p),
                partial(_failed, p),
            )
            for p in topic.partitions
        )
        topics.append(OffsetForLeaderTopicResult(topic=topic.topic, partitions=parts))
    return OffsetForLeaderEpochResponse(topics=tuple(topics))


def _failed(p: OffsetForLeaderPartition, code: ErrorCode) -> EpochEndOffset:
    return EpochEndOffset(error_code=code, partition=p.partition)


def _epoch_end(
    ctx: BrokerContext, p: OffsetForLeaderPartition, meta: TopicMeta, plog: PartitionLog
) -> EpochEndOffset | ErrorCode:
    state = ctx.topics.state(meta, plog)
    current = state.leader_epoch
    refused = state.refusal(p.current_leader_epoch)
    if refused is not None:
        return refused
    if p.leader_epoch > current:
        epoch, end = -1, -1
    elif p.leader_epoch == current or plog.leader_epoch < 0:
        epoch, end = current, plog.log_end_offset
    else:
        epoch, end = plog.epoch_end_offset(p.leader_epoch)
    return EpochEndOffset(
        error_code=ErrorCode.NONE,
        partition=p.partition,
        leader_epoch=epoch,
        end_offset=end,
    )
