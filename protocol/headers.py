"""Request and response headers (Kafka's RequestHeader.json / ResponseHeader.json).

Request header v0 has the API key, version and correlation id; v1 adds the client id
(a classic nullable string even in v2, per its field-level ``flexibleVersions: none``);
v2 adds a tagged-field section. A request uses header v2 in its flexible versions,
else v1. Response header v0 is the correlation id; v1 adds tagged fields and is used
in flexible response versions, except ApiVersions (key 18), whose response always
uses v0 so that a client can read it before it knows what the broker speaks (KIP-511).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from protocol.schema import INT16, INT32, STRING, Nullable, f, message

API_VERSIONS_KEY: Final = 18


@message(api_key=-1, kind="header", valid="0-2", flexible="2+")
@dataclass(frozen=True, slots=True, kw_only=True)
class RequestHeader:
    request_api_key: int = f(INT16)
    request_api_version: int = f(INT16)
    correlation_id: int = f(INT32)
    client_id: str | None = f(Nullable(STRING), versions="1+", flexible="none")


@message(api_key=-1, kind="header", valid="0-1", flexible="1+")
@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseHeader:
    correlation_id: int = f(INT32)


def request_header_version(request_flexible: bool) -> int:
    """The request header version a request in a (non-)flexible version uses."""
    return 2 if request_flexible else 1


def response_header_version(api_key: int, response_flexible: bool) -> int:
    """The response header version; ApiVersions always uses v0 (KIP-511)."""
    if api_key == API_VERSIONS_KEY:
        return 0
    return 1 if response_flexible else 0
