"""CreateTopics (key 19), v0–7.

Version notes: v1 adds ``validate_only`` and a per-topic error message; v2 adds the
throttle time; v3 sends the response before throttling; v4 makes the partition
count and replication factor optional (-1) without assignments (KIP-464); v5
flexible, the response returns the topic's partitions, replication factor and
configs (KIP-525); v6 may return THROTTLING_QUOTA_EXCEEDED (KIP-599); v7 returns
the new topic's id.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.schema import (
    BOOL,
    INT8,
    INT16,
    INT32,
    STRING,
    UUID,
    Array,
    Nullable,
    f,
    message,
    struct,
)


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class CreatableReplicaAssignment:
    partition_index: int = f(INT32)
    broker_ids: tuple[int, ...] = f(Array(INT32))


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class CreatableTopicConfig:
    name: str = f(STRING)
    value: str | None = f(Nullable(STRING, "0+"))


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class CreatableTopic:
    name: str = f(STRING)
    num_partitions: int = f(INT32)
    replication_factor: int = f(INT16)
    assignments: tuple[CreatableReplicaAssignment, ...] = f(
        Array(CreatableReplicaAssignment)
    )
    configs: tuple[CreatableTopicConfig, ...] = f(Array(CreatableTopicConfig))


@message(api_key=19, kind="request", valid="0-7", flexible="5+")
@dataclass(frozen=True, slots=True, kw_only=True)
class CreateTopicsRequest:
    topics: tuple[CreatableTopic, ...] = f(Array(CreatableTopic))
    timeout_ms: int = f(INT32, default=60000)
    validate_only: bool = f(BOOL, versions="1+")


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class CreatableTopicConfigs:
    name: str = f(STRING, versions="5+")
    value: str | None = f(Nullable(STRING, "5+"), versions="5+")
    read_only: bool = f(BOOL, versions="5+")
    config_source: int = f(INT8, versions="5+", default=-1)
    is_sensitive: bool = f(BOOL, versions="5+")


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class CreatableTopicResult:
    name: str = f(STRING)
    topic_id: bytes = f(UUID, versions="7+")
    error_code: int = f(INT16)
    error_message: str | None = f(Nullable(STRING, "0+"), versions="1+")
    topic_config_error_code: int = f(INT16, versions="5+", tag=0)
    num_partitions: int = f(INT32, versions="5+", default=-1)
    replication_factor: int = f(INT16, versions="5+", default=-1)
    configs: tuple[CreatableTopicConfigs, ...] | None = f(
        Nullable(Array(CreatableTopicConfigs), "5+"), versions="5+"
    )


@message(api_key=19, kind="response", valid="0-7", flexible="5+")
@dataclass(frozen=True, slots=True, kw_only=True)
class CreateTopicsResponse:
    throttle_time_ms: int = f(INT32, versions="2+")
    topics: tuple[CreatableTopicResult, ...] = f(Array(CreatableTopicResult))
