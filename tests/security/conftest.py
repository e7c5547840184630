"""Certificates for TLS tests, made with the ``openssl`` CLI (a CA, a server
certificate for 127.0.0.1/localhost, and client certificates signed by the CA)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class Certs:
    ca: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    client_cert: Path  # CN=alice, signed by the CA
    client_key: Path
    rogue_cert: Path  # CN=alice, self-signed (not by the CA)
    rogue_key: Path

    def secured_broker_args(self) -> tuple[str, ...]:
        """``serve`` flags of the shared secured brokers: TLS with required client
        certificates, ``admin`` a super user, fast and unlimited failed logins."""
        return (
            "--tls-cert", str(self.server_cert),
            "--tls-key", str(self.server_key),
            "--tls-ca", str(self.ca),
            "--tls-client-auth", "required",
            "--set", "super.users=User:admin",
            "--set", "connection.failed.authentication.delay.ms=10",
            "--set", "ailurus.login.max.failures=1000",
        )  # fmt: skip


def _openssl(*args: str | Path, cwd: Path) -> None:
    subprocess.run(
        ["openssl", *map(str, args)],
        cwd=cwd,
        check=True,
        capture_output=True,
        timeout=60,
    )


def _signed(d: Path, name: str, cn: str, ext: str | None) -> tuple[Path, Path]:
    key, csr, cert = d / f"{name}.key", d / f"{name}.csr", d / f"{name}.pem"
    _openssl(
        "req",
        "-new",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        key,
        "-out",
        csr,
        "-subj",
        f"/CN={cn}",
        cwd=d,
    )
    args: list[str | Path] = [
        "x509",
        "-req",
        "-in",
        csr,
        "-CA",
        d / "ca.pem",
        "-CAkey",
        d / "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-out",
        cert,
    ]
    if ext:
        (d / f"{name}.ext").write_text(ext)
        args += ["-extfile", d / f"{name}.ext"]
    _openssl(*args, cwd=d)
    return cert, key


def make_certs(d: Path) -> Certs:
    d.mkdir(parents=True, exist_ok=True)
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=ailurus-test-ca",
        cwd=d,
    )
    server_cert, server_key = _signed(
        d,
        "server",
        "localhost",
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )
    client_cert, client_key = _signed(
        d, "client", "alice", "extendedKeyUsage=clientAuth\n"
    )
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "rogue.key",
        "-out",
        "rogue.pem",
        "-days",
        "2",
        "-subj",
        "/CN=alice",
        cwd=d,
    )
    return Certs(
        ca=d / "ca.pem",
        ca_key=d / "ca.key",
        server_cert=server_cert,
        server_key=server_key,
        client_cert=client_cert,
        client_key=client_key,
        rogue_cert=d / "rogue.pem",
        rogue_key=d / "rogue.key",
    )


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))
