"""A connection that runs its own TLS handshake: failures are logged once, with the peer."""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
from pathlib import Path

import anyio
import pytest
from structlog.testing import capture_logs

from broker.config import resolve
from broker.net.connection import ConnectionRegistry, KafkaConnection
from broker.net.dispatch import Dispatcher
from broker.security.tls import TlsSettings, server_context
from broker.server import open_context
from protocol.codec import decode_response, encode_request
from protocol.headers import RequestHeader
from protocol.messages.api_versions import ApiVersionsRequest, ApiVersionsResponse

from .conftest import Certs


def _api_versions(sock: socket.socket | ssl.SSLSocket) -> object:
    header = RequestHeader(
        request_api_key=18, request_api_version=3, correlation_id=1, client_id="t"
    )
    body = ApiVersionsRequest(client_software_name="t", client_software_version="1")
    sock.sendall(encode_request(header, body))
    data = b""
    while len(data) < 4 or len(data) < 4 + struct.unpack(">i", data[:4])[0]:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return decode_response(18, 3, data[4:])[1]


def _client(certs: Certs, *, with_cert: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(certs.ca))
    if with_cert:
        ctx.load_cert_chain(str(certs.client_cert), str(certs.client_key))
    return ctx


def _connect(port: int, ctx: ssl.SSLContext) -> tuple[str, object]:
    """Handshake and ask ApiVersions; (our local address, the response or error)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    local = "{}:{}".format(*raw.getsockname()[:2])
    try:
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            return local, _api_versions(tls)
    except (ssl.SSLError, OSError) as e:
        return local, e


@pytest.mark.parametrize("use_uvloop", [True, False], ids=["uvloop", "asyncio"])
def test_tls_handshake_in_the_connection(
    certs: Certs, tmp_path: Path, use_uvloop: bool
) -> None:
    """Client auth required: a verified client is served; one without a certificate
    and one speaking plain text are refused, each logged once as tls_handshake_failed
    with its peer address."""
    config = resolve(flags={"data_dir": str(tmp_path / "data")}, sets={})
    tls = server_context(
        TlsSettings(
            cert_file=certs.server_cert,
            key_file=certs.server_key,
            ca_file=certs.ca,
            client_auth="required",
        )
    )
    results: dict[str, tuple[str, object]] = {}
    box: dict[str, list[dict[str, object]]] = {}

    def failures() -> list[dict[str, object]]:
        return [e for e in box["logs"] if e["event"] == "tls_handshake_failed"]

    async def main() -> None:
        async with open_context(config) as ctx:
            connections: ConnectionRegistry = {}
            loop = asyncio.get_running_loop()
            async with anyio.create_task_group() as tg:
                server = await loop.create_server(
                    lambda: KafkaConnection(
                        ctx, Dispatcher().route, "ssl", tg, connections, tls=tls
                    ),
                    "127.0.0.1",
                    0,
                )
                port = server.sockets[0].getsockname()[1]
                with anyio.fail_after(30):
                    results["good"] = await anyio.to_thread.run_sync(
                        _connect, port, _client(certs, with_cert=True)
                    )
                    results["no_cert"] = await anyio.to_thread.run_sync(
                        _connect, port, _client(certs, with_cert=False)
                    )
                    results["plain"] = await anyio.to_thread.run_sync(_plain, port)
                    for _ in range(100):  # let the broker side log the last failure
                        if len(failures()) >= 2:
                            break
                        await anyio.sleep(0.01)
                server.close()
                for conn in list(connections.values()):
                    conn.close("test_done")
                tg.cancel_scope.cancel()

    def _plain(port: int) -> tuple[str, object]:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            local = "{}:{}".format(*raw.getsockname()[:2])
            try:
                return local, _api_versions(raw)
            except OSError as e:
                return local, e

    with capture_logs() as logs:
        box["logs"] = logs
        anyio.run(main, backend_options={"use_uvloop": use_uvloop})
    good = results["good"][1]
    assert isinstance(good, ApiVersionsResponse)
    assert good.error_code == 0
    assert isinstance(results["no_cert"][1], (ssl.SSLError, OSError))
    assert isinstance(results["plain"][1], OSError)
    failed = failures()
    assert sorted(e["peer"] for e in failed) == sorted(
        [results["no_cert"][0], results["plain"][0]]
    )
    assert all(e["log_level"] == "warning" and e["listener"] == "ssl" for e in failed)
    assert (
        next(e for e in logs if e["event"] == "connection_open")["peer"]
        == (results["good"][0])
    )


pytestmark = pytest.mark.timeout(60)
