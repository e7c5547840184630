"""CreatePartitions (key 37), v0–3.

Behaviour: grows a topic to ``count`` partitions. Per topic:
UNKNOWN_TOPIC_OR_PARTITION, INVALID_PARTITIONS (count not above the current one),
INVALID_REPLICA_ASSIGNMENT (assignments naming another broker or of the wrong
length), INVALID_REQUEST (topic twice in a request), POLICY_VIOLATION (the request
would add more than ``ailurus.max.partitions.per.request`` partitions, or the broker
would hold more than ``ailurus.max.partitions``). ``validate_only`` changes nothing.
The partitions are made in a worker thread. Cluster mode: the controller places
the new partitions' replicas (or takes the assignment) and may refuse with Kafka's
codes; the answer comes once this broker's topic has grown.
Version notes: v2 flexible.
"""

from __future__ import annotations

from collections import Counter

import structlog

from broker.net.dispatch import handler
from broker.net.request import Deferred, RequestContext
from broker.topics.errors import error_code
from protocol.error_codes import ErrorCode
from protocol.messages.create_partitions import (
    CreatePartitionsRequest,
    CreatePartitionsResponse,
    CreatePartitionsTopicResult,
)

log = structlog.get_logger("broker.topics")


@handler(api_key=37, name="create_partitions", max_version=3)
def create_partitions(rctx: RequestContext, request: CreatePartitionsRequest) -> object:
    ctx = rctx.broker
    counts = Counter(t.name for t in request.topics)
    results: list[CreatePartitionsTopicResult] = []
    # (index, topic, old count, new count, the new partitions' replicas if given)
    growing: list[tuple[int, str, int, int, tuple[tuple[int, ...], ...] | None]] = []
    requested = 0
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
        meta = ctx.topics.find(t.name)
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
            if len(t.assignments) != t.count - meta.partition_count or (
                ctx.topics.cluster is None
                and any(set(a.broker_ids) != {node} for a in t.assignments)
            ):
                results.append(
                    result(ErrorCode.INVALID_REPLICA_ASSIGNMENT, "bad assignment")
                )
                continue
        adding = t.count - meta.partition_count
        refused = ctx.topics.request_room(
            requested, adding
        ) or ctx.topics.partition_room(requested + adding)
        if refused is not None:
            results.append(result(ErrorCode.POLICY_VIOLATION, refused))
            continue
        requested += adding
        if not request.validate_only:
            assignment = (
                None
                if t.assignments is None
                else tuple(tuple(a.broker_ids) for a in t.assignments)
            )
            growing.append(
                (len(results), t.name, meta.partition_count, t.count, assignment)
            )
        results.append(result(ErrorCode.NONE))
    if not growing:
        return CreatePartitionsResponse(results=tuple(results))

    async def run() -> CreatePartitionsResponse:
        errors = await ctx.topics.add_partitions(
            [(name, count, assignment) for _, name, _, count, assignment in growing]
        )
        for (i, name, old, count, _), error in zip(growing, errors, strict=True):
            if error is not None:
                code = error_code(error)
                ctx.metrics.error("create_partitions", code.name)
                results[i] = CreatePartitionsTopicResult(
                    name=name, error_code=code, error_message=str(error)
                )
                continue
            if ctx.topics.cluster is None:  # the replica manager logs it otherwise
                log.info(
                    "topic_partitions_added", topic=name, old=old, partitions=count
                )
        return CreatePartitionsResponse(results=tuple(results))

    return Deferred(run)
