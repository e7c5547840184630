"""OffsetCommit (key 8), v0–10.

Version notes: v0 commits to ZooKeeper-era storage; v1 adds generation_id_or_member_epoch,
member_id and a per-partition commit_timestamp (v1 only); v2 replaces commit_timestamp
with retention_time_ms (v2–4); v3 response adds throttle_time_ms; v4 same as v3; v5 drops
retention_time_ms; v6 adds committed_leader_epoch; v7 adds group_instance_id; v8 flexible;
v9 same fields, usable with the consumer group protocol (KIP-848); v10 topic_id replaces
the topic name.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.schema import (
    INT16,
    INT32,
    INT64,
    STRING,
    UUID,
    Array,
    Nullable,
    f,
    message,
    struct,
)


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class OffsetCommitRequestPartition:
    partition_index: int = f(INT32)
    committed_offset: int = f(INT64)
    committed_leader_epoch: int = f(INT32, versions="6+", default=-1)
    commit_timestamp: int = f(INT64, versions="1", default=-1)
    committed_metadata: str | None = f(Nullable(STRING))


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class OffsetCommitRequestTopic:
    name: str = f(STRING, versions="0-9")
    topic_id: bytes = f(UUID, versions="10+")
    partitions: tuple[OffsetCommitRequestPartition, ...] = f(
        Array(OffsetCommitRequestPartition)
    )


@message(api_key=8, kind="request", valid="0-10", flexible="8+")
@dataclass(frozen=True, slots=True, kw_only=True)
class OffsetCommitRequest:
    group_id: str = f(STRING)
    generation_id_or_member_epoch: int = f(INT32, versions="1+", default=-1)
    member_id: str = f(STRING, versions="1+")
    group_instance_id: str | None = f(Nullable(STRING, "7+"), versions="7+")
    retention_time_ms: int = f(INT64, versions="2-4", default=-1)
    topics: tuple[OffsetCommitRequestTopic, ...] = f(Array(OffsetCommitRequestTopic))


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class OffsetCommitResponsePartition:
    partition_index: int = f(INT32)
    error_code: int = f(INT16)


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class OffsetCommitResponseTopic:
    name: str = f(STRING, versions="0-9")
    topic_id: bytes = f(UUID, versions="10+")
    partitions: tuple[OffsetCommitResponsePartition, ...] = f(
        Array(OffsetCommitResponsePartition)
    )


@message(api_key=8, kind="response", valid="0-10", flexible="8+")
@dataclass(frozen=True, slots=True, kw_only=True)
class OffsetCommitResponse:
    throttle_time_ms: int = f(INT32, versions="3+")
    topics: tuple[OffsetCommitResponseTopic, ...] = f(Array(OffsetCommitResponseTopic))
