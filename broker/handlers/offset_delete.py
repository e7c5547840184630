"""OffsetDelete (key 47), v0 (KIP-496).

Behaviour: deletes a group's committed offsets of the named partitions, by Kafka's
rules (:mod:`broker.groups.offset_delete`): any of an Empty group's; of a
``consumer`` group with members only those of topics no member subscribes to (the
others answer GROUP_SUBSCRIBED_TO_TOPIC, 86); a partition that does not exist
answers UNKNOWN_TOPIC_OR_PARTITION, as Kafka's ``KafkaApis`` checks it first.
Top-level errors:
GROUP_ID_NOT_FOUND (no such group), NON_EMPTY_GROUP (members of another protocol
type), NOT_COORDINATOR / COORDINATOR_LOAD_IN_PROGRESS (cluster mode: another
broker coordinates the group, or its offsets are loading), COORDINATOR_NOT_AVAILABLE
(store failure). A partition without a committed offset answers NONE. Answered once
the deletion is fsynced (cluster mode: replicated in ``__consumer_offsets``).
Version notes: v0 only.
"""

from __future__ import annotations

from broker.net.dispatch import handler
from broker.net.request import Deferred, RequestContext
from protocol.error_codes import ErrorCode
from protocol.messages.offset_delete import (
    OffsetDeleteRequest,
    OffsetDeleteResponse,
    OffsetDeleteResponsePartition,
    OffsetDeleteResponseTopic,
)


def _exists(rctx: RequestContext, topic: str, index: int) -> bool:
    """Whether the partition exists (Kafka answers UNKNOWN_TOPIC_OR_PARTITION for
    one its metadata cache lacks, before asking the coordinator)."""
    topics = rctx.broker.topics
    cache = topics.cache
    if cache is not None:
        return cache.partition(topic, index) is not None
    meta = topics.find(topic)
    return meta is not None and 0 <= index < meta.partition_count


@handler(api_key=47, name="offset_delete", max_version=0)
def offset_delete(rctx: RequestContext, request: OffsetDeleteRequest) -> object:
    refused = rctx.group_refusal(request.group_id)
    if refused != ErrorCode.NONE:
        return OffsetDeleteResponse(error_code=refused)
    wanted = [(t.name, p.partition_index) for t in request.topics for p in t.partitions]
    exists = {tp: _exists(rctx, *tp) for tp in wanted}
    known = [tp for tp, ok in exists.items() if ok]
    unknown = {
        tp: ErrorCode.UNKNOWN_TOPIC_OR_PARTITION for tp, ok in exists.items() if not ok
    }
    groups = rctx.broker.groups

    async def delete() -> OffsetDeleteResponse:
        top, codes = await groups.delete_offsets(request.group_id, known)
        codes = {**codes, **unknown}
        if top != ErrorCode.NONE:
            rctx.broker.metrics.error("offset_delete", ErrorCode(top).name)
            return OffsetDeleteResponse(error_code=top)
        return OffsetDeleteResponse(
            error_code=ErrorCode.NONE,
            topics=tuple(
                OffsetDeleteResponseTopic(
                    name=t.name,
                    partitions=tuple(
                        OffsetDeleteResponsePartition(
                            partition_index=p.partition_index,
                            error_code=codes.get(
                                (t.name, p.partition_index), ErrorCode.NONE
                            ),
                        )
                        for p in t.partitions
                    ),
                )
                for t in request.topics
            ),
        )

    return Deferred(delete)
