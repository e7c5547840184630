"""Admin HTTP API access: loopback by default, a bearer token for changes.

Rules: when a token is configured (``AILURUS_ADMIN_TOKEN``), every request must carry
``Authorization: Bearer <token>`` except a GET/HEAD/OPTIONS of a public route (one
that reveals no data: the readiness probe, the broker list); an admin API bound beyond loopback without a
token refuses to start. Tokens are compared in constant time and never logged.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Mapping
from typing import Final

SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
MIN_TOKEN_LENGTH: Final = 16


class AdminAuthError(ValueError):
    """The admin API's address and token settings are unsafe."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (``localhost`` counts)."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_binding(host: str, token: str | None) -> None:
    """Refuse an admin API reachable beyond loopback without a (long enough) token."""
    if token is not None and len(token) < MIN_TOKEN_LENGTH:
        raise AdminAuthError(
            f"AILURUS_ADMIN_TOKEN must be at least {MIN_TOKEN_LENGTH} characters"
        )
    if not is_loopback(host) and token is None:
        raise AdminAuthError(
            f"the admin API on {host} is reachable beyond loopback: set "
            "AILURUS_ADMIN_TOKEN (a bearer token for mutating requests) or bind it "
            "to 127.0.0.1"
        )


def needs_token(method: str, token: str | None, *, public: bool = False) -> bool:
    """Whether a request with this method, to a public route or not, must present
    the token."""
    return token is not None and (not public or method.upper() not in SAFE_METHODS)


def authorized(headers: Mapping[str, str], token: str) -> bool:
    """Whether the (lower-cased) headers carry ``Authorization: Bearer <token>``."""
    scheme, _, presented = headers.get("authorization", "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(presented.strip().encode(), token.encode())
