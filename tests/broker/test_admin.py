"""The admin HTTP server: readiness, routing, status codes, registered routes."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from broker.admin.routes import build_routes
from broker.admin.server import (
    AdminView,
    HttpRequest,
    HttpResponse,
    RouteTable,
    serve_admin,
)
from broker.config import resolve
from broker.context import Runtime
from broker.metrics import Metrics
from broker.server import open_context


async def _get(port: int, path: str, method: str = "GET") -> tuple[int, bytes]:
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        data = b""
        while True:
            try:
                data += await stream.receive()
            except anyio.EndOfStream:
                break
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


def _echo(view: AdminView, request: HttpRequest) -> HttpResponse:
    return HttpResponse.json({"word": request.params["word"], "q": request.query})


@pytest.mark.anyio
async def test_admin_routes_answer_with_the_right_status(tmp_path: Path) -> None:
    """503 while starting, 200 once ready; 404 and 405 for unknown paths and methods."""
    config = resolve(
        flags={"admin_addr": "127.0.0.1:0", "data_dir": str(tmp_path)}, sets={}
    )
    runtime = Runtime()
    view = AdminView(config=config, runtime=runtime, metrics=Metrics())
    routes = RouteTable()
    build_routes(routes)
    routes.add("GET", "/v1/test-echo/{word}", _echo)
    async with anyio.create_task_group() as tg:
        host, port = await tg.start(serve_admin, view, routes)
        assert (host, runtime.admin_address) == ("127.0.0.1", (host, port))
        status, body = await _get(port, "/v1/status/ready")
        assert (status, json.loads(body)) == (503, {"status": "starting"})
        assert (await _get(port, "/v1/topics"))[0] == 503
        status, body = await _get(port, "/metrics")  # core lines while starting
        assert status == 200
        assert b"ailurus_connections_active 0" in body
        assert b"ailurus_partition_log_end_offset" not in body
        async with open_context(config) as ctx:
            view.attach(ctx)
            ctx.topics.logs.create_topic("t", 1)
            assert (await _get(port, "/v1/topics"))[0] == 503  # not ready yet
            runtime.ready = True
            assert await _get(port, "/v1/status/ready") == (
                200,
                b'{"status": "ready"}\n',
            )
            status, body = await _get(port, "/v1/topics")
            assert (status, [t["name"] for t in json.loads(body)]) == (200, ["t"])
            assert (await _get(port, "/nope"))[0] == 404
            assert (await _get(port, "/v1/status/ready", method="POST"))[0] == 405
            status, body = await _get(port, "/v1/test-echo/hello?x=1")
            assert (status, json.loads(body)) == (
                200,
                {"word": "hello", "q": {"x": ["1"]}},
            )
            status, body = await _get(port, "/metrics")
            assert status == 200
            assert b"ailurus_connections_active 0" in body
            assert (
                b'ailurus_partition_log_end_offset{topic="t",partition="0"} 0' in body
            )
            runtime.shutting_down = True
            assert (await _get(port, "/v1/status/ready"))[0] == 503
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_admin_serves_only_the_routes_added_to_its_table(tmp_path: Path) -> None:
    """Routes come from the table handed to the server, never from imports: a table
    with only the echo route answers 404 for the broker's own routes."""
    config = resolve(
        flags={"admin_addr": "127.0.0.1:0", "data_dir": str(tmp_path)}, sets={}
    )
    view = AdminView(config=config, runtime=Runtime(), metrics=Metrics())
    routes = RouteTable()
    routes.add("GET", "/v1/test-echo/{word}", _echo)
    async with anyio.create_task_group() as tg:
        _, port = await tg.start(serve_admin, view, routes)
        assert (await _get(port, "/v1/status/ready"))[0] == 404
        assert (await _get(port, "/metrics"))[0] == 404
        status, body = await _get(port, "/v1/test-echo/hi")
        assert (status, json.loads(body)) == (200, {"word": "hi", "q": {}})
        tg.cancel_scope.cancel()
