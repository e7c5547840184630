"""TLS for Kafka listeners: stdlib ``ssl`` server contexts and the peer's principal.

``client_auth`` is Kafka's ``ssl.client.auth``: ``none`` (no client certificate
asked), ``requested`` (asked, verified against the CA if sent) or ``required``
(handshake fails without a certificate signed by the CA). The principal of a client
certificate is its subject's common name (CN). TLS 1.2 is the minimum.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Final

CLIENT_AUTH_MODES: Final = ("none", "requested", "required")


class TlsConfigError(ValueError):
    """The certificate, key or CA cannot be loaded, or a setting is invalid."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsSettings:
    """Where a listener's certificate material lives and whether clients show one."""

    cert_file: Path
    key_file: Path
    ca_file: Path | None = None
    client_auth: str = "none"


def server_context(settings: TlsSettings) -> ssl.SSLContext:
    """A server ``SSLContext`` for ``settings`` (raises TlsConfigError)."""
    if settings.client_auth not in CLIENT_AUTH_MODES:
        raise TlsConfigError(
            f"client auth must be one of {', '.join(CLIENT_AUTH_MODES)}, "
            f"not {settings.client_auth!r}"
        )
    if settings.client_auth != "none" and settings.ca_file is None:
        raise TlsConfigError("client certificate auth needs a CA file (--tls-ca)")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(str(settings.cert_file), str(settings.key_file))
        if settings.ca_file is not None:
            ctx.load_verify_locations(cafile=str(settings.ca_file))
    except (OSError, ssl.SSLError) as e:
        raise TlsConfigError(f"cannot load TLS material: {e}") from e
    ctx.verify_mode = {
        "none": ssl.CERT_NONE,
        "requested": ssl.CERT_OPTIONAL,
        "required": ssl.CERT_REQUIRED,
    }[settings.client_auth]
    return ctx


def peer_principal(ssl_object: object) -> str | None:
    """The CN of the verified client certificate on a connection, if any."""
    if not isinstance(ssl_object, ssl.SSLObject | ssl.SSLSocket):
        return None
    cert = ssl_object.getpeercert()
    if not cert:
        return None
    subject = cert.get("subject", ())
    for rdn in subject if isinstance(subject, tuple) else ():
        for pair in rdn:
            if len(pair) == 2 and pair[0] == "commonName":
                return str(pair[1])
    return None
