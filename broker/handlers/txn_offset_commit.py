"""TxnOffsetCommit (key 28), v0–4: a transactional producer's consumer offsets.

Behaviour: the offsets are written as the producer's pending offsets (single
node: ``txn_offset`` lines of the offset store, fsynced; cluster mode: a
transactional batch of the producer in the group's ``__consumer_offsets``
partition, replicated) and answered once durable. They are invisible to
OffsetFetch until the producer's transaction commits
(``GroupService.complete_txn_offsets``, or the COMMIT marker in
``__consumer_offsets``); an abort drops them. A plain commit written while they
are pending wins over them (the last record written wins, as Kafka).
Errors per partition: NOT_COORDINATOR / COORDINATOR_LOAD_IN_PROGRESS (cluster
mode), INVALID_GROUP_ID, FENCED_INSTANCE_ID, UNKNOWN_MEMBER_ID,
ILLEGAL_GENERATION (v3+ member and generation, checked only when given, KIP-447),
INVALID_PRODUCER_EPOCH (an epoch older than the producer's),
OFFSET_METADATA_TOO_LARGE, UNKNOWN_TOPIC_OR_PARTITION, COORDINATOR_NOT_AVAILABLE
(store failure or replication timeout). With ACLs: WRITE on the transactional id
(else TRANSACTIONAL_ID_AUTHORIZATION_FAILED everywhere), READ on the group
(GROUP_AUTHORIZATION_FAILED), READ on each topic (TOPIC_AUTHORIZATION_FAILED).
Version notes: v2 committed leader epoch; v3 flexible, generation/member/instance
id; v4 (KIP-890 part 1) is served as v3; v5 (KIP-890 part 2: the broker adds the
group to the transaction) is not offered, since ``transaction.version`` is 0.
"""

from __future__ import annotations

from broker.groups.offsets import CommitPartition
from broker.net.dispatch import handler
from broker.net.request import Deferred, RequestContext
from protocol.error_codes import ErrorCode
from protocol.messages.txn_offset_commit import (
    TxnOffsetCommitRequest,
    TxnOffsetCommitResponse,
    TxnOffsetCommitResponsePartition,
    TxnOffsetCommitResponseTopic,
)


def _response(
    request: TxnOffsetCommitRequest, errors: dict[tuple[str, int], ErrorCode]
) -> TxnOffsetCommitResponse:
    return TxnOffsetCommitResponse(
        topics=tuple(
            TxnOffsetCommitResponseTopic(
                name=t.name,
                partitions=tuple(
                    TxnOffsetCommitResponsePartition(
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


@handler(api_key=28, name="txn_offset_commit", max_version=4)
def txn_offset_commit(rctx: RequestContext, request: TxnOffsetCommitRequest) -> object:
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
        )
        for t in request.topics
        for p in t.partitions
    ]

    async def commit() -> TxnOffsetCommitResponse:
        errors = await svc.txn_commit_offsets(
            request.group_id,
            request.producer_id,
            request.producer_epoch,
            request.member_id,
            request.generation_id,
            request.group_instance_id,
            partitions,
        )
        return _response(request, errors)

    return Deferred(commit)
