"""ListGroups (key 16), v0–5.

Version notes: v1 response adds throttle_time_ms; v2 same as v1; v3 flexible; v4 adds
states_filter and response group_state (KIP-518); v5 adds types_filter and response
group_type (KIP-848).
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.schema import INT16, INT32, STRING, Array, f, message, struct


@message(api_key=16, kind="request", valid="0-5", flexible="3+")
@dataclass(frozen=True, slots=True, kw_only=True)
class ListGroupsRequest:
    states_filter: tuple[str, ...] = f(Array(STRING), versions="4+")
    types_filter: tuple[str, ...] = f(Array(STRING), versions="5+")


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class ListedGroup:
    group_id: str = f(STRING)
    protocol_type: str = f(STRING)
    group_state: str = f(STRING, versions="4+")
    group_type: str = f(STRING, versions="5+")


@message(api_key=16, kind="response", valid="0-5", flexible="3+")
@dataclass(frozen=True, slots=True, kw_only=True)
class ListGroupsResponse:
    throttle_time_ms: int = f(INT32, versions="1+")
    error_code: int = f(INT16)
    groups: tuple[ListedGroup, ...] = f(Array(ListedGroup))
