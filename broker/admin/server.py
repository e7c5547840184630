"""The admin HTTP API: a small HTTP/1.1 server on anyio with a route table.

Routes live in a :class:`RouteTable` that the caller fills and hands to
:func:`serve_admin` (the broker's table is built by
:func:`broker.admin.routes.build_routes`; nothing registers on import), e.g.::

    GET /v1/status/ready   200 {"status": "ready"} when serving, 503 while starting
    GET /v1/topics         every topic with its partitions' offsets and sizes
    GET /v1/topics/{name}  one topic (404 if unknown)
    GET /v1/brokers        the live brokers, their listeners and partition counts
    GET /v1/cluster, /v1/partitions/{topic}   the cluster's health, partition states
    GET /metrics           Prometheus text format (docs/metrics.md)
    GET /v1/groups, /v1/snapshots, ...   (broker.admin.routes.groups, .snapshots)

Access (``broker.security.admin_auth``): bound to loopback by default; when
``AILURUS_ADMIN_TOKEN`` is set, every request needs ``Authorization: Bearer <token>``
(401 otherwise) except GETs of the routes registered ``public=True``, which reveal no
data: ``/v1/status/ready`` (for orchestrators' probes) and ``/v1/brokers`` (what a
Kafka client learns anyway). Topics, groups (committed offsets), snapshots and
``/metrics`` (per-group lag) need it. An address beyond loopback without a token
refuses to start.

One request per connection (``Connection: close``); request heads over 16 KiB and
bodies over 1 MiB are refused, except by a route added with ``streaming=True``: it
gets the body as a :class:`BodyReader` (``request.stream``) and bounds it itself (a
snapshot upload). A request must be answered within 10 s, or the route's own
``timeout_s``. Handlers are plain functions returning a :class:`HttpResponse`,
synchronous or async.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

import anyio
import anyio.abc
import structlog

from broker.config import BrokerConfig
from broker.context import BrokerContext, Runtime
from broker.metrics import Metrics
from broker.net.acceptor import serve_listener
from broker.security.admin_auth import (
    AdminAuthError,
    authorized,
    check_binding,
    needs_token,
)
from broker.startup import ADMIN_ADDR_SETTING, EXIT_CONFIG, StartupError, bind_error

log = structlog.get_logger("broker.admin")

MAX_HEAD = 16 * 1024
MAX_BODY = 1024 * 1024


class BodyReader:
    """A streaming route's request body: ``length`` bytes, read as they arrive."""

    def __init__(
        self, stream: anyio.abc.ByteReceiveStream, initial: bytes, length: int
    ) -> None:
        self._stream = stream
        self._buf = bytearray(initial[:length])
        self.remaining = length  # bytes of the body not yet returned

    async def read(self, max_bytes: int = 1024 * 1024) -> bytes:
        """Up to ``max_bytes`` of the body; b"" once it is all read.

        Raises:
            anyio.EndOfStream: the peer closed the connection early.
        """
        if self.remaining <= 0:
            return b""
        if not self._buf:
            self._buf += await self._stream.receive(min(max_bytes, 1024 * 1024))
        n = min(max_bytes, self.remaining, len(self._buf))
        out = bytes(self._buf[:n])
        del self._buf[:n]
        self.remaining -= n
        return out

    async def read_exactly(self, n: int) -> bytes:
        """Exactly ``n`` bytes of the body.

        Raises:
            anyio.EndOfStream: the body (or the connection) ends first.
        """
        if n > self.remaining:
            raise anyio.EndOfStream
        out = bytearray()
        while len(out) < n:
            out += await self.read(n - len(out))
        return bytes(out)


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpRequest:
    """A parsed request as route handlers see it."""

    method: str
    path: str
    query: dict[str, list[str]]
    params: dict[str, str]
    headers: dict[str, str]
    body: bytes
    stream: BodyReader | None = None  # the body of a streaming route (body is b"")


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpResponse:
    """What a route handler returns."""

    status: int
    body: bytes
    content_type: str = "application/json"

    @classmethod
    def json(cls, value: object, status: int = 200) -> HttpResponse:
        return cls(status=status, body=json.dumps(value).encode() + b"\n")

    @classmethod
    def error(cls, status: int, message: str) -> HttpResponse:
        return cls.json({"error": message}, status=status)


@dataclass(slots=True, kw_only=True, eq=False)
class AdminView:
    """What the routes see: the broker's runtime state from the start, and the
    services once :meth:`attach` hands them over (None while starting)."""

    config: BrokerConfig
    runtime: Runtime
    metrics: Metrics
    ctx: BrokerContext | None = None

    def attach(self, ctx: BrokerContext) -> None:
        """Serve the broker's services from now on."""
        self.ctx = ctx


RouteFn = Callable[[AdminView, HttpRequest], HttpResponse | Awaitable[HttpResponse]]


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    fn: RouteFn
    public: bool = False
    streaming: bool = False
    timeout_s: float = 10.0


