"""Metadata (key 3), v0–13.

Version notes: v0 an empty topic array means all topics; from v1 null means all topics and
empty means none; v1 response adds broker rack, controller_id and is_internal; v2 response
adds cluster_id; v3 response adds throttle_time_ms; v4 adds allow_auto_topic_creation; v5
response adds offline_replicas; v6 same as v5; v7 response adds leader_epoch; v8 adds
authorized operations for cluster (v8–10) and topics; v9 flexible; v10 adds topic_id, name
nullable in the request; v11 drops the cluster authorized operations (KIP-700); v12 topic
name nullable in the response (lookup by topic id); v13 response adds a top-level
error_code.
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
    f,
    message,
    struct,
)


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class MetadataRequestTopic:
    topic_id: bytes = f(UUID, versions="10+")
    name: str | None = f(Nullable(STRING, "10+"))


@message(api_key=3, kind="request", valid="0-13", flexible="9+")
@dataclass(frozen=True, slots=True, kw_only=True)
class MetadataRequest:
    topics: tuple[MetadataRequestTopic, ...] | None = f(
        Nullable(Array(MetadataRequestTopic), "1+")
    )
    allow_auto_topic_creation: bool = f(BOOL, versions="4+", default=True)
    include_cluster_authorized_operations: bool = f(BOOL, versions="8-10")
    include_topic_authorized_operations: bool = f(BOOL, versions="8+")


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class MetadataResponseBroker:
    node_id: int = f(INT32)
    host: str = f(STRING)
    port: int = f(INT32)
    rack: str | None = f(Nullable(STRING, "1+"), versions="1+")


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class MetadataResponsePartition:
    error_code: int = f(INT16)
    partition_index: int = f(INT32)
    leader_id: int = f(INT32)
    leader_epoch: int = f(INT32, versions="7+", default=-1)
    replica_nodes: tuple[int, ...] = f(Array(INT32))
    isr_nodes: tuple[int, ...] = f(Array(INT32))
    offline_replicas: tuple[int, ...] = f(Array(INT32), versions="5+")


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class MetadataResponseTopic:
    error_code: int = f(INT16)
    name: str | None = f(Nullable(STRING, "12+"))
    topic_id: bytes = f(UUID, versions="10+")
    is_internal: bool = f(BOOL, versions="1+")
    partitions: tuple[MetadataResponsePartition, ...] = f(
        Array(MetadataResponsePartition)
    )
    topic_authorized_operations: int = f(INT32, versions="8+", default=-2147483648)


@message(api_key=3, kind="response", valid="0-13", flexible="9+")
@dataclass(frozen=True, slots=True, kw_only=True)
class MetadataResponse:
    throttle_time_ms: int = f(INT32, versions="3+")
    brokers: tuple[MetadataResponseBroker, ...] = f(Array(MetadataResponseBroker))
    cluster_id: str | None = f(Nullable(STRING, "2+"), versions="2+")
    controller_id: int = f(INT32, versions="1+", default=-1)
    topics: tuple[MetadataResponseTopic, ...] = f(Array(MetadataResponseTopic))
    cluster_authorized_operations: int = f(INT32, versions="8-10", default=-2147483648)
    error_code: int = f(INT16, versions="13+")
