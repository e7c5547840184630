"""DeleteRecords (key 21), v0–2.

Behaviour: moves each partition's log start offset to ``offset`` (-1 = the high
watermark); whole segments below it are deleted. Returns the new low watermark.
Per partition: UNKNOWN_TOPIC_OR_PARTITION, NOT_LEADER_OR_FOLLOWER (this node does
not lead it), OFFSET_OUT_OF_RANGE (above the high
watermark or below -1), KAFKA_STORAGE_ERROR.
Version notes: v2 flexible.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

import structlog

from broker.net.dispatch import handler
from broker.net.request import RequestContext
from protocol.error_codes import ErrorCode
from protocol.messages.delete_records import (
    DeleteRecordsPartition,
    DeleteRecordsPartitionResult,
    DeleteRecordsRequest,
    DeleteRecordsResponse,
    DeleteRecordsTopicResult,
)

if TYPE_CHECKING:
    from broker.context import BrokerContext
    from storage.log_manager import TopicMeta
    from storage.partition_log import PartitionLog

log = structlog.get_logger("broker.topics")


@handler(api_key=21, name="delete_records", max_version=2)
def delete_records(
    rctx: RequestContext, request: DeleteRecordsRequest
) -> DeleteRecordsResponse:
    ctx = rctx.broker
    topics = []
    for topic in request.topics:
        meta = ctx.topics.find(topic.name)
        parts = tuple(
            ctx.topics.answer_partition(
                "delete_records",
                meta,
                p.partition_index,
                partial(_delete, ctx, p),
                partial(_failed, p),
            )
            for p in topic.partitions
        )
        topics.append(DeleteRecordsTopicResult(name=topic.name, partitions=parts))
    return DeleteRecordsResponse(topics=tuple(topics))


def _failed(p: DeleteRecordsPartition, code: ErrorCode) -> DeleteRecordsPartitionResult:
    return DeleteRecordsPartitionResult(
        partition_index=p.partition_index, low_watermark=-1, error_code=code
    )


def _delete(
    ctx: BrokerContext, p: DeleteRecordsPartition, meta: TopicMeta, plog: PartitionLog
) -> DeleteRecordsPartitionResult | ErrorCode:
    state = ctx.topics.state(meta, plog)
    refused = state.refusal()
    if refused is not None:
        return refused
    hw = state.high_watermark
    offset = hw if p.offset == -1 else p.offset
    if offset < 0 or offset > hw:
        return ErrorCode.OFFSET_OUT_OF_RANGE
    low = plog.delete_records(offset)
    log.info(
        "records_deleted",
        topic=meta.name,
        partition=p.partition_index,
        log_start_offset=low,
    )
    return DeleteRecordsPartitionResult(
        partition_index=p.partition_index,
        low_watermark=low,
        error_code=ErrorCode.NONE,
    )
