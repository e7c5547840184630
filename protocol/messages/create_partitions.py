"""CreatePartitions (key 37), v0–3.

Version notes: v1 same as v0; v2 flexible; v3 may return
THROTTLING_QUOTA_EXCEEDED (KIP-599). ``assignments`` is null to let the broker
place the new partitions.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.schema import (
    BOOL,
    INT16,
    INT32,
    STRING,
    Array,
    Nullable,
    f,
    message,
    struct,
)


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class CreatePartitionsAssignment:
    broker_ids: tuple[int, ...] = f(Array(INT32))


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class CreatePartitionsTopic:
    name: str = f(STRING)
    count: int = f(INT32)
    assignments: tuple[CreatePartitionsAssignment, ...] | None = f(
        Nullable(Array(CreatePartitionsAssignment), "0+")
    )


@message(api_key=37, kind="request", valid="0-3", flexible="2+")
@dataclass(frozen=True, slots=True, kw_only=True)
class CreatePartitionsRequest:
    topics: tuple[CreatePartitionsTopic, ...] = f(Array(CreatePartitionsTopic))
    timeout_ms: int = f(INT32)
    validate_only: bool = f(BOOL)


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class CreatePartitionsTopicResult:
    name: str = f(STRING)
    error_code: int = f(INT16)
    error_message: str | None = f(Nullable(STRING, "0+"))


@message(api_key=37, kind="response", valid="0-3", flexible="2+")
@dataclass(frozen=True, slots=True, kw_only=True)
class CreatePartitionsResponse:
    throttle_time_ms: int = f(INT32)
    results: tuple[CreatePartitionsTopicResult, ...] = f(
        Array(CreatePartitionsTopicResult)
    )
