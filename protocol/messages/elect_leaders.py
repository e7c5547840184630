"""ElectLeaders (key 43), v0–2.

Version notes: v0 elects the preferred replica only; v1 adds election_type (0
preferred, 1 unclean) and a top-level error code in the response; v2 flexible.
A null topic list means every partition.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.schema import (
    INT8,
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
class TopicPartitions:
    topic: str = f(STRING)
    partitions: tuple[int, ...] = f(Array(INT32))


@message(api_key=43, kind="request", valid="0-2", flexible="2+")
@dataclass(frozen=True, slots=True, kw_only=True)
class ElectLeadersRequest:
    election_type: int = f(INT8, versions="1+")
    topic_partitions: tuple[TopicPartitions, ...] | None = f(
        Nullable(Array(TopicPartitions))
    )
    timeout_ms: int = f(INT32, default=60000)


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class PartitionResult:
    partition_id: int = f(INT32)
    error_code: int = f(INT16)
    error_message: str | None = f(Nullable(STRING))


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class ReplicaElectionResult:
    topic: str = f(STRING)
    partition_result: tuple[PartitionResult, ...] = f(Array(PartitionResult))


@message(api_key=43, kind="response", valid="0-2", flexible="2+")
@dataclass(frozen=True, slots=True, kw_only=True)
class ElectLeadersResponse:
    throttle_time_ms: int = f(INT32)
    error_code: int = f(INT16, versions="1+")
    replica_election_results: tuple[ReplicaElectionResult, ...] = f(
        Array(ReplicaElectionResult)
    )
