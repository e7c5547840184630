"""FindCoordinator (key 10), v0–6.

Version notes: v1 adds key_type, and response throttle_time_ms and error_message; v2 same
as v1; v3 flexible; v4 batches: coordinator_keys replaces key, and the response answers a
coordinators array instead of a single node (KIP-699); v5 TRANSACTION_ABORTABLE (KIP-890);
v6 share groups (key type 2, KIP-932).
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


@message(api_key=10, kind="request", valid="0-6", flexible="3+")
@dataclass(frozen=True, slots=True, kw_only=True)
class FindCoordinatorRequest:
    key: str = f(STRING, versions="0-3")
    key_type: int = f(INT8, versions="1+")
    coordinator_keys: tuple[str, ...] = f(Array(STRING), versions="4+")


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class Coordinator:
    key: str = f(STRING, versions="4+")
    node_id: int = f(INT32, versions="4+")
    host: str = f(STRING, versions="4+")
    port: int = f(INT32, versions="4+")
    error_code: int = f(INT16, versions="4+")
    error_message: str | None = f(Nullable(STRING, "4+"), versions="4+")


@message(api_key=10, kind="response", valid="0-6", flexible="3+")
@dataclass(frozen=True, slots=True, kw_only=True)
class FindCoordinatorResponse:
    throttle_time_ms: int = f(INT32, versions="1+")
    error_code: int = f(INT16, versions="0-3")
    error_message: str | None = f(Nullable(STRING, "1-3"), versions="1-3")
    node_id: int = f(INT32, versions="0-3")
    host: str = f(STRING, versions="0-3")
    port: int = f(INT32, versions="0-3")
    coordinators: tuple[Coordinator, ...] = f(Array(Coordinator), versions="4+")
