"""How the CLI's client reaches a secured broker: TLS and SASL (PLAIN, SCRAM-SHA-*).

:class:`Security` carries the settings (rpk's ``-X user=``, ``-X pass=``,
``-X sasl.mechanism=``, ``-X tls.enabled=``, ``-X tls.ca=``, ``-X tls.cert=``,
``-X tls.key=``). :func:`ssl_context` builds the client's TLS context; the
connection wraps its socket in it before the first request. :func:`authenticate`
runs the SASL exchange on a connection after ApiVersions: SaslHandshake v1 names the
mechanism (KIP-152), then each SASL message travels in a SaslAuthenticate request.
SCRAM follows RFC 5802 and KIP-84 (no channel binding, ``c=biws``); the server's
final signature is checked, so a broker that does not know the password cannot
pass itself off as one that does.
"""

from __future__ import annotations

import base64
import hmac
import secrets
import ssl
from dataclasses import dataclass
from typing import Final

from broker.client.errors import ClientError
from broker.client.types import RequestChannel
from broker.security.credentials import (
    client_key,
    hash_name,
    salted_password,
    stored_key_of,
)
from protocol.messages.sasl_authenticate import (
    SaslAuthenticateRequest,
    SaslAuthenticateResponse,
)
from protocol.messages.sasl_handshake import (
    SaslHandshakeRequest,
    SaslHandshakeResponse,
)

MECHANISMS: Final = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
_SASL_HANDSHAKE: Final = 17
_SASL_AUTHENTICATE: Final = 36
_MAX_SCRAM_ITERATIONS: Final = 1_000_000


class AuthenticationFailed(ClientError):
    """The broker refused the credentials, or the SASL exchange went wrong."""


class TlsSetupError(ClientError):
    """The TLS files given cannot be used."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Security:
    """TLS and SASL settings of a client; the defaults mean plaintext, no SASL."""

    user: str | None = None
    password: str | None = None
    mechanism: str | None = None  # None with a user: SCRAM-SHA-256 (rpk's default)
    tls: bool = False
    ca: str | None = None
    cert: str | None = None
    key: str | None = None

    @property
    def sasl(self) -> bool:
        return bool(self.user)

    @property
    def sasl_mechanism(self) -> str:
        return (self.mechanism or "SCRAM-SHA-256").upper()

    @property
    def uses_tls(self) -> bool:
        return self.tls or any((self.ca, self.cert, self.key))


def ssl_context(security: Security) -> ssl.SSLContext:
    """The client TLS context: the CA given (else the system's), a client cert if set.

    Raises:
        TlsSetupError: a file is missing or not a certificate/key.
    """
    try:
        context = ssl.create_default_context(cafile=security.ca)
    except (OSError, ssl.SSLError) as exc:
        raise TlsSetupError(f"tls.ca {security.ca}: {_ssl_reason(exc)}") from None
    if security.cert or security.key:
        if not (security.cert and security.key):
            raise TlsSetupError(
                "give both tls.cert and tls.key for a client certificate"
            )
        try:
            context.load_cert_chain(security.cert, security.key)
        except (OSError, ssl.SSLError) as exc:
            raise TlsSetupError(
                f"tls.cert {security.cert} / tls.key {security.key}: {_ssl_reason(exc)}"
            ) from None
    return context


def _ssl_reason(exc: OSError) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason)
    return exc.strerror or str(exc)


def authenticate(conn: RequestChannel, security: Security) -> None:
    """Authenticate ``conn`` with ``security``'s user, password and mechanism.

    Raises:
        AuthenticationFailed: the broker rejected the mechanism or the credentials.
    """
    mechanism = security.sasl_mechanism
    if mechanism not in MECHANISMS:
        raise AuthenticationFailed(
            f"unknown sasl.mechanism {security.mechanism!r}: "
            f"use one of {', '.join(MECHANISMS)}"
        )
    if not conn.supports(_SASL_HANDSHAKE) or not conn.supports(_SASL_AUTHENTICATE):
        raise AuthenticationFailed(
            f"broker {conn.address} does not offer SASL authentication "
            "(is this a SASL listener?)"
        )
    handshake = conn.request(
        SaslHandshakeRequest(mechanism=mechanism), SaslHandshakeResponse, version=1
    )
    if handshake.error_code:
        offered = ", ".join(handshake.mechanisms) or "none"
        raise AuthenticationFailed(
            f"broker {conn.address} does not accept SASL mechanism {mechanism} "
            f"(it offers: {offered}); set -X sasl.mechanism="
        )
    user = security.user or ""
    password = (security.password or "").encode()
    if mechanism == "PLAIN":
        _exchange(conn, b"\0" + user.encode() + b"\0" + password)
        return
    _scram(conn, mechanism, user, password)


def _exchange(conn: RequestChannel, token: bytes) -> bytes:
    response = conn.request(
        SaslAuthenticateRequest(auth_bytes=token), SaslAuthenticateResponse
    )
    if response.error_code:
        detail = response.error_message or "authentication failed"
        raise AuthenticationFailed(
            f"broker {conn.address}: {detail} (check -X user= / -X pass= "
            "and -X sasl.mechanism=)"
        )
    return bytes(response.auth_bytes)


def _scram(conn: RequestChannel, mechanism: str, user: str, password: bytes) -> None:
    nonce = base64.b64encode(secrets.token_bytes(24)).decode()
    name = user.replace("=", "=3D").replace(",", "=2C")
    first_bare = f"n={name},r={nonce}"
    server_first = _exchange(conn, f"n,,{first_bare}".encode()).decode(
        "utf-8", errors="replace"
    )
    attrs = _attributes(server_first)
    if "e" in attrs:
        raise AuthenticationFailed(f"broker {conn.address}: {attrs['e']}")
    try:
        server_nonce = attrs["r"]
        salt = base64.b64decode(attrs["s"], validate=True)
        iterations = int(attrs["i"])
    except (KeyError, ValueError) as exc:
        raise AuthenticationFailed(
            f"broker {conn.address} sent a bad SCRAM challenge ({exc})"
        ) from None
    if (
        not server_nonce.startswith(nonce)
        or not 1 <= iterations <= _MAX_SCRAM_ITERATIONS
    ):
        raise AuthenticationFailed(
            f"broker {conn.address} sent a bad SCRAM challenge (nonce or iterations)"
        )
    without_proof = f"c=biws,r={server_nonce}"
    auth_message = f"{first_bare},{server_first},{without_proof}".encode()
    salted = salted_password(mechanism, password, salt, iterations)
    ckey = client_key(mechanism, salted)
    digest = hash_name(mechanism)
    signature = hmac.digest(stored_key_of(mechanism, ckey), auth_message, digest)
    proof = bytes(a ^ b for a, b in zip(ckey, signature, strict=True))
    final = f"{without_proof},p={base64.b64encode(proof).decode()}"
    server_final = _attributes(
        _exchange(conn, final.encode()).decode("utf-8", errors="replace")
    )
    if "e" in server_final:
        raise AuthenticationFailed(f"broker {conn.address}: {server_final['e']}")
    server_key = hmac.digest(salted, b"Server Key", digest)
    expected = hmac.digest(server_key, auth_message, digest)
    try:
        got = base64.b64decode(server_final.get("v", ""), validate=True)
    except ValueError:
        got = b""
    if not hmac.compare_digest(got, expected):
        raise AuthenticationFailed(
            f"broker {conn.address} failed to prove it knows the password "
            "(SCRAM server signature mismatch)"
        )


def _attributes(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if sep and len(key) == 1:
            out.setdefault(key, value)
    return out
