"""DeleteGroups (key 42), v0–2.

Version notes: v1 sends the response before throttling; v2 flexible.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.schema import INT16, INT32, STRING, Array, f, message, struct


@message(api_key=42, kind="request", valid="0-2", flexible="2+")
@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteGroupsRequest:
    groups_names: tuple[str, ...] = f(Array(STRING))


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class DeletableGroupResult:
    group_id: str = f(STRING)
    error_code: int = f(INT16)


@message(api_key=42, kind="response", valid="0-2", flexible="2+")
@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteGroupsResponse:
    throttle_time_ms: int = f(INT32)
    results: tuple[DeletableGroupResult, ...] = f(Array(DeletableGroupResult))
