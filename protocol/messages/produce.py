"""Produce (key 0), v0–13.

Version notes: v1 response adds throttle_time_ms; v2 response adds log_append_time_ms;
v3 adds transactional_id and record batch format v2; v4 may return KAFKA_STORAGE_ERROR;
v5 response adds log_start_offset; v6 same as v5; v7 allows zstd (KIP-110); v8 response
adds record_errors and error_message (KIP-467); v9 flexible; v10 response adds tagged
current_leader and node_endpoints (KIP-951); v11–12 same fields (TRANSACTION_ABORTABLE,
KIP-890); v13 topic_id replaces the topic name (KIP-516). Kafka 4 dropped v0–2 but must
still advertise them for librdkafka (KAFKA-18659); old clients still send them.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.schema import (
    INT16,
    INT32,
    INT64,
    RECORDS,
    STRING,
    UUID,
    Array,
    Buffer,
    Nullable,
    Struct,
    f,
    message,
    struct,
)


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class PartitionProduceData:
    index: int = f(INT32)
    records: Buffer | tuple[Buffer, ...] | None = f(RECORDS)


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class TopicProduceData:
    name: str = f(STRING, versions="0-12")
    topic_id: bytes = f(UUID, versions="13+")
    partition_data: tuple[PartitionProduceData, ...] = f(Array(PartitionProduceData))


@message(api_key=0, kind="request", valid="0-13", flexible="9+")
@dataclass(frozen=True, slots=True, kw_only=True)
class ProduceRequest:
    transactional_id: str | None = f(Nullable(STRING, "3+"), versions="3+")
    acks: int = f(INT16)
    timeout_ms: int = f(INT32)
    topic_data: tuple[TopicProduceData, ...] = f(Array(TopicProduceData))


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class BatchIndexAndErrorMessage:
    batch_index: int = f(INT32, versions="8+")
    batch_index_error_message: str | None = f(Nullable(STRING, "8+"), versions="8+")


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class LeaderIdAndEpoch:
    leader_id: int = f(INT32, versions="10+", default=-1)
    leader_epoch: int = f(INT32, versions="10+", default=-1)


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class PartitionProduceResponse:
    index: int = f(INT32)
    error_code: int = f(INT16)
    base_offset: int = f(INT64)
    log_append_time_ms: int = f(INT64, versions="2+", default=-1)
    log_start_offset: int = f(INT64, versions="5+", default=-1)
    record_errors: tuple[BatchIndexAndErrorMessage, ...] = f(
        Array(BatchIndexAndErrorMessage), versions="8+"
    )
    error_message: str | None = f(Nullable(STRING, "8+"), versions="8+")
    current_leader: LeaderIdAndEpoch = f(
        Struct(LeaderIdAndEpoch), versions="10+", tag=0
    )


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class TopicProduceResponse:
    name: str = f(STRING, versions="0-12")
    topic_id: bytes = f(UUID, versions="13+")
    partition_responses: tuple[PartitionProduceResponse, ...] = f(
        Array(PartitionProduceResponse)
    )


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class NodeEndpoint:
    node_id: int = f(INT32, versions="10+")
    host: str = f(STRING, versions="10+")
    port: int = f(INT32, versions="10+")
    rack: str | None = f(Nullable(STRING, "10+"), versions="10+")


@message(api_key=0, kind="response", valid="0-13", flexible="9+")
@dataclass(frozen=True, slots=True, kw_only=True)
class ProduceResponse:
    responses: tuple[TopicProduceResponse, ...] = f(Array(TopicProduceResponse))
    throttle_time_ms: int = f(INT32, versions="1+")
    node_endpoints: tuple[NodeEndpoint, ...] = f(
        Array(NodeEndpoint), versions="10+", tag=0
    )
