"""TLS server contexts: certificates load, client certificates are checked."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from broker.security.tls import (
    TlsConfigError,
    TlsSettings,
    peer_principal,
    server_context,
)

from .conftest import Certs


def handshake(server: ssl.SSLContext, client: ssl.SSLContext) -> ssl.SSLObject:
    """Run a TLS handshake in memory; the server side's SSLObject."""
    s_in, s_out, c_in, c_out = (
        ssl.MemoryBIO(),
        ssl.MemoryBIO(),
        ssl.MemoryBIO(),
        ssl.MemoryBIO(),
    )
    srv = server.wrap_bio(s_in, s_out, server_side=True)
    cli = client.wrap_bio(c_in, c_out, server_hostname="localhost")
    done = {"s": False, "c": False}
    for _ in range(20):
        for name, obj in (("c", cli), ("s", srv)):
            if not done[name]:
                try:
                    obj.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
            c_in.write(s_out.read())
            s_in.write(c_out.read())
        if all(done.values()):
            # TLS 1.3: the server learns of a rejected client cert on first read.
            cli.write(b"ping")
            s_in.write(c_out.read())
            assert srv.read(4) == b"ping"
            return srv
    raise AssertionError("handshake did not finish")


def client_ctx(
    certs: Certs, cert: Path | None = None, key: Path | None = None
) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(certs.ca))
    if cert is not None:
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


def settings(certs: Certs, client_auth: str = "none") -> TlsSettings:
    return TlsSettings(
        cert_file=certs.server_cert,
        key_file=certs.server_key,
        ca_file=certs.ca if client_auth != "none" else None,
        client_auth=client_auth,
    )


def test_server_context_serves_a_verifying_client(certs: Certs) -> None:
    """A client that trusts the CA completes the handshake; no principal without a cert."""
    srv = handshake(server_context(settings(certs)), client_ctx(certs))
    assert srv.version() in ("TLSv1.2", "TLSv1.3")
    assert peer_principal(srv) is None


def test_required_client_cert_gives_its_cn_as_principal(certs: Certs) -> None:
    """With client auth required, a CA-signed client certificate's CN is the principal."""
    ctx = server_context(settings(certs, "required"))
    srv = handshake(ctx, client_ctx(certs, certs.client_cert, certs.client_key))
    assert peer_principal(srv) == "alice"


@pytest.mark.parametrize("rogue", [False, True])
def test_required_client_cert_rejects_missing_or_foreign_certs(
    certs: Certs, rogue: bool
) -> None:
    """No certificate, or one not signed by the CA, fails the handshake."""
    ctx = server_context(settings(certs, "required"))
    client = (
        client_ctx(certs, certs.rogue_cert, certs.rogue_key)
        if rogue
        else client_ctx(certs)
    )
    with pytest.raises(ssl.SSLError):
        handshake(ctx, client)


def test_requested_client_cert_is_optional(certs: Certs) -> None:
    """With client auth requested, clients without a certificate still connect."""
    srv = handshake(server_context(settings(certs, "requested")), client_ctx(certs))
    assert peer_principal(srv) is None


def test_bad_settings_are_reported(certs: Certs, tmp_path: Path) -> None:
    """Missing files, unknown modes and client auth without a CA are config errors."""
    with pytest.raises(TlsConfigError, match="cannot load"):
        server_context(
            TlsSettings(cert_file=tmp_path / "none.pem", key_file=tmp_path / "none.key")
        )
    with pytest.raises(TlsConfigError, match="one of"):
        server_context(
            TlsSettings(
                cert_file=certs.server_cert,
                key_file=certs.server_key,
                client_auth="maybe",
            )
        )
    with pytest.raises(TlsConfigError, match="CA"):
        server_context(
            TlsSettings(
                cert_file=certs.server_cert,
                key_file=certs.server_key,
                client_auth="required",
            )
        )
    assert peer_principal(None) is None
