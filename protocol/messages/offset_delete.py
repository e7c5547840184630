"""OffsetDelete (key 47), v0 (KIP-496).

Version notes: v0 only, not flexible.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.schema import INT16, INT32, STRING, Array, f, message, struct


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class OffsetDeleteRequestPartition:
    partition_index: int = f(INT32)


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class OffsetDeleteRequestTopic:
    name: str = f(STRING)
    partitions: tuple[OffsetDeleteRequestPartition, ...] = f(
        Array(OffsetDeleteRequestPartition)
    )


@message(api_key=47, kind="request", valid="0")
@dataclass(frozen=True, slots=True, kw_only=True)
class OffsetDeleteRequest:
    group_id: str = f(STRING)
    topics: tuple[OffsetDeleteRequestTopic, ...] = f(Array(OffsetDeleteRequestTopic))


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class OffsetDeleteResponsePartition:
    partition_index: int = f(INT32)
    error_code: int = f(INT16)


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class OffsetDeleteResponseTopic:
    name: str = f(STRING)
    partitions: tuple[OffsetDeleteResponsePartition, ...] = f(
        Array(OffsetDeleteResponsePartition)
    )


@message(api_key=47, kind="response", valid="0")
@dataclass(frozen=True, slots=True, kw_only=True)
class OffsetDeleteResponse:
    error_code: int = f(INT16)
    throttle_time_ms: int = f(INT32)
    topics: tuple[OffsetDeleteResponseTopic, ...] = f(Array(OffsetDeleteResponseTopic))
