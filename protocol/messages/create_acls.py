"""CreateAcls (key 30), v0–3.

Version notes: v1 adds each creation's resource pattern type (KIP-290, prefixed
ACLs); v2 flexible; v3 adds USER resources (KIP-554), no field. Kafka 4 dropped
v0; it is kept here for old clients.
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
class AclCreation:
    resource_type: int = f(INT8)
    resource_name: str = f(STRING)
    resource_pattern_type: int = f(INT8, versions="1+", default=PATTERN_LITERAL)
    principal: str = f(STRING)
    host: str = f(STRING)
    operation: int = f(INT8)
    permission_type: int = f(INT8)


@message(api_key=30, kind="request", valid="0-3", flexible="2+")
@dataclass(frozen=True, slots=True, kw_only=True)
class CreateAclsRequest:
    creations: tuple[AclCreation, ...] = f(Array(AclCreation))


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class AclCreationResult:
    error_code: int = f(INT16)
    error_message: str | None = f(Nullable(STRING, "0+"))


@message(api_key=30, kind="response", valid="0-3", flexible="2+")
@dataclass(frozen=True, slots=True, kw_only=True)
class CreateAclsResponse:
    throttle_time_ms: int = f(INT32)
    results: tuple[AclCreationResult, ...] = f(Array(AclCreationResult))
