"""AlterPartitionReassignments (key 45), v0 (KIP-455).

Behaviour: moves each named partition to the given replicas (the first is the
preferred leader); a null replica list cancels the partition's reassignment in
progress. Cluster mode: each one is a request to the controller (through the
cluster service), answered once this broker's cache shows it started (the
partition's replicas are then the target plus the current ones, with ``adding`` and
``removing``; it completes when every target replica is in the ISR). Per partition:
UNKNOWN_TOPIC_OR_PARTITION, INVALID_REPLICA_ASSIGNMENT (empty, duplicates, unknown
brokers: the controller's check), NO_REASSIGNMENT_IN_PROGRESS (cancelling none),
REQUEST_TIMED_OUT. On a single node the only valid target is this node (a no-op);
any other replica set gets INVALID_REPLICA_ASSIGNMENT, a cancellation
NO_REASSIGNMENT_IN_PROGRESS.
Version notes: flexible from v0.
"""

from __future__ import annotations

from broker.cluster.outcomes import Outcomes, ask_each, by_topic
from broker.net.dispatch import handler
from broker.net.request import Deferred, RequestContext
from protocol.error_codes import ErrorCode
from protocol.messages.alter_partition_reassignments import (
    AlterPartitionReassignmentsRequest,
    AlterPartitionReassignmentsResponse,
    ReassignablePartitionResponse,
    ReassignableTopicResponse,
)


@handler(api_key=45, name="alter_partition_reassignments", max_version=0)
def alter_partition_reassignments(
    rctx: RequestContext, request: AlterPartitionReassignmentsRequest
) -> object:
    ctx = rctx.broker
    cache = ctx.topics.cache
    cluster = ctx.topics.cluster
    node = ctx.config.node_id
    results: Outcomes = {}
    asking: list[tuple[str, int, tuple[int, ...]]] = []
    for t in request.topics:
        for p in t.partitions:
            key = (t.name, p.partition_index)
            target = p.replicas
            if cache is None:
                meta = ctx.topics.find(t.name)
                if meta is None or not 0 <= p.partition_index < meta.partition_count:
                    results[key] = (ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, None)
                elif target is None:
                    results[key] = (ErrorCode.NO_REASSIGNMENT_IN_PROGRESS, None)
                elif tuple(target) != (node,):
                    results[key] = (
                        ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                        f"only broker {node} exists",
                    )
                else:
                    results[key] = (ErrorCode.NONE, None)
            elif cache.partition(t.name, p.partition_index) is None:
                results[key] = (ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, None)
            elif target is not None and (not target or len(set(target)) != len(target)):
                results[key] = (
                    ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                    "replicas must be distinct and not empty",
                )
            else:
                results[key] = (ErrorCode.NONE, None)
                asking.append((t.name, p.partition_index, tuple(target or ())))

    def response() -> AlterPartitionReassignmentsResponse:
        grouped = by_topic(results, ctx.metrics, "alter_partition_reassignments")
        return AlterPartitionReassignmentsResponse(
            error_code=ErrorCode.NONE,
            responses=tuple(
                ReassignableTopicResponse(
                    name=topic,
                    partitions=tuple(
                        ReassignablePartitionResponse(
                            partition_index=index, error_code=code, error_message=msg
                        )
                        for index, code, msg in ps
                    ),
                )
                for topic, ps in grouped.items()
            ),
        )

    if not asking or cluster is None:
        return response()

    async def reassign() -> AlterPartitionReassignmentsResponse:
        await ask_each(asking, cluster.reassign, results)
        return response()

    return Deferred(reassign)
