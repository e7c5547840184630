"""OffsetForLeaderEpoch (key 23), v0–4.

Version notes: v1 adds the leader epoch to the response; v2 adds the current
leader epoch (fencing) and the throttle time; v3 adds ``replica_id`` (default -2,
a debug consumer that may see offsets past the high watermark); v4 flexible.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.schema import INT16, INT32, INT64, STRING, Array, f, message, struct


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class OffsetForLeaderPartition:
    partition: int = f(INT32)
    current_leader_epoch: int = f(INT32, versions="2+", default=-1)
    leader_epoch: int = f(INT32)


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class OffsetForLeaderTopic:
    topic: str = f(STRING)
    partitions: tuple[OffsetForLeaderPartition, ...] = f(
        Array(OffsetForLeaderPartition)
    )


@message(api_key=23, kind="request", valid="0-4", flexible="4+")
@dataclass(frozen=True, slots=True, kw_only=True)
class OffsetForLeaderEpochRequest:
    replica_id: int = f(INT32, versions="3+", default=-2)
    topics: tuple[OffsetForLeaderTopic, ...] = f(Array(OffsetForLeaderTopic))


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class EpochEndOffset:
    error_code: int = f(INT16)
    partition: int = f(INT32)
    leader_epoch: int = f(INT32, versions="1+", default=-1)
    end_offset: int = f(INT64, default=-1)


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class OffsetForLeaderTopicResult:
    topic: str = f(STRING)
    partitions: tuple[EpochEndOffset, ...] = f(Array(EpochEndOffset))


@message(api_key=23, kind="response", valid="0-4", flexible="4+")
@dataclass(frozen=True, slots=True, kw_only=True)
class OffsetForLeaderEpochResponse:
    throttle_time_ms: int = f(INT32, versions="2+")
    topics: tuple[OffsetForLeaderTopicResult, ...] = f(
        Array(OffsetForLeaderTopicResult)
    )
