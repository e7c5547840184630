"""AlterPartitionReassignments (key 45), v0 (KIP-455).

Version notes: flexible from v0; a null replica list cancels the partition's
reassignment in progress. v1 (allow_replication_factor_change) is not declared.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.schema import INT16, INT32, STRING, Array, Nullable, f, message, struct


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class ReassignablePartition:
    partition_index: int = f(INT32)
    replicas: tuple[int, ...] | None = f(Nullable(Array(INT32)))


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class ReassignableTopic:
    name: str = f(STRING)
    partitions: tuple[ReassignablePartition, ...] = f(Array(ReassignablePartition))


@message(api_key=45, kind="request", valid="0", flexible="0+")
@dataclass(frozen=True, slots=True, kw_only=True)
class AlterPartitionReassignmentsRequest:
    timeout_ms: int = f(INT32, default=60000)
    topics: tuple[ReassignableTopic, ...] = f(Array(ReassignableTopic))


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class ReassignablePartitionResponse:
    partition_index: int = f(INT32)
    error_code: int = f(INT16)
    error_message: str | None = f(Nullable(STRING))


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class ReassignableTopicResponse:
    name: str = f(STRING)
    partitions: tuple[ReassignablePartitionResponse, ...] = f(
        Array(ReassignablePartitionResponse)
    )


@message(api_key=45, kind="response", valid="0", flexible="0+")
@dataclass(frozen=True, slots=True, kw_only=True)
class AlterPartitionReassignmentsResponse:
    throttle_time_ms: int = f(INT32)
    error_code: int = f(INT16)
    error_message: str | None = f(Nullable(STRING))
    responses: tuple[ReassignableTopicResponse, ...] = f(
        Array(ReassignableTopicResponse)
    )
