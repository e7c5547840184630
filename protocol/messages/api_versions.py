"""ApiVersions (key 18), v0–4.

Version notes: v3 flexible, adds the client software name/version; the response
always uses response header v0 (KIP-511), even in flexible versions.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.schema import BOOL, INT16, INT32, INT64, STRING, Array, f, message, struct


@message(api_key=18, kind="request", valid="0-4", flexible="3+")
@dataclass(frozen=True, slots=True, kw_only=True)
class ApiVersionsRequest:
    client_software_name: str = f(STRING, versions="3+")
    client_software_version: str = f(STRING, versions="3+")


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class ApiVersion:
    api_key: int = f(INT16)
    min_version: int = f(INT16)
    max_version: int = f(INT16)


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class SupportedFeatureKey:
    name: str = f(STRING)
    min_version: int = f(INT16)
    max_version: int = f(INT16)


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class FinalizedFeatureKey:
    name: str = f(STRING)
    max_version_level: int = f(INT16)
    min_version_level: int = f(INT16)


@message(api_key=18, kind="response", valid="0-4", flexible="3+")
@dataclass(frozen=True, slots=True, kw_only=True)
class ApiVersionsResponse:
    error_code: int = f(INT16)
    api_keys: tuple[ApiVersion, ...] = f(Array(ApiVersion))
    throttle_time_ms: int = f(INT32, versions="1+")
    supported_features: tuple[SupportedFeatureKey, ...] = f(
        Array(SupportedFeatureKey), versions="3+", tag=0
    )
    finalized_features_epoch: int = f(INT64, versions="3+", tag=1, default=-1)
    finalized_features: tuple[FinalizedFeatureKey, ...] = f(
        Array(FinalizedFeatureKey), versions="3+", tag=2
    )
    zk_migration_ready: bool = f(BOOL, versions="3+", tag=3, default=False)
