"""SaslAuthenticate (key 36), v0–2.

Version notes: v1 adds ``session_lifetime_ms`` to the response (KIP-368,
re-authentication); v2 flexible.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.schema import BYTES, INT16, INT64, STRING, Nullable, f, message


@message(api_key=36, kind="request", valid="0-2", flexible="2+")
@dataclass(frozen=True, slots=True, kw_only=True)
class SaslAuthenticateRequest:
    auth_bytes: bytes = f(BYTES)


@message(api_key=36, kind="response", valid="0-2", flexible="2+")
@dataclass(frozen=True, slots=True, kw_only=True)
class SaslAuthenticateResponse:
    error_code: int = f(INT16)
    error_message: str | None = f(Nullable(STRING, "0+"))
    auth_bytes: bytes = f(BYTES)
    session_lifetime_ms: int = f(INT64, versions="1+")
