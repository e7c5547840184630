"""DescribeUserScramCredentials (key 50), v0 (KIP-554).

Version notes: flexible from v0; a null user list means every user. Mechanisms:
1 SCRAM-SHA-256, 2 SCRAM-SHA-512.
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


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class UserName:
    name: str = f(STRING)


@message(api_key=50, kind="request", valid="0", flexible="0+")
@dataclass(frozen=True, slots=True, kw_only=True)
class DescribeUserScramCredentialsRequest:
    users: tuple[UserName, ...] | None = f(Nullable(Array(UserName)))


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class CredentialInfo:
    mechanism: int = f(INT8)
    iterations: int = f(INT32)


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class DescribeUserScramCredentialsResult:
    user: str = f(STRING)
    error_code: int = f(INT16)
    error_message: str | None = f(Nullable(STRING))
    credential_infos: tuple[CredentialInfo, ...] = f(Array(CredentialInfo))


@message(api_key=50, kind="response", valid="0", flexible="0+")
@dataclass(frozen=True, slots=True, kw_only=True)
class DescribeUserScramCredentialsResponse:
    throttle_time_ms: int = f(INT32)
    error_code: int = f(INT16)
    error_message: str | None = f(Nullable(STRING))
    results: tuple[DescribeUserScramCredentialsResult, ...] = f(
        Array(DescribeUserScramCredentialsResult)
    )
