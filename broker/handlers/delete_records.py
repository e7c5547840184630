"""DeleteRecords (key 21), v0–2.

Behaviour: moves each partition's log start offset to ``offset`` (-1 = the high
watermark); whole segments below it are deleted. Returns the new low watermark.
Per partition: UNKNOWN_TOPIC_OR_PARTITION, OFFSET_OUT_OF_RANGE (above the high
watermark or below -1), KAFKA_STORAGE_ERROR.
Version notes: v2 flexible.
"""

from __future__ import annotations

import structlog

from broker.dispatch import RequestContext, handler
from broker.handlers._common import error_code, find_topic
from protocol.error_codes import ErrorCode
from protocol.messages.delete_records import (
    DeleteRecordsPartitionResult,
    DeleteRecordsRequest,
    DeleteRecordsResponse,
    DeleteRecordsTopicResult,
)
from storage.errors import StorageError

log = structlog.get_logger("broker.topics")


@handler(api_key=21, name="delete_records", max_version=2)
def delete_records(
    rctx: RequestContext, request: DeleteRecordsRequest
) -> DeleteRecordsResponse:
    ctx = rctx.broker
    topics = []
    for topic in request.topics:
        meta = find_topic(ctx, topic.name)
        parts = []
        for p in topic.partitions:

            def fail(
                code: ErrorCode, index: int = p.partition_index
            ) -> DeleteRecordsPartitionResult:
                ctx.metrics.error("delete_records", code.name)
                return DeleteRecordsPartitionResult(
                    partition_index=index, low_watermark=-1, error_code=code
                )

            if meta is None:
                parts.append(fail(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION))
                continue
            try:
                plog = ctx.logs.partition(meta.name, p.partition_index)
                hw = ctx.high_watermark(plog, meta.config.write_caching)
                offset = hw if p.offset == -1 else p.offset
                if offset < 0 or offset > hw:
                    parts.append(fail(ErrorCode.OFFSET_OUT_OF_RANGE))
                    continue
                low = plog.delete_records(offset)
            except StorageError as e:
                parts.append(fail(error_code(e)))
                continue
            log.info(
                "records_deleted",
                topic=meta.name,
                partition=p.partition_index,
                log_start_offset=low,
            )
            parts.append(
                DeleteRecordsPartitionResult(
                    partition_index=p.partition_index,
                    low_watermark=low,
                    error_code=ErrorCode.NONE,
                )
            )
        topics.append(
            DeleteRecordsTopicResult(name=topic.name, partitions=tuple(parts))
        )
    return DeleteRecordsResponse(topics=tuple(topics))
