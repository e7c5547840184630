"""SaslHandshake (key 17), v0–1.

Version notes: v0 is followed by raw SASL tokens on the wire (no Kafka framing
of the exchange); v1 is followed by SaslAuthenticate requests (KIP-152). Never
flexible.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.schema import INT16, STRING, Array, f, message


@message(api_key=17, kind="request", valid="0-1")
@dataclass(frozen=True, slots=True, kw_only=True)
class SaslHandshakeRequest:
    mechanism: str = f(STRING)


@message(api_key=17, kind="response", valid="0-1")
@dataclass(frozen=True, slots=True, kw_only=True)
class SaslHandshakeResponse:
    error_code: int = f(INT16)
    mechanisms: tuple[str, ...] = f(Array(STRING))
