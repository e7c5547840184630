"""AlterUserScramCredentials (key 51), v0 (KIP-554).

Version notes: flexible from v0. An upsertion carries the salt and the salted
password the client computed (``Hi(password, salt, iterations)``, RFC 5802); the
password itself never travels.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.schema import (
    BYTES,
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
class ScramCredentialDeletion:
    name: str = f(STRING)
    mechanism: int = f(INT8)


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class ScramCredentialUpsertion:
    name: str = f(STRING)
    mechanism: int = f(INT8)
    iterations: int = f(INT32)
    salt: bytes = f(BYTES)
    salted_password: bytes = f(BYTES)


@message(api_key=51, kind="request", valid="0", flexible="0+")
@dataclass(frozen=True, slots=True, kw_only=True)
class AlterUserScramCredentialsRequest:
    deletions: tuple[ScramCredentialDeletion, ...] = f(Array(ScramCredentialDeletion))
    upsertions: tuple[ScramCredentialUpsertion, ...] = f(
        Array(ScramCredentialUpsertion)
    )


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class AlterUserScramCredentialsResult:
    user: str = f(STRING)
    error_code: int = f(INT16)
    error_message: str | None = f(Nullable(STRING))


@message(api_key=51, kind="response", valid="0", flexible="0+")
@dataclass(frozen=True, slots=True, kw_only=True)
class AlterUserScramCredentialsResponse:
    throttle_time_ms: int = f(INT32)
    results: tuple[AlterUserScramCredentialsResult, ...] = f(
        Array(AlterUserScramCredentialsResult)
    )
