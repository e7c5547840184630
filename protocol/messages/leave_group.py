"""LeaveGroup (key 13), v0–5.

Version notes: v1 response adds throttle_time_ms; v2 same as v1; v3 batches: members
(member_id + group_instance_id) replaces member_id, and the response answers per member;
v4 flexible; v5 adds a per-member reason (KIP-800).
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.schema import INT16, INT32, STRING, Array, Nullable, f, message, struct


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class MemberIdentity:
    member_id: str = f(STRING, versions="3+")
    group_instance_id: str | None = f(Nullable(STRING, "3+"), versions="3+")
    reason: str | None = f(Nullable(STRING, "5+"), versions="5+")


@message(api_key=13, kind="request", valid="0-5", flexible="4+")
@dataclass(frozen=True, slots=True, kw_only=True)
class LeaveGroupRequest:
    group_id: str = f(STRING)
    member_id: str = f(STRING, versions="0-2")
    members: tuple[MemberIdentity, ...] = f(Array(MemberIdentity), versions="3+")


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class MemberResponse:
    member_id: str = f(STRING, versions="3+")
    group_instance_id: str | None = f(Nullable(STRING, "3+"), versions="3+")
    error_code: int = f(INT16, versions="3+")


@message(api_key=13, kind="response", valid="0-5", flexible="4+")
@dataclass(frozen=True, slots=True, kw_only=True)
class LeaveGroupResponse:
    throttle_time_ms: int = f(INT32, versions="1+")
    error_code: int = f(INT16)
    members: tuple[MemberResponse, ...] = f(Array(MemberResponse), versions="3+")
