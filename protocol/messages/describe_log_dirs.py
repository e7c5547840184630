"""DescribeLogDirs (key 35), v0–4.

Version notes: v1 same as v0 (throttling after the response); v2 flexible; v3
top-level ``error_code``; v4 each log dir's ``total_bytes`` and ``usable_bytes``
(KIP-827). A null topic list means every partition the broker holds.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.schema import (
    BOOL,
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
class DescribableLogDirTopic:
    topic: str = f(STRING)
    partitions: tuple[int, ...] = f(Array(INT32))


@message(api_key=35, kind="request", valid="0-4", flexible="2+")
@dataclass(frozen=True, slots=True, kw_only=True)
class DescribeLogDirsRequest:
    topics: tuple[DescribableLogDirTopic, ...] | None = f(
        Nullable(Array(DescribableLogDirTopic))
    )


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class DescribeLogDirsPartition:
    partition_index: int = f(INT32)
    partition_size: int = f(INT64)
    offset_lag: int = f(INT64)
    is_future_key: bool = f(BOOL)


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class DescribeLogDirsTopic:
    name: str = f(STRING)
    partitions: tuple[DescribeLogDirsPartition, ...] = f(
        Array(DescribeLogDirsPartition)
    )


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class DescribeLogDirsResult:
    error_code: int = f(INT16)
    log_dir: str = f(STRING)
    topics: tuple[DescribeLogDirsTopic, ...] = f(Array(DescribeLogDirsTopic))
    total_bytes: int = f(INT64, versions="4+", default=-1)
    usable_bytes: int = f(INT64, versions="4+", default=-1)


@message(api_key=35, kind="response", valid="0-4", flexible="2+")
@dataclass(frozen=True, slots=True, kw_only=True)
class DescribeLogDirsResponse:
    throttle_time_ms: int = f(INT32)
    error_code: int = f(INT16, versions="3+")
    results: tuple[DescribeLogDirsResult, ...] = f(Array(DescribeLogDirsResult))
