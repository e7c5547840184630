"""DescribeGroups (key 15), v0–6.

Version notes: v1 adds the throttle time; v2 sends the response before
throttling; v3 adds ``include_authorized_operations`` and the group's authorized
operations; v4 adds each member's ``group_instance_id`` (KIP-345); v5 flexible;
v6 adds a per-group error message (KIP-1043).
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

# Kafka's "authorized operations were not requested" sentinel (INT32 min).
AUTHORIZED_OPERATIONS_OMITTED = -2147483648


@message(api_key=15, kind="request", valid="0-6", flexible="5+")
@dataclass(frozen=True, slots=True, kw_only=True)
class DescribeGroupsRequest:
    groups: tuple[str, ...] = f(Array(STRING))
    include_authorized_operations: bool = f(BOOL, versions="3+")


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class DescribedGroupMember:
    member_id: str = f(STRING)
    group_instance_id: str | None = f(Nullable(STRING, "4+"), versions="4+")
    client_id: str = f(STRING)
    client_host: str = f(STRING)
    member_metadata: bytes = f(BYTES)
    member_assignment: bytes = f(BYTES)


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class DescribedGroup:
    error_code: int = f(INT16)
    error_message: str | None = f(Nullable(STRING, "6+"), versions="6+")
    group_id: str = f(STRING)
    group_state: str = f(STRING)
    protocol_type: str = f(STRING)
    protocol_data: str = f(STRING)
    members: tuple[DescribedGroupMember, ...] = f(Array(DescribedGroupMember))
    authorized_operations: int = f(
        INT32, versions="3+", default=AUTHORIZED_OPERATIONS_OMITTED
    )


@message(api_key=15, kind="response", valid="0-6", flexible="5+")
@dataclass(frozen=True, slots=True, kw_only=True)
class DescribeGroupsResponse:
    throttle_time_ms: int = f(INT32, versions="1+")
    groups: tuple[DescribedGroup, ...] = f(Array(DescribedGroup))
