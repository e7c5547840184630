"""DescribeCluster (key 60), v0–2.

Version notes: flexible from v0; v1 adds ``endpoint_type`` (1 = brokers,
2 = controllers, KIP-919); v2 adds ``include_fenced_brokers`` and each broker's
``is_fenced`` (KIP-1073).
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.schema import (
    BOOL,
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

# Kafka's "authorized operations were not requested" sentinel (INT32 min).
AUTHORIZED_OPERATIONS_OMITTED = -2147483648


@message(api_key=60, kind="request", valid="0-2", flexible="0+")
@dataclass(frozen=True, slots=True, kw_only=True)
class DescribeClusterRequest:
    include_cluster_authorized_operations: bool = f(BOOL)
    endpoint_type: int = f(INT8, versions="1+", default=1)
    include_fenced_brokers: bool = f(BOOL, versions="2+")


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class DescribeClusterBroker:
    broker_id: int = f(INT32)
    host: str = f(STRING)
    port: int = f(INT32)
    rack: str | None = f(Nullable(STRING, "0+"))
    is_fenced: bool = f(BOOL, versions="2+")


@message(api_key=60, kind="response", valid="0-2", flexible="0+")
@dataclass(frozen=True, slots=True, kw_only=True)
class DescribeClusterResponse:
    throttle_time_ms: int = f(INT32)
    error_code: int = f(INT16)
    error_message: str | None = f(Nullable(STRING, "0+"))
    endpoint_type: int = f(INT8, versions="1+", default=1)
    cluster_id: str = f(STRING)
    controller_id: int = f(INT32, default=-1)
    brokers: tuple[DescribeClusterBroker, ...] = f(Array(DescribeClusterBroker))
    cluster_authorized_operations: int = f(INT32, default=AUTHORIZED_OPERATIONS_OMITTED)
