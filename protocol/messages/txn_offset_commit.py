"""TxnOffsetCommit (key 28), v0–5: a transactional producer's consumer offsets.

Sent to the group coordinator (KIP-98) after AddOffsetsToTxn: the offsets become
visible only when the producer's transaction commits. Version notes: v2 adds the
committed leader epoch; v3 flexible, with the generation, member id and group
instance id of the consumer (KIP-447 fencing); v4 is v3 for clients that handle
TRANSACTION_ABORTABLE (KIP-890 part 1); v5 is v4 for the transaction protocol of
KIP-890 part 2 (the broker adds the group to the transaction itself).
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.schema import (
    INT16,
    INT32,
    INT64,
    STRING,
    Array,
    Nullable,
    f,
    message,
    struct,
)


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class TxnOffsetCommitRequestPartition:
    partition_index: int = f(INT32)
    committed_offset: int = f(INT64)
    committed_leader_epoch: int = f(INT32, versions="2+", default=-1)
    committed_metadata: str | None = f(Nullable(STRING))


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class TxnOffsetCommitRequestTopic:
    name: str = f(STRING)
    partitions: tuple[TxnOffsetCommitRequestPartition, ...] = f(
        Array(TxnOffsetCommitRequestPartition)
    )


@message(api_key=28, kind="request", valid="0-5", flexible="3+")
@dataclass(frozen=True, slots=True, kw_only=True)
class TxnOffsetCommitRequest:
    transactional_id: str = f(STRING)
    group_id: str = f(STRING)
    producer_id: int = f(INT64)
    producer_epoch: int = f(INT16)
    generation_id: int = f(INT32, versions="3+", default=-1)
    member_id: str = f(STRING, versions="3+")
    group_instance_id: str | None = f(Nullable(STRING, "3+"), versions="3+")
    topics: tuple[TxnOffsetCommitRequestTopic, ...] = f(
        Array(TxnOffsetCommitRequestTopic)
    )


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class TxnOffsetCommitResponsePartition:
    partition_index: int = f(INT32)
    error_code: int = f(INT16)


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class TxnOffsetCommitResponseTopic:
    name: str = f(STRING)
    partitions: tuple[TxnOffsetCommitResponsePartition, ...] = f(
        Array(TxnOffsetCommitResponsePartition)
    )


@message(api_key=28, kind="response", valid="0-5", flexible="3+")
@dataclass(frozen=True, slots=True, kw_only=True)
class TxnOffsetCommitResponse:
    throttle_time_ms: int = f(INT32)
    topics: tuple[TxnOffsetCommitResponseTopic, ...] = f(
        Array(TxnOffsetCommitResponseTopic)
    )
