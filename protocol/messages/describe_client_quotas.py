"""DescribeClientQuotas (key 48), v0–1 (KIP-546).

Version notes: v1 flexible. A null ``entries`` goes with an error.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.schema import (
    BOOL,
    FLOAT64,
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


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class ComponentData:
    entity_type: str = f(STRING)
    match_type: int = f(INT8)
    match: str | None = f(Nullable(STRING))


@message(api_key=48, kind="request", valid="0-1", flexible="1+")
@dataclass(frozen=True, slots=True, kw_only=True)
class DescribeClientQuotasRequest:
    components: tuple[ComponentData, ...] = f(Array(ComponentData))
    strict: bool = f(BOOL)


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class EntityData:
    entity_type: str = f(STRING)
    entity_name: str | None = f(Nullable(STRING))


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class ValueData:
    key: str = f(STRING)
    value: float = f(FLOAT64)


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class EntryData:
    entity: tuple[EntityData, ...] = f(Array(EntityData))
    values: tuple[ValueData, ...] = f(Array(ValueData))


@message(api_key=48, kind="response", valid="0-1", flexible="1+")
@dataclass(frozen=True, slots=True, kw_only=True)
class DescribeClientQuotasResponse:
    throttle_time_ms: int = f(INT32)
    error_code: int = f(INT16)
    error_message: str | None = f(Nullable(STRING))
    entries: tuple[EntryData, ...] | None = f(Nullable(Array(EntryData)))
