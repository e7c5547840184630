"""CreatePartitions (key 37), v0–3.

Behaviour: grows a topic to ``count`` partitions. Per topic:
UNKNOWN_TOPIC_OR_PARTITION, INVALID_PARTITIONS (count not above the current one),
INVALID_REPLICA_ASSIGNMENT (assignments naming another broker or of the wrong
length), INVALID_REQUEST (topic twice in a request). ``validate_only`` changes
nothing.
Version notes: v2 flexible.
"""

from __future__ import annotations

from collections import Counter

import structlog

from broker.dispatch import RequestContext, handler
from broker.handlers._common import error_code, find_topic
from protocol.error_codes import ErrorCode
from protocol.messages.create_partitions import (
    CreatePartitionsRequest,
    CreatePartitionsResponse,
    CreatePartitionsTopicResult,
)
from storage.errors import StorageError

log = structlog.get_logger("broker.topics")


@handler(api_key=37, name="create_partitions", max_version=3)
def create_partitions(
    rctx: RequestContext, request: CreatePartitionsRequest
) -> CreatePartitionsResponse:
    ctx = rctx.broker
    counts = Counter(t.name for t in request.topics)
    results = []
    for t in request.topics:

        def result(
            code: ErrorCode, message: str | None = None, name: str = t.name
        ) -> CreatePartitionsTopicResult:
            if code:
                ctx.metrics.error("create_partitions", code.name)
            return CreatePartitionsTopicResult(
                name=name, error_code=code, error_message=message
            )

        if counts[t.name] > 1:
            results.append(result(ErrorCode.INVALID_REQUEST, "duplicate topic"))
            continue
        meta = find_topic(ctx, t.name)
        if meta is None:
            results.append(
                result(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "unknown topic")
            )
            continue
        if t.count <= meta.partition_count:
            results.append(
                result(
                    ErrorCode.INVALID_PARTITIONS,
                    f"topic has {meta.partition_count} partitions; "
                    f"{t.count} is not more",
                )
            )
            continue
        if t.assignments is not None:
            node = ctx.config.node_id
            if len(t.assignments) != t.count - meta.partition_count or any(
                set(a.broker_ids) != {node} for a in t.assignments
            ):
                results.append(
                    result(ErrorCode.INVALID_REPLICA_ASSIGNMENT, "bad assignment")
                )
                continue
        if request.validate_only:
            results.append(result(ErrorCode.NONE))
            continue
        try:
            ctx.logs.add_partitions(t.name, t.count)
        except StorageError as e:
            results.append(result(error_code(e), str(e)))
            continue
        log.info(
            "topic_partitions_added",
            topic=t.name,
            old=meta.partition_count,
            partitions=t.count,
        )
        results.append(result(ErrorCode.NONE))
    return CreatePartitionsResponse(results=tuple(results))
