"""DeleteTopics (key 20), v0–6.

Behaviour: deletes each topic by name (v0–5) or by name or topic id (v6); its files
are removed, pending acks=all produces on it fail and long polls on it wake up.
Per topic: UNKNOWN_TOPIC_OR_PARTITION (by name), UNKNOWN_TOPIC_ID (by id),
KAFKA_STORAGE_ERROR.
Cluster mode: the controller deletes the topic; every broker's replica manager then
deletes its local topic (failing and waking what waits on it), and the answer comes
once this broker's is gone (a refusal or REQUEST_TIMED_OUT per topic otherwise).
Version notes: v4 flexible; v5 error messages; v6 topic ids.
"""

from __future__ import annotations

import structlog

from broker.net.dispatch import handler
from broker.net.request import Deferred, RequestContext
from broker.topics.errors import error_code
from protocol.error_codes import ErrorCode
from protocol.messages.delete_topics import (
    DeletableTopicResult,
    DeleteTopicsRequest,
    DeleteTopicsResponse,
)
from storage.errors import LogClosed, StorageError
from storage.log_manager import TopicMeta

log = structlog.get_logger("broker.topics")


@handler(api_key=20, name="delete_topics", max_version=6)
def delete_topics(rctx: RequestContext, request: DeleteTopicsRequest) -> object:
    ctx = rctx.broker
    wanted: list[tuple[str | None, bytes]] = (
        [(t.name, t.topic_id) for t in request.topics]
        if rctx.api_version >= 6
        else [(name, b"\x00" * 16) for name in request.topic_names]
    )
    results: list[DeletableTopicResult] = []
    deleting: list[tuple[int, TopicMeta]] = []  # cluster mode: (index, topic)
    for name, raw_id in wanted:
        meta = (
            ctx.topics.find(name) if name is not None else ctx.topics.find_by_id(raw_id)
        )
        if meta is None:
            code = (
                ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                if name is not None
                else ErrorCode.UNKNOWN_TOPIC_ID
            )
            ctx.metrics.error("delete_topics", code.name)
            results.append(
                DeletableTopicResult(
                    name=name, topic_id=raw_id, error_code=code, error_message=code.name
                )
            )
            continue
        if ctx.topics.cluster is not None:
            deleting.append((len(results), meta))
            results.append(_deleted(meta))
            continue
        try:
            logs = ctx.topics.delete_topic(meta)
        except StorageError as e:
            code = error_code(e)
            ctx.metrics.error("delete_topics", code.name)
            results.append(
                DeletableTopicResult(
                    name=meta.name,
                    topic_id=meta.topic_id,
                    error_code=code,
                    error_message=str(e),
                )
            )
            continue
        ctx.durability.fail_logs(logs, LogClosed(f"topic {meta.name} deleted"))
        # committed offsets and producer state of a deleted topic go with it, so a
        # topic re-created under the same name starts clean
        ctx.groups.on_topic_deleted(meta.name)
        for plog in logs:
            ctx.producers.forget(plog)
        log.info("topic_deleted", topic=meta.name, topic_id=str(meta.topic_uuid))
        results.append(_deleted(meta))
    if not deleting:
        return DeleteTopicsResponse(responses=tuple(results))

    async def in_cluster() -> DeleteTopicsResponse:
        for i, meta in deleting:
            error = await ctx.topics.request_delete(meta)
            if error is not None:
                code = error_code(error)
                ctx.metrics.error("delete_topics", code.name)
                results[i] = DeletableTopicResult(
                    name=meta.name,
                    topic_id=meta.topic_id,
                    error_code=code,
                    error_message=str(error),
                )
        return DeleteTopicsResponse(responses=tuple(results))

    return Deferred(in_cluster)


def _deleted(meta: TopicMeta) -> DeletableTopicResult:
    return DeletableTopicResult(
        name=meta.name, topic_id=meta.topic_id, error_code=ErrorCode.NONE
    )
