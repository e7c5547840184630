"""Fetch (key 1), v0–18.

Version notes: v1 response adds throttle_time_ms; v2 message format v1; v3 adds max_bytes
(partition order becomes relevant); v4 adds isolation_level, and the response
last_stable_offset and aborted_transactions (record batch format v2); v5 adds
log_start_offset on both sides; v6 same as v5; v7 incremental fetch sessions: session_id,
session_epoch, forgotten_topics_data, and a top-level response error_code and session_id;
v8 same as v7; v9 adds current_leader_epoch (KIP-320); v10 zstd (KIP-110); v11 adds rack_id
and preferred_read_replica (KIP-392); v12 flexible, adds last_fetched_epoch and tagged
cluster_id, diverging_epoch, current_leader, snapshot_id; v13 topic_id replaces the topic
name (KIP-516); v14 same as v13 (KIP-405 error); v15 tagged replica_state replaces
replica_id (KIP-903); v16 response adds tagged node_endpoints (KIP-951); v17 tagged
replica_directory_id (KIP-853); v18 tagged high_watermark (KIP-1166).
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.schema import (
    INT8,
    INT16,
    INT32,
    INT64,
    RECORDS,
    STRING,
    UUID,
    Array,
    Buffer,
    Nullable,
    Struct,
    f,
    message,
    struct,
)


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class ReplicaState:
    replica_id: int = f(INT32, versions="15+", default=-1)
    replica_epoch: int = f(INT64, versions="15+", default=-1)


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class FetchPartition:
    partition: int = f(INT32)
    current_leader_epoch: int = f(INT32, versions="9+", default=-1)
    fetch_offset: int = f(INT64)
    last_fetched_epoch: int = f(INT32, versions="12+", default=-1)
    log_start_offset: int = f(INT64, versions="5+", default=-1)
    partition_max_bytes: int = f(INT32)
    replica_directory_id: bytes = f(UUID, versions="17+", tag=0)
    high_watermark: int = f(INT64, versions="18+", tag=1, default=9223372036854775807)


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class FetchTopic:
    topic: str = f(STRING, versions="0-12")
    topic_id: bytes = f(UUID, versions="13+")
    partitions: tuple[FetchPartition, ...] = f(Array(FetchPartition))


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class ForgottenTopic:
    topic: str = f(STRING, versions="7-12")
    topic_id: bytes = f(UUID, versions="13+")
    partitions: tuple[int, ...] = f(Array(INT32), versions="7+")


@message(api_key=1, kind="request", valid="0-18", flexible="12+")
@dataclass(frozen=True, slots=True, kw_only=True)
class FetchRequest:
    cluster_id: str | None = f(Nullable(STRING, "12+"), versions="12+", tag=0)
    replica_id: int = f(INT32, versions="0-14", default=-1)
    replica_state: ReplicaState = f(Struct(ReplicaState), versions="15+", tag=1)
    max_wait_ms: int = f(INT32)
    min_bytes: int = f(INT32)
    max_bytes: int = f(INT32, versions="3+", default=2147483647)
    isolation_level: int = f(INT8, versions="4+")
    session_id: int = f(INT32, versions="7+")
    session_epoch: int = f(INT32, versions="7+", default=-1)
    topics: tuple[FetchTopic, ...] = f(Array(FetchTopic))
    forgotten_topics_data: tuple[ForgottenTopic, ...] = f(
        Array(ForgottenTopic), versions="7+"
    )
    rack_id: str = f(STRING, versions="11+")


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class EpochEndOffset:
    epoch: int = f(INT32, versions="12+", default=-1)
    end_offset: int = f(INT64, versions="12+", default=-1)


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class LeaderIdAndEpoch:
    leader_id: int = f(INT32, versions="12+", default=-1)
    leader_epoch: int = f(INT32, versions="12+", default=-1)


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotId:
    end_offset: int = f(INT64, default=-1)
    epoch: int = f(INT32, default=-1)


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class AbortedTransaction:
    producer_id: int = f(INT64, versions="4+")
    first_offset: int = f(INT64, versions="4+")


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class PartitionData:
    partition_index: int = f(INT32)
    error_code: int = f(INT16)
    high_watermark: int = f(INT64)
    last_stable_offset: int = f(INT64, versions="4+", default=-1)
    log_start_offset: int = f(INT64, versions="5+", default=-1)
    diverging_epoch: EpochEndOffset = f(Struct(EpochEndOffset), versions="12+", tag=0)
    current_leader: LeaderIdAndEpoch = f(
        Struct(LeaderIdAndEpoch), versions="12+", tag=1
    )
    snapshot_id: SnapshotId = f(Struct(SnapshotId), versions="12+", tag=2)
    aborted_transactions: tuple[AbortedTransaction, ...] | None = f(
        Nullable(Array(AbortedTransaction), "4+"), versions="4+"
    )
    preferred_read_replica: int = f(INT32, versions="11+", default=-1)
    records: Buffer | tuple[Buffer, ...] | None = f(RECORDS)


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class FetchableTopicResponse:
    topic: str = f(STRING, versions="0-12")
    topic_id: bytes = f(UUID, versions="13+")
    partitions: tuple[PartitionData, ...] = f(Array(PartitionData))


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class NodeEndpoint:
    node_id: int = f(INT32, versions="16+")
    host: str = f(STRING, versions="16+")
    port: int = f(INT32, versions="16+")
    rack: str | None = f(Nullable(STRING, "16+"), versions="16+")


@message(api_key=1, kind="response", valid="0-18", flexible="12+")
@dataclass(frozen=True, slots=True, kw_only=True)
class FetchResponse:
    throttle_time_ms: int = f(INT32, versions="1+")
    error_code: int = f(INT16, versions="7+")
    session_id: int = f(INT32, versions="7+")
    responses: tuple[FetchableTopicResponse, ...] = f(Array(FetchableTopicResponse))
    node_endpoints: tuple[NodeEndpoint, ...] = f(
        Array(NodeEndpoint), versions="16+", tag=0
    )
