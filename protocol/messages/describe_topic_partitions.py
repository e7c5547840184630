"""DescribeTopicPartitions (key 75), v0 (KIP-966).

Version notes: flexible from v0. The answer is paginated: at most
``response_partition_limit`` partitions, and ``next_cursor`` names the topic and
partition to ask from next (null when everything was described). Eligible leader
replicas (ELR) are a KRaft feature; they are answered null.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.schema import (
    BOOL,
    INT16,
    INT32,
    STRING,
    UUID,
    Array,
    Nullable,
    Struct,
    f,
    message,
    struct,
)

# Kafka's "authorized operations were not requested" sentinel (INT32 min).
AUTHORIZED_OPERATIONS_OMITTED = -2147483648


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class TopicRequest:
    name: str = f(STRING)


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class Cursor:
    topic_name: str = f(STRING)
    partition_index: int = f(INT32)


@message(api_key=75, kind="request", valid="0", flexible="0+")
@dataclass(frozen=True, slots=True, kw_only=True)
class DescribeTopicPartitionsRequest:
    topics: tuple[TopicRequest, ...] = f(Array(TopicRequest))
    response_partition_limit: int = f(INT32, default=2000)
    cursor: Cursor | None = f(Nullable(Struct(Cursor)))


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class DescribeTopicPartitionsResponsePartition:
    error_code: int = f(INT16)
    partition_index: int = f(INT32)
    leader_id: int = f(INT32)
    leader_epoch: int = f(INT32, default=-1)
    replica_nodes: tuple[int, ...] = f(Array(INT32))
    isr_nodes: tuple[int, ...] = f(Array(INT32))
    eligible_leader_replicas: tuple[int, ...] | None = f(Nullable(Array(INT32)))
    last_known_elr: tuple[int, ...] | None = f(Nullable(Array(INT32)))
    offline_replicas: tuple[int, ...] = f(Array(INT32))


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class DescribeTopicPartitionsResponseTopic:
    error_code: int = f(INT16)
    name: str | None = f(Nullable(STRING))
    topic_id: bytes = f(UUID)
    is_internal: bool = f(BOOL)
    partitions: tuple[DescribeTopicPartitionsResponsePartition, ...] = f(
        Array(DescribeTopicPartitionsResponsePartition)
    )
    topic_authorized_operations: int = f(INT32, default=AUTHORIZED_OPERATIONS_OMITTED)


@message(api_key=75, kind="response", valid="0", flexible="0+")
@dataclass(frozen=True, slots=True, kw_only=True)
class DescribeTopicPartitionsResponse:
    throttle_time_ms: int = f(INT32)
    topics: tuple[DescribeTopicPartitionsResponseTopic, ...] = f(
        Array(DescribeTopicPartitionsResponseTopic)
    )
    next_cursor: Cursor | None = f(Nullable(Struct(Cursor)))
