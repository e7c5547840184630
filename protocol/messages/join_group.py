"""JoinGroup (key 11), v0–9.

Version notes: v1 adds rebalance_timeout_ms; v2 response adds throttle_time_ms; v3 same
as v2; v4 a new member must rejoin with the member_id it is given (MEMBER_ID_REQUIRED);
v5 adds group_instance_id (static membership, KIP-345); v6 flexible; v7 response adds
protocol_type and protocol_name becomes nullable (KIP-559); v8 adds reason (KIP-800); v9
response adds skip_assignment.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.schema import (
    BOOL,
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
class JoinGroupRequestProtocol:
    name: str = f(STRING)
    metadata: bytes = f(BYTES)


@message(api_key=11, kind="request", valid="0-9", flexible="6+")
@dataclass(frozen=True, slots=True, kw_only=True)
class JoinGroupRequest:
    group_id: str = f(STRING)
    session_timeout_ms: int = f(INT32)
    rebalance_timeout_ms: int = f(INT32, versions="1+", default=-1)
    member_id: str = f(STRING)
    group_instance_id: str | None = f(Nullable(STRING, "5+"), versions="5+")
    protocol_type: str = f(STRING)
    protocols: tuple[JoinGroupRequestProtocol, ...] = f(Array(JoinGroupRequestProtocol))
    reason: str | None = f(Nullable(STRING, "8+"), versions="8+")


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class JoinGroupResponseMember:
    member_id: str = f(STRING)
    group_instance_id: str | None = f(Nullable(STRING, "5+"), versions="5+")
    metadata: bytes = f(BYTES)


@message(api_key=11, kind="response", valid="0-9", flexible="6+")
@dataclass(frozen=True, slots=True, kw_only=True)
class JoinGroupResponse:
    throttle_time_ms: int = f(INT32, versions="2+")
    error_code: int = f(INT16)
    generation_id: int = f(INT32, default=-1)
    protocol_type: str | None = f(Nullable(STRING, "7+"), versions="7+")
    protocol_name: str | None = f(Nullable(STRING, "7+"))
    leader: str = f(STRING)
    skip_assignment: bool = f(BOOL, versions="9+")
    member_id: str = f(STRING)
    members: tuple[JoinGroupResponseMember, ...] = f(Array(JoinGroupResponseMember))
