"""A request refused without an error response: one warning under its event, then close."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import anyio
import pytest
from structlog.testing import capture_logs

from broker.authz.middleware import AuthorizationDenied
from broker.config import resolve
from broker.net.connection import ConnectionRegistry, KafkaConnection
from broker.net.dispatch import Dispatcher
from broker.net.request import (
    CloseConnection,
    Handler,
    HandlerResult,
    RequestContext,
)
from broker.server import open_context
from protocol.codec import encode_request
from protocol.headers import RequestHeader
from protocol.messages.api_versions import ApiVersionsRequest


class _Refused(CloseConnection):
    event = "refused_for_test"


def _deny(rctx: RequestContext, request: object, call: Handler) -> HandlerResult:
    if rctx.header.client_id == "other":
        raise _Refused("not this one")
    raise AuthorizationDenied(
        f"api key {rctx.header.request_api_key} needs a super user"
    )


def _ask(port: int, client_id: str) -> bytes:
    """Send ApiVersions; everything the broker sends back before it closes."""
    header = RequestHeader(
        request_api_key=18, request_api_version=3, correlation_id=1, client_id=client_id
    )
    body = ApiVersionsRequest(client_software_name="t", client_software_version="1")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(encode_request(header, body))
        data = b""
        for _ in range(1000):  # bounded: the broker closes after the refusal
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


def test_refusal_is_logged_with_its_event_and_closes(tmp_path: Path) -> None:
    """AuthorizationDenied logs authorization_denied (conn, peer, principal, api_key,
    reason) and closes with no response; another CloseConnection uses its own event."""
    config = resolve(
        flags={"data_dir": str(tmp_path / "data")}, sets={"authorizer.enabled": "true"}
    )
    answers: dict[str, bytes] = {}

    async def main() -> None:
        async with open_context(config) as ctx:
            connections: ConnectionRegistry = {}
            dispatch = Dispatcher((_deny,)).route
            loop = asyncio.get_running_loop()
            async with anyio.create_task_group() as tg:
                server = await loop.create_server(
                    lambda: KafkaConnection(ctx, dispatch, "default", tg, connections),
                    "127.0.0.1",
                    0,
                )
                port = server.sockets[0].getsockname()[1]
                with anyio.fail_after(30):
                    for client in ("denied", "other"):
                        answers[client] = await anyio.to_thread.run_sync(
                            _ask, port, client
                        )
                server.close()
                for conn in list(connections.values()):
                    conn.close("test_done")
                tg.cancel_scope.cancel()

    with capture_logs() as logs:
        anyio.run(main, backend_options={"use_uvloop": True})
    assert answers == {"denied": b"", "other": b""}
    denied = [e for e in logs if e["event"] == "authorization_denied"]
    assert len(denied) == 1
    assert denied[0]["log_level"] == "warning"
    assert denied[0]["principal"] == "ANONYMOUS"
    assert denied[0]["api_key"] == 18
    assert denied[0]["reason"] == "api key 18 needs a super user"
    assert set(denied[0]) >= {"conn", "peer"}
    other = [e for e in logs if e["event"] == "refused_for_test"]
    assert len(other) == 1
    assert other[0]["reason"] == "not this one"
    closed = [e.get("reason") for e in logs if e["event"] == "connection_closing"]
    assert {"authorization_denied", "refused_for_test"} <= set(closed)


pytestmark = pytest.mark.timeout(60)
