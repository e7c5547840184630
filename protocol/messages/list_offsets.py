"""ListOffsets (key 2), v0–11.

Version notes: v0 asks for up to max_num_offsets offsets and answers old_style_offsets;
v1 answers a single timestamp and offset instead; v2 adds isolation_level and response
throttle_time_ms; v3 same as v2; v4 adds current_leader_epoch and response leader_epoch;
v5 may return OFFSET_NOT_AVAILABLE; v6 flexible; v7 max timestamp (-3, KIP-734); v8 local
log start offset (-4, KIP-405); v9 last tiered offset (-5, KIP-1005); v10 adds timeout_ms
(KIP-1075); v11 earliest pending upload offset (KIP-1023).
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.schema import INT8, INT16, INT32, INT64, STRING, Array, f, message, struct


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class ListOffsetsPartition:
    partition_index: int = f(INT32)
    current_leader_epoch: int = f(INT32, versions="4+", default=-1)
    timestamp: int = f(INT64)
    max_num_offsets: int = f(INT32, versions="0", default=1)


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class ListOffsetsTopic:
    name: str = f(STRING)
    partitions: tuple[ListOffsetsPartition, ...] = f(Array(ListOffsetsPartition))


@message(api_key=2, kind="request", valid="0-11", flexible="6+")
@dataclass(frozen=True, slots=True, kw_only=True)
class ListOffsetsRequest:
    replica_id: int = f(INT32)
    isolation_level: int = f(INT8, versions="2+")
    topics: tuple[ListOffsetsTopic, ...] = f(Array(ListOffsetsTopic))
    timeout_ms: int = f(INT32, versions="10+")


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class ListOffsetsPartitionResponse:
    partition_index: int = f(INT32)
    error_code: int = f(INT16)
    old_style_offsets: tuple[int, ...] = f(Array(INT64), versions="0")
    timestamp: int = f(INT64, versions="1+", default=-1)
    offset: int = f(INT64, versions="1+", default=-1)
    leader_epoch: int = f(INT32, versions="4+", default=-1)


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class ListOffsetsTopicResponse:
    name: str = f(STRING)
    partitions: tuple[ListOffsetsPartitionResponse, ...] = f(
        Array(ListOffsetsPartitionResponse)
    )


@message(api_key=2, kind="response", valid="0-11", flexible="6+")
@dataclass(frozen=True, slots=True, kw_only=True)
class ListOffsetsResponse:
    throttle_time_ms: int = f(INT32, versions="2+")
    topics: tuple[ListOffsetsTopicResponse, ...] = f(Array(ListOffsetsTopicResponse))
