"""Broker-to-broker admin calls: the peer client against a real admin server with
a token, and a streaming route taking a body far over the 1 MiB bound of the
others (the snapshot upload's shape)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from broker.admin.server import (
    MAX_BODY,
    AdminView,
    HttpRequest,
    HttpResponse,
    RouteTable,
    serve_admin,
)
from broker.config import resolve
from broker.context import Runtime
from broker.metrics import Metrics
from broker.snapshots.peers import PeerError, peer_request, peer_upload

TOKEN = "peer-secret-of-the-cluster"


async def _digest(view: AdminView, request: HttpRequest) -> HttpResponse:
    assert request.stream is not None
    h = hashlib.sha256()
    n = 0
    while chunk := await request.stream.read():
        h.update(chunk)
        n += len(chunk)
    return HttpResponse.json({"bytes": n, "sha256": h.hexdigest()})


def _echo(view: AdminView, request: HttpRequest) -> HttpResponse:
    return HttpResponse.json({"got": request.body.decode()})


async def _parts(data: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(data), 100_000):
        yield data[i : i + 100_000]


@pytest.mark.anyio
async def test_peer_calls_carry_the_token_and_stream_large_bodies(
    tmp_path: Path,
) -> None:
    """With the token a JSON call and a 3 MiB streamed upload are answered (the
    route saw every byte); without it both get 401, which the client reports."""
    config = resolve(
        flags={
            "admin_addr": "127.0.0.1:0",
            "data_dir": str(tmp_path),
            "admin_token": TOKEN,
        },
        sets={},
    )
    view = AdminView(config=config, runtime=Runtime(), metrics=Metrics())
    routes = RouteTable()
    routes.add("PUT", "/v1/test-digest", _digest, streaming=True, timeout_s=60)
    routes.add("POST", "/v1/test-echo", _echo)
    data = bytes(range(256)) * (3 * 4096 + 7)
    assert len(data) > MAX_BODY
    async with anyio.create_task_group() as tg:
        _, port = await tg.start(serve_admin, view, routes)
        address = f"127.0.0.1:{port}"
        answer = await peer_request(
            address, "POST", "/v1/test-echo", {"a": 1}, token=TOKEN
        )
        assert answer == {"got": '{"a": 1}'}
        answer = await peer_upload(
            address,
            "/v1/test-digest",
            len(data),
            _parts(data),
            token=TOKEN,
            timeout_s=60,
        )
        assert answer == {
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        with pytest.raises(PeerError) as err:
            await peer_request(address, "POST", "/v1/test-echo", {}, token=None)
        assert err.value.status == 401
        with pytest.raises(PeerError) as err:
            await peer_upload(
                address,
                "/v1/test-digest",
                10,
                _parts(b"x" * 10),
                token="wrong",
                timeout_s=60,
            )
        assert err.value.status == 401
        with pytest.raises(PeerError) as err:
            await peer_request("127.0.0.1:1", "GET", "/", token=None, timeout_s=5)
        assert err.value.status == 0
        tg.cancel_scope.cancel()
