"""OffsetForLeaderEpoch (key 23), v0–4.

Behaviour: for each partition, the largest leader epoch <= the requested one and
its end offset (the start of the next epoch, or the log end offset for the latest
epoch), as consumers use it to detect log truncation (KIP-320). This node's epoch
is always 0; a request for epoch 0 gets (0, log end offset); a
``current_leader_epoch`` above 0 gets UNKNOWN_LEADER_EPOCH. Per partition:
UNKNOWN_TOPIC_OR_PARTITION.
Version notes: v1 returns the epoch; v2 current_leader_epoch; v3 replica id; v4
flexible.
"""

from __future__ import annotations

from broker.dispatch import RequestContext, handler
from broker.handlers._common import error_code, find_topic, leader_epoch
from protocol.error_codes import ErrorCode
from protocol.messages.offset_for_leader_epoch import (
    EpochEndOffset,
    OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse,
    OffsetForLeaderTopicResult,
)
from storage.errors import StorageError


@handler(api_key=23, name="offset_for_leader_epoch", max_version=4)
def offset_for_leader_epoch(
    rctx: RequestContext, request: OffsetForLeaderEpochRequest
) -> OffsetForLeaderEpochResponse:
    ctx = rctx.broker
    topics = []
    for topic in request.topics:
        meta = find_topic(ctx, topic.topic)
        parts = []
        for p in topic.partitions:

            def fail(code: ErrorCode, index: int = p.partition) -> EpochEndOffset:
                ctx.metrics.error("offset_for_leader_epoch", code.name)
                return EpochEndOffset(error_code=code, partition=index)

            if meta is None:
                parts.append(fail(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION))
                continue
            try:
                plog = ctx.logs.partition(meta.name, p.partition)
                current = leader_epoch(plog)
                if p.current_leader_epoch > current:
                    parts.append(fail(ErrorCode.UNKNOWN_LEADER_EPOCH))
                    continue
                if p.leader_epoch > current:
                    epoch, end = -1, -1
                elif p.leader_epoch == current or plog.leader_epoch < 0:
                    epoch, end = current, plog.log_end_offset
                else:
                    epoch, end = plog.epoch_end_offset(p.leader_epoch)
            except StorageError as e:
                parts.append(fail(error_code(e)))
                continue
            parts.append(
                EpochEndOffset(
                    error_code=ErrorCode.NONE,
                    partition=p.partition,
                    leader_epoch=epoch,
                    end_offset=end,
                )
            )
        topics.append(
            OffsetForLeaderTopicResult(topic=topic.topic, partitions=tuple(parts))
        )
    return OffsetForLeaderEpochResponse(topics=tuple(topics))
