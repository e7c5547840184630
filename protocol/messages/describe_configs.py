"""DescribeConfigs (key 32), v0–4.

Version notes: v1 adds ``include_synonyms``, the config source and the synonyms
(``is_default`` exists in v0 only); v2 sends the response before throttling; v3
adds ``include_documentation``, the config type and documentation; v4 flexible.
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
class DescribeConfigsResource:
    resource_type: int = f(INT8)
    resource_name: str = f(STRING)
    configuration_keys: tuple[str, ...] | None = f(Nullable(Array(STRING), "0+"))


@message(api_key=32, kind="request", valid="0-4", flexible="4+")
@dataclass(frozen=True, slots=True, kw_only=True)
class DescribeConfigsRequest:
    resources: tuple[DescribeConfigsResource, ...] = f(Array(DescribeConfigsResource))
    include_synonyms: bool = f(BOOL, versions="1+")
    include_documentation: bool = f(BOOL, versions="3+")


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class DescribeConfigsSynonym:
    name: str = f(STRING, versions="1+")
    value: str | None = f(Nullable(STRING, "0+"), versions="1+")
    source: int = f(INT8, versions="1+")


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class DescribeConfigsResourceResult:
    name: str = f(STRING)
    value: str | None = f(Nullable(STRING, "0+"))
    read_only: bool = f(BOOL)
    is_default: bool = f(BOOL, versions="0")
    # The v0 meaning depends on the resource; -1 is Kafka's placeholder.
    config_source: int = f(INT8, versions="1+", default=-1)
    is_sensitive: bool = f(BOOL)
    synonyms: tuple[DescribeConfigsSynonym, ...] = f(
        Array(DescribeConfigsSynonym), versions="1+"
    )
    config_type: int = f(INT8, versions="3+")
    documentation: str | None = f(Nullable(STRING, "0+"), versions="3+")


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class DescribeConfigsResult:
    error_code: int = f(INT16)
    error_message: str | None = f(Nullable(STRING, "0+"))
    resource_type: int = f(INT8)
    resource_name: str = f(STRING)
    configs: tuple[DescribeConfigsResourceResult, ...] = f(
        Array(DescribeConfigsResourceResult)
    )


@message(api_key=32, kind="response", valid="0-4", flexible="4+")
@dataclass(frozen=True, slots=True, kw_only=True)
class DescribeConfigsResponse:
    throttle_time_ms: int = f(INT32)
    results: tuple[DescribeConfigsResult, ...] = f(Array(DescribeConfigsResult))
