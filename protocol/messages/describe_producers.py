"""DescribeProducers (key 61), v0 (KIP-664).

Version notes: flexible from v0.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.schema import (
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
class TopicRequest:
    name: str = f(STRING)
    partition_indexes: tuple[int, ...] = f(Array(INT32))


@message(api_key=61, kind="request", valid="0", flexible="0+")
@dataclass(frozen=True, slots=True, kw_only=True)
class DescribeProducersRequest:
    topics: tuple[TopicRequest, ...] = f(Array(TopicRequest))


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class ProducerState:
    producer_id: int = f(INT64)
    producer_epoch: int = f(INT32)
    last_sequence: int = f(INT32, default=-1)
    last_timestamp: int = f(INT64, default=-1)
    coordinator_epoch: int = f(INT32)
    current_txn_start_offset: int = f(INT64, default=-1)


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class PartitionResponse:
    partition_index: int = f(INT32)
    error_code: int = f(INT16)
    error_message: str | None = f(Nullable(STRING))
    active_producers: tuple[ProducerState, ...] = f(Array(ProducerState))


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class TopicResponse:
    name: str = f(STRING)
    partitions: tuple[PartitionResponse, ...] = f(Array(PartitionResponse))


@message(api_key=61, kind="response", valid="0", flexible="0+")
@dataclass(frozen=True, slots=True, kw_only=True)
class DescribeProducersResponse:
    throttle_time_ms: int = f(INT32)
    topics: tuple[TopicResponse, ...] = f(Array(TopicResponse))
