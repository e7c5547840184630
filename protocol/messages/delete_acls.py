"""DeleteAcls (key 31), v0–3.

Version notes: v1 adds the pattern type filter and each deleted ACL's pattern type
(KIP-290, prefixed ACLs); v2 flexible; v3 adds USER resources (KIP-554), no field.
Kafka 4 dropped v0; it is kept here for old clients.
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

PATTERN_LITERAL = 3  # Kafka's PatternType.LITERAL, the default before v1


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteAclsFilter:
    resource_type_filter: int = f(INT8)
    resource_name_filter: str | None = f(Nullable(STRING, "0+"))
    pattern_type_filter: int = f(INT8, versions="1+", default=PATTERN_LITERAL)
    principal_filter: str | None = f(Nullable(STRING, "0+"))
    host_filter: str | None = f(Nullable(STRING, "0+"))
    operation: int = f(INT8)
    permission_type: int = f(INT8)


@message(api_key=31, kind="request", valid="0-3", flexible="2+")
@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteAclsRequest:
    filters: tuple[DeleteAclsFilter, ...] = f(Array(DeleteAclsFilter))


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteAclsMatchingAcl:
    error_code: int = f(INT16)
    error_message: str | None = f(Nullable(STRING, "0+"))
    resource_type: int = f(INT8)
    resource_name: str = f(STRING)
    pattern_type: int = f(INT8, versions="1+", default=PATTERN_LITERAL)
    principal: str = f(STRING)
    host: str = f(STRING)
    operation: int = f(INT8)
    permission_type: int = f(INT8)


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteAclsFilterResult:
    error_code: int = f(INT16)
    error_message: str | None = f(Nullable(STRING, "0+"))
    matching_acls: tuple[DeleteAclsMatchingAcl, ...] = f(Array(DeleteAclsMatchingAcl))


@message(api_key=31, kind="response", valid="0-3", flexible="2+")
@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteAclsResponse:
    throttle_time_ms: int = f(INT32)
    filter_results: tuple[DeleteAclsFilterResult, ...] = f(
        Array(DeleteAclsFilterResult)
    )
