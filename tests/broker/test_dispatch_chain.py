"""The dispatcher: straight to the handler without middleware, else through the chain."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from broker.config import resolve
from broker.net.dispatch import HANDLERS, Dispatcher, load_handlers
from broker.net.request import (
    CloseConnection,
    Handler,
    HandlerResult,
    Middleware,
    RequestContext,
)
from broker.server import _kafka_dispatch, open_context
from protocol.headers import RequestHeader
from protocol.messages.api_versions import ApiVersionsRequest, ApiVersionsResponse


def _rctx(ctx: Any) -> RequestContext:
    header = RequestHeader(
        request_api_key=18, request_api_version=3, correlation_id=1, client_id="t"
    )
    return RequestContext(
        broker=ctx,
        header=header,
        listener="PLAINTEXT",
        peer="test",
        received_at=0.0,
    )


def _request() -> ApiVersionsRequest:
    return ApiVersionsRequest(client_software_name="t", client_software_version="1")


def test_without_middleware_the_handler_is_called_directly() -> None:
    """Without middleware the route is the handler lookup itself, no chain."""
    load_handlers()
    dispatch = Dispatcher()
    assert dispatch.middleware == ()
    assert dispatch.route is Dispatcher().route  # one shared function, no closure
    resp = dispatch(_rctx(None), _request())
    assert isinstance(resp, ApiVersionsResponse)
    assert resp.error_code == 0


def test_middleware_runs_outermost_first_and_may_replace_the_request() -> None:
    """The first middleware wraps the second, which wraps the handler; each sees the
    same request context and hands on what it chooses."""
    load_handlers()
    seen: list[str] = []
    real = HANDLERS[18].fn

    def outer(rctx: RequestContext, request: object, call: Handler) -> HandlerResult:
        seen.append("outer")
        result = call(rctx, request)
        seen.append("outer-done")
        return result

    def inner(rctx: RequestContext, request: object, call: Handler) -> HandlerResult:
        seen.append("inner")
        assert rctx.peer == "test"
        # the handler receives the request the middleware gives it
        assert call is real
        return call(rctx, _request())

    chain: tuple[Middleware, ...] = (outer, inner)
    dispatch = Dispatcher(chain)
    assert dispatch.route is not Dispatcher().route
    for _ in range(2):  # the second call uses the cached chain
        resp = dispatch(_rctx(None), object())
        assert isinstance(resp, ApiVersionsResponse)
    assert seen == ["outer", "inner", "outer-done"] * 2


def test_middleware_may_close_the_connection() -> None:
    """A middleware's CloseConnection reaches the caller (the connection closes)."""

    class Refused(CloseConnection):
        event = "refused_for_test"

    def refuse(rctx: RequestContext, request: object, call: Handler) -> HandlerResult:
        raise Refused("no")

    with pytest.raises(Refused):
        Dispatcher((refuse,))(_rctx(None), _request())


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("sets", "authorizes"),
    [
        ({}, False),
        ({"authorizer.enabled": "true"}, True),
        ({"listener.security.protocol.map": "default:SASL_PLAINTEXT"}, True),
        (
            {
                "listener.security.protocol.map": "default:SASL_PLAINTEXT",
                "authorizer.enabled": "false",
            },
            True,
        ),
    ],
)
async def test_server_authorizes_only_when_security_enforces(
    tmp_path: Path, sets: dict[str, str], authorizes: bool
) -> None:
    """The server's dispatcher has the authorisation middleware exactly when some
    connection can have security state (a listener authenticates, or ACLs are on)."""
    config = resolve(flags={"data_dir": str(tmp_path / "data")}, sets=sets)
    async with open_context(config) as ctx:
        assert ctx.security.enforces is authorizes
        dispatch = _kafka_dispatch(ctx)
        names = [type(m).__name__ for m in dispatch.middleware]
        assert names == (["Authorize"] if authorizes else [])
