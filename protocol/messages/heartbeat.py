"""Heartbeat (key 12), v0–4.

Version notes: v1 response adds throttle_time_ms; v2 same as v1; v3 adds
group_instance_id (KIP-345); v4 flexible.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.schema import INT16, INT32, STRING, Nullable, f, message


@message(api_key=12, kind="request", valid="0-4", flexible="4+")
@dataclass(frozen=True, slots=True, kw_only=True)
class HeartbeatRequest:
    group_id: str = f(STRING)
    generation_id: int = f(INT32)
    member_id: str = f(STRING)
    group_instance_id: str | None = f(Nullable(STRING, "3+"), versions="3+")


@message(api_key=12, kind="response", valid="0-4", flexible="4+")
@dataclass(frozen=True, slots=True, kw_only=True)
class HeartbeatResponse:
    throttle_time_ms: int = f(INT32, versions="1+")
    error_code: int = f(INT16)