class RouteTable:
    """The admin API's routes, matched in the order they were added."""

    def __init__(self) -> None:
        self._routes: list[Route] = []

    def add(
        self,
        method: str,
        path: str,
        fn: RouteFn,
        *,
        public: bool = False,
        streaming: bool = False,
        timeout_s: float = 10.0,
    ) -> None:
        """Add a route; ``{name}`` in ``path`` captures one path segment.

        ``public``: a GET of it reveals no data, so it needs no admin token; every
        other route needs the token when one is set. ``streaming``: the body is not
        read (nor bounded) first; the route reads ``request.stream``. ``timeout_s``:
        how long the request may take in all.
        """
        regex = "^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path) + "$"
        self._routes.append(
            Route(method.upper(), re.compile(regex), fn, public, streaming, timeout_s)
        )

    def match(self, path: str) -> list[tuple[Route, re.Match[str]]]:
        """Every route whose path matches ``path``, whatever its method."""
        return [
            (r, m) for r in self._routes if (m := r.pattern.match(path)) is not None
        ]


_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Payload Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


async def serve_admin(
    view: AdminView,
    routes: RouteTable,
    *,
    task_status: anyio.abc.TaskStatus[tuple[str, int]],
) -> None:
    """Serve ``routes`` on the configured admin address until cancelled."""
    assert view.config.admin is not None
    addr = view.config.admin
    try:
        check_binding(addr.host, view.config.admin_token)
    except AdminAuthError as e:
        raise StartupError(str(e), exit_code=EXIT_CONFIG) from e
    try:
        listener = await anyio.create_tcp_listener(
            local_host=addr.host, local_port=addr.port, reuse_port=False
        )
    except OSError as e:
        raise bind_error(
            str(addr), e, setting=ADMIN_ADDR_SETTING, what="admin API address"
        ) from e
    sockname = listener.extra(anyio.abc.SocketAttribute.local_address)  # noqa: S610
    host, port = str(sockname[0]), int(sockname[1])
    view.runtime.admin_address = (host, port)
    log.info("listening", listener="admin", host=host, port=port)
    task_status.started((host, port))
    async with listener, anyio.create_task_group() as tg:
        # accept() errors (EMFILE, ...) are logged and survived: broker.net.acceptor
        for one in listener.listeners:
            assert isinstance(one, anyio.abc.SocketListener)  # a TCP listener
            tg.start_soon(
                serve_listener,
                one,
                "admin",
                lambda stream: _serve_one(view, routes, stream),
            )


async def _serve_one(
    view: AdminView, routes: RouteTable, stream: anyio.abc.SocketStream
) -> None:
    async with stream:
        try:
            with anyio.fail_after(10) as scope:
                response = await _read_and_route(view, routes, stream, scope)
            await _send(stream, response)
        except (anyio.EndOfStream, anyio.BrokenResourceError, TimeoutError, OSError):
            return


async def _read_and_route(
    view: AdminView,
    routes: RouteTable,
    stream: anyio.abc.SocketStream,
    scope: anyio.CancelScope,
) -> HttpResponse:
    buf = bytearray()
    while b"\r\n\r\n" not in buf:
        if len(buf) > MAX_HEAD:
            return HttpResponse.error(413, "request head too large")
        buf += await stream.receive()
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        return HttpResponse.error(400, "bad request line")
    method, target, _version = parts
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError:
        return HttpResponse.error(400, "bad content-length")
    url = urlsplit(target)
    path = unquote(url.path)
    token = view.config.admin_token
    matched = routes.match(path)
    public = any(r.public and r.method == method.upper() for r, _ in matched)
    if (
        token is not None
        and needs_token(method, token, public=public)
        and not authorized(headers, token)
    ):
        log.warning("admin_unauthorized", method=method, path=path)
        return HttpResponse.error(401, "a valid admin bearer token is required")
    for r, m in matched:
        if r.method != method.upper():
            continue
        scope.deadline = anyio.current_time() + r.timeout_s
        reader = None
        if r.streaming:
            body = b""
            reader = BodyReader(stream, rest, max(length, 0))
        else:
            if length > MAX_BODY:
                return HttpResponse.error(413, "body too large")
            buf_body = bytearray(rest)
            while len(buf_body) < length:
                buf_body += await stream.receive()
            body = bytes(buf_body[:length])
        request = HttpRequest(
            method=method.upper(),
            path=path,
            query=parse_qs(url.query),
            params=m.groupdict(),
            headers=headers,
            body=body,
            stream=reader,
        )
        return await _call(r.fn, view, request)
    if matched:
        return HttpResponse.error(405, "method not allowed")
    return HttpResponse.error(404, "not found")


async def _call(fn: RouteFn, view: AdminView, request: HttpRequest) -> HttpResponse:
    try:
        result = fn(view, request)
        if inspect.isawaitable(result):
            return await result
        assert isinstance(result, HttpResponse)
        return result
    except (
        Exception
    ) as e:  # a route bug answers 500 and is logged, never kills the broker
        log.exception("admin_route_failed", path=request.path)
        return HttpResponse.error(500, str(e))


async def _send(stream: anyio.abc.SocketStream, response: HttpResponse) -> None:
    reason = _REASONS.get(response.status, "Unknown")
    head = (
        f"HTTP/1.1 {response.status} {reason}\r\n"
        f"Content-Type: {response.content_type}\r\n"
        f"Content-Length: {len(response.body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    await stream.send(head + response.body)
