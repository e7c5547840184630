"""ListPartitionReassignments (key 46), v0 (KIP-455).

Behaviour: the reassignments in progress (a partition whose ``adding`` or
``removing`` replicas are not empty), from the watched cache in cluster mode: each
one's replicas, adding and removing replicas. A null topic list means every
partition; named partitions without a reassignment in progress (or unknown) are
left out, as Kafka does. On a single node nothing is ever reassigned: the answer is
empty.
Version notes: flexible from v0.
"""

from __future__ import annotations

from broker.net.dispatch import handler
from broker.net.request import RequestContext
from protocol.error_codes import ErrorCode
from protocol.messages.list_partition_reassignments import (
    ListPartitionReassignmentsRequest,
    ListPartitionReassignmentsResponse,
    OngoingPartitionReassignment,
    OngoingTopicReassignment,
)


@handler(api_key=46, name="list_partition_reassignments", max_version=0)
def list_partition_reassignments(
    rctx: RequestContext, request: ListPartitionReassignmentsRequest
) -> ListPartitionReassignmentsResponse:
    cache = rctx.broker.topics.cache
    if cache is None:
        return ListPartitionReassignmentsResponse(error_code=ErrorCode.NONE)
    wanted: dict[str, set[int] | None] = (
        {t.name: None for t in cache.topics()}
        if request.topics is None
        else {t.name: set(t.partition_indexes) for t in request.topics}
    )
    topics = []
    for name, indexes in wanted.items():
        record = cache.topic(name)
        count = 0 if record is None else record.partitions
        states = [(i, cache.partition(name, i)) for i in range(count)]
        ongoing = tuple(
            OngoingPartitionReassignment(
                partition_index=i,
                replicas=p.replicas,
                adding_replicas=p.adding,
                removing_replicas=p.removing,
            )
            for i, p in states
            if p is not None
            and (p.adding or p.removing)
            and (indexes is None or i in indexes)
        )
        if ongoing:
            topics.append(OngoingTopicReassignment(name=name, partitions=ongoing))
    return ListPartitionReassignmentsResponse(
        error_code=ErrorCode.NONE, topics=tuple(topics)
    )
