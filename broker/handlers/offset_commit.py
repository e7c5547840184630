"""OffsetCommit (key 8), v0–9.

Behaviour: offsets (with metadata and leader epoch) are written to the durable
offset store and the response is sent once they are fsynced (a Deferred response,
sharing the broker's group-commit fsync rounds). Generation -1 with an empty member
id is a "simple" commit of a standalone consumer (the group needs no members);
otherwise the member and generation must be current. Errors per partition:
ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, REBALANCE_IN_PROGRESS (between join and sync),
FENCED_INSTANCE_ID, UNKNOWN_TOPIC_OR_PARTITION, OFFSET_METADATA_TOO_LARGE
(offset.metadata.max.bytes), INVALID_GROUP_ID, COORDINATOR_NOT_AVAILABLE (store
failure or groups not wired), NOT_COORDINATOR on every partition (another broker
coordinates the group; cluster mode).
Version notes: v1 generation/member id and a per-partition commit timestamp; v2–4
retention_time_ms (explicit expiry); v3 throttle time; v5 drops retention; v6
committed leader epoch; v7 group_instance_id; v8 flexible; v10 (topic ids) is not
offered.
"""

from __future__ import annotations

from broker.groups.offsets import CommitPartition
from broker.net.dispatch import handler
from broker.net.request import Deferred, RequestContext
from protocol.error_codes import ErrorCode
from protocol.messages.offset_commit import (
    OffsetCommitRequest,
    OffsetCommitResponse,
    OffsetCommitResponsePartition,
    OffsetCommitResponseTopic,
)


def _response(
    request: OffsetCommitRequest, errors: dict[tuple[str, int], ErrorCode]
) -> OffsetCommitResponse:
    return OffsetCommitResponse(
        topics=tuple(
            OffsetCommitResponseTopic(
                name=t.name,
                partitions=tuple(
                    OffsetCommitResponsePartition(
                        partition_index=p.partition_index,
                        error_code=errors.get(
                            (t.name, p.partition_index), ErrorCode.UNKNOWN_SERVER_ERROR
                        ),
                    )
                    for p in t.partitions
                ),
            )
            for t in request.topics
        )
    )


@handler(api_key=8, name="offset_commit", max_version=9)
def offset_commit(rctx: RequestContext, request: OffsetCommitRequest) -> object:
    refused = rctx.group_refusal(request.group_id)
    if refused != ErrorCode.NONE:
        return _response(
            request,
            {
                (t.name, p.partition_index): refused
                for t in request.topics
                for p in t.partitions
            },
        )
    svc = rctx.broker.groups
    partitions = [
        CommitPartition(
            topic=t.name,
            partition=p.partition_index,
            offset=p.committed_offset,
            leader_epoch=p.committed_leader_epoch,
            metadata=p.committed_metadata,
            commit_timestamp_ms=p.commit_timestamp,
        )
        for t in request.topics
        for p in t.partitions
    ]
    version = rctx.api_version

    async def commit() -> OffsetCommitResponse:
        errors = await svc.commit_offsets(
            request.group_id,
            request.member_id,
            request.generation_id_or_member_epoch if version >= 1 else -1,
            request.group_instance_id or None,
            partitions,
            retention_time_ms=request.retention_time_ms if 2 <= version <= 4 else -1,
        )
        return _response(request, errors)

    return Deferred(commit)
