"""SyncGroup (key 14), v0–5.

Version notes: v1 response adds throttle_time_ms; v2 same as v1; v3 adds
group_instance_id (KIP-345); v4 flexible; v5 adds protocol_type and protocol_name on both
sides (KIP-559).
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.schema import (
    BYTES,
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
class SyncGroupRequestAssignment:
    member_id: str = f(STRING)
    assignment: bytes = f(BYTES)


@message(api_key=14, kind="request", valid="0-5", flexible="4+")
@dataclass(frozen=True, slots=True, kw_only=True)
class SyncGroupRequest:
    group_id: str = f(STRING)
    generation_id: int = f(INT32)
    member_id: str = f(STRING)
    group_instance_id: str | None = f(Nullable(STRING, "3+"), versions="3+")
    protocol_type: str | None = f(Nullable(STRING, "5+"), versions="5+")
    protocol_name: str | None = f(Nullable(STRING, "5+"), versions="5+")
    assignments: tuple[SyncGroupRequestAssignment, ...] = f(
        Array(SyncGroupRequestAssignment)
    )


@message(api_key=14, kind="response", valid="0-5", flexible="4+")
@dataclass(frozen=True, slots=True, kw_only=True)
class SyncGroupResponse:
    throttle_time_ms: int = f(INT32, versions="1+")
    error_code: int = f(INT16)
    protocol_type: str | None = f(Nullable(STRING, "5+"), versions="5+")
    protocol_name: str | None = f(Nullable(STRING, "5+"), versions="5+")
    assignment: bytes = f(BYTES)
