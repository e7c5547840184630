"""ListPartitionReassignments (key 46), v0 (KIP-455).

Version notes: flexible from v0; a null topic list means every reassignment in
progress.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.schema import INT16, INT32, STRING, Array, Nullable, f, message, struct


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class ListPartitionReassignmentsTopics:
    name: str = f(STRING)
    partition_indexes: tuple[int, ...] = f(Array(INT32))


@message(api_key=46, kind="request", valid="0", flexible="0+")
@dataclass(frozen=True, slots=True, kw_only=True)
class ListPartitionReassignmentsRequest:
    timeout_ms: int = f(INT32, default=60000)
    topics: tuple[ListPartitionReassignmentsTopics, ...] | None = f(
        Nullable(Array(ListPartitionReassignmentsTopics))
    )


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class OngoingPartitionReassignment:
    partition_index: int = f(INT32)
    replicas: tuple[int, ...] = f(Array(INT32))
    adding_replicas: tuple[int, ...] = f(Array(INT32))
    removing_replicas: tuple[int, ...] = f(Array(INT32))


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class OngoingTopicReassignment:
    name: str = f(STRING)
    partitions: tuple[OngoingPartitionReassignment, ...] = f(
        Array(OngoingPartitionReassignment)
    )


@message(api_key=46, kind="response", valid="0", flexible="0+")
@dataclass(frozen=True, slots=True, kw_only=True)
class ListPartitionReassignmentsResponse:
    throttle_time_ms: int = f(INT32)
    error_code: int = f(INT16)
    error_message: str | None = f(Nullable(STRING))
    topics: tuple[OngoingTopicReassignment, ...] = f(Array(OngoingTopicReassignment))
