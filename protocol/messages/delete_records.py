"""DeleteRecords (key 21), v0–2.

Version notes: v1 sends the response before throttling; v2 flexible.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.schema import INT16, INT32, INT64, STRING, Array, f, message, struct


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteRecordsPartition:
    partition_index: int = f(INT32)
    offset: int = f(INT64)


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteRecordsTopic:
    name: str = f(STRING)
    partitions: tuple[DeleteRecordsPartition, ...] = f(Array(DeleteRecordsPartition))


@message(api_key=21, kind="request", valid="0-2", flexible="2+")
@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteRecordsRequest:
    topics: tuple[DeleteRecordsTopic, ...] = f(Array(DeleteRecordsTopic))
    timeout_ms: int = f(INT32)


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteRecordsPartitionResult:
    partition_index: int = f(INT32)
    low_watermark: int = f(INT64)
    error_code: int = f(INT16)


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteRecordsTopicResult:
    name: str = f(STRING)
    partitions: tuple[DeleteRecordsPartitionResult, ...] = f(
        Array(DeleteRecordsPartitionResult)
    )


@message(api_key=21, kind="response", valid="0-2", flexible="2+")
@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteRecordsResponse:
    throttle_time_ms: int = f(INT32)
    topics: tuple[DeleteRecordsTopicResult, ...] = f(Array(DeleteRecordsTopicResult))
