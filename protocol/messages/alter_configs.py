"""AlterConfigs (key 33), v0–2.

Version notes: v1 sends the response before throttling; v2 flexible. Replaces a
resource's whole config set (IncrementalAlterConfigs edits it).
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
    value: str | None = f(Nullable(STRING, "0+"))


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class AlterConfigsResource:
    resource_type: int = f(INT8)
    resource_name: str = f(STRING)
    configs: tuple[AlterableConfig, ...] = f(Array(AlterableConfig))


@message(api_key=33, kind="request", valid="0-2", flexible="2+")
@dataclass(frozen=True, slots=True, kw_only=True)
class AlterConfigsRequest:
    resources: tuple[AlterConfigsResource, ...] = f(Array(AlterConfigsResource))
    validate_only: bool = f(BOOL)


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class AlterConfigsResourceResponse:
    error_code: int = f(INT16)
    error_message: str | None = f(Nullable(STRING, "0+"))
    resource_type: int = f(INT8)
    resource_name: str = f(STRING)


@message(api_key=33, kind="response", valid="0-2", flexible="2+")
@dataclass(frozen=True, slots=True, kw_only=True)
class AlterConfigsResponse:
    throttle_time_ms: int = f(INT32)
    responses: tuple[AlterConfigsResourceResponse, ...] = f(
        Array(AlterConfigsResourceResponse)
    )
