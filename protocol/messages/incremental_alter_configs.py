"""IncrementalAlterConfigs (key 44), v0–1.

Version notes: v1 flexible. Each config carries an operation (0 SET, 1 DELETE,
2 APPEND, 3 SUBTRACT; KIP-339).
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.schema import (
    BOOL,
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
class AlterableConfig:
    name: str = f(STRING)
    config_operation: int = f(INT8)
    value: str | None = f(Nullable(STRING, "0+"))


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class AlterConfigsResource:
    resource_type: int = f(INT8)
    resource_name: str = f(STRING)
    configs: tuple[AlterableConfig, ...] = f(Array(AlterableConfig))


@message(api_key=44, kind="request", valid="0-1", flexible="1+")
@dataclass(frozen=True, slots=True, kw_only=True)
class IncrementalAlterConfigsRequest:
    resources: tuple[AlterConfigsResource, ...] = f(Array(AlterConfigsResource))
    validate_only: bool = f(BOOL)


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class AlterConfigsResourceResponse:
    error_code: int = f(INT16)
    error_message: str | None = f(Nullable(STRING, "0+"))
    resource_type: int = f(INT8)
    resource_name: str = f(STRING)


@message(api_key=44, kind="response", valid="0-1", flexible="1+")
@dataclass(frozen=True, slots=True, kw_only=True)
class IncrementalAlterConfigsResponse:
    throttle_time_ms: int = f(INT32)
    responses: tuple[AlterConfigsResourceResponse, ...] = f(
        Array(AlterConfigsResourceResponse)
    )
