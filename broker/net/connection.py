"""One client connection: the thin driver around the sans-IO codec.

Byte path: an ``asyncio.Protocol`` (measured in docs/benchmarks.md: a Protocol
callback is several times cheaper per frame than anyio streams). ``data_received``
feeds the chunk to :class:`protocol.framing.FrameReader`, decodes every complete
frame and dispatches it at once. Requests answered immediately fill their response
slot; :class:`broker.net.request.Deferred` ones (acks=all produce, long-poll fetch, group
joins) run as tasks in this connection's own anyio task group (:meth:`run`). Responses
leave strictly in request order, the ready prefix of the slot queue in one
``writelines`` call. acks=0 produce gets no slot.

Limits: ``queued.max.request.bytes`` caps the bytes of requests not yet answered (and
a full transport write buffer) — beyond it the connection stops reading
(backpressure); the broker-wide ``ailurus.partial.frames.max.bytes``
(:mod:`broker.net.frame_budget`) caps the bytes held in partly received frames across
all connections — beyond it connections in the middle of a large frame stop
reading, all but the one closest to completing; ``connections.max.idle.ms`` closes
connections without traffic (checked by the server's idle sweeper).

Bad input: a malformed frame or an oversized size prefix closes the connection with
one ``bad_request`` warning; an unsupported ApiVersions version is answered in the
v0 body format with UNSUPPORTED_VERSION (KIP-511); any other unknown API key or
version closes the connection, as Kafka does.

Security (``broker.security``): each connection on a listener that authenticates, or
when ACLs are on, gets a ``ConnectionSecurity``; before SASL authentication only
ApiVersions and the SASL APIs pass (anything else closes the connection), and every
request goes through the authorisation middleware the server gave the dispatcher. A
request refused without an error response (``CloseConnection``) is logged under the
exception's event and closes the connection. A failed SaslAuthenticate is answered
(after the handler's ``connection.failed.authentication.delay.ms``), then the
connection is closed, as Kafka does.

This is the only module allowed to catch every exception (a handler bug closes one connection, never the broker).
"""

from __future__ import annotations

import asyncio
import itertools
import ssl
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, Protocol, TypeAlias, cast

import anyio
import structlog

from broker.net.dispatch import advertised_versions, api_name, is_handled
from broker.net.frame_budget import FrameBudget
from broker.net.request import (
    NO_RESPONSE,
    CloseConnection,
    Deferred,
    HandlerResult,
    RequestContext,
)
from broker.security.session import ConnectionSecurity
from protocol.codec import decode_request, encode_response
from protocol.error_codes import ErrorCode
from protocol.errors import (
    DecodeError,
    FrameTooLarge,
    ProtocolError,
    UnsupportedVersion,
)
from protocol.framing import ASSEMBLY_INITIAL, FrameReader
from protocol.headers import RequestHeader
from protocol.messages.api_versions import ApiVersion, ApiVersionsResponse

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from broker.context import BrokerContext

# What the connection hands each decoded request to (net.dispatch.Dispatcher.route).
Dispatch: TypeAlias = Callable[[RequestContext, object], HandlerResult]

log = structlog.get_logger("broker.connection")
_ids = itertools.count(1)
_SASL_AUTHENTICATE = 36


class _TlsLayerFactory(Protocol):
    """The constructor shared by uvloop's and asyncio's TLS protocols."""

    def __call__(
        self,
        loop: asyncio.AbstractEventLoop,
        app_protocol: asyncio.BaseProtocol,
        sslcontext: ssl.SSLContext,
        waiter: asyncio.Future[None],
        *,
        server_side: bool,
        ssl_handshake_timeout: float,
    ) -> asyncio.BaseProtocol: ...


def _ssl_protocol_class(loop: object) -> _TlsLayerFactory:
    """The TLS protocol the running loop uses for ssl= servers (uvloop's or asyncio's)."""
    import uvloop.loop

    if isinstance(loop, uvloop.loop.Loop):
        # Exported by uvloop.loop but missing from its type stubs.
        return cast("_TlsLayerFactory", getattr(uvloop.loop, "SSLProtocol"))  # noqa: B009
    from asyncio import sslproto

    return cast("_TlsLayerFactory", sslproto.SSLProtocol)


class _Slot:
    """One response position in the connection's ordered output queue."""

    __slots__ = ("api", "buffers", "header", "size", "started")

    def __init__(self, header: RequestHeader, size: int, api: str, started: float):
        self.header = header
        self.size = size
        self.api = api
        self.started = started
        self.buffers: list[bytes | bytearray | memoryview] | None = None


# Bytes are received into this buffer (shared: get_buffer and buffer_updated run
# back to back in one loop callback, and buffer_updated copies what it keeps), except
# the body of a large frame, which is received straight into its own buffer.
_RECV_SIZE: Final = 256 * 1024
_SCRATCH: Final = memoryview(bytearray(_RECV_SIZE))
# Receive in place when at least this much of a frame is still missing.
_IN_PLACE_MIN: Final = 16 * 1024


# The open connections of a broker by id (owned by the listeners: drain, idle sweep).
ConnectionRegistry: TypeAlias = "dict[int, KafkaConnection]"


class KafkaConnection(asyncio.BufferedProtocol):
    """asyncio protocol for one Kafka client connection."""

    def __init__(
        self,
        ctx: BrokerContext,
        dispatch: Dispatch,
        listener: str,
        server_tg: TaskGroup,
        connections: ConnectionRegistry,
        *,
        tls: ssl.SSLContext | None = None,
        budget: FrameBudget | None = None,
    ):
        self.ctx = ctx
        self._dispatch = dispatch
        self._connections = connections
        # Broker-wide budget for partly received frames (None: not budgeted).
        self._budget = budget
        self._budget_held = 0
        self._budget_paused = False
        # With ``tls`` the listener accepts plain TCP and this connection puts the
        # loop's TLS protocol in front of itself, so a failed handshake is logged
        # with its peer (servers created with ssl= drop those failures silently).
        self._tls = tls
        self._tls_layer: asyncio.BaseProtocol | None = None
        self.listener = listener
        self.id = next(_ids)
        self.peer = "?"
        self._server_tg = server_tg
        self._reader = FrameReader(max_frame_size=ctx.config.max_request_size)
        self._transport: asyncio.Transport | None = None
        self._slots: deque[_Slot] = deque()
        self._inflight_bytes = 0
        self._read_paused = False
        self._write_paused = False
        self._draining = False
        self._closed = anyio.Event()
        self._is_closed = False
        self._tg: TaskGroup | None = None
        self._early: list[tuple[_Slot, Deferred]] = []
        # acks=all produce waits, run one after another by one task (responses go
        # out in request order anyway; one task per request cost ~8% of produce).
        # The task runs only while waits are queued (an idle connection holds no
        # task: 10,000 idle connections would pay ~5 KiB each).
        self._produce_waits: deque[tuple[_Slot, Deferred]] = deque()
        self._produce_runner = False
        self._in_place = False
        self.last_active = time.monotonic()
        self.opened_at = time.time()
        self.security: ConnectionSecurity | None = None

    # -- lifecycle ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport; they implement it.
        transport = cast("asyncio.Transport", transport)
        if self._tls is not None and self._tls_layer is None:
            self._start_tls(transport, self._tls)
            return
        if self._tls_layer is None:
            self._set_peer(transport)
        self._open(transport)

    def _set_peer(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)

    def _start_tls(self, raw: asyncio.Transport, tls: ssl.SSLContext) -> None:
        """Put the loop's TLS protocol between the socket and this connection.

        Done synchronously in connection_made (the loop starts reading right after
        it returns, so no byte of the handshake can reach this protocol). The TLS
        layer calls connection_made again with the decrypted transport once the
        handshake is done; a failed one is logged here, once, with the peer.
        """
        self._set_peer(raw)
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        layer = _ssl_protocol_class(loop)(
            loop,
            self,
            tls,
            waiter,
            server_side=True,
            ssl_handshake_timeout=10.0,
        )
        self._tls_layer = layer
        raw.set_protocol(layer)
        layer.connection_made(raw)
        waiter.add_done_callback(self._handshake_done)

    def _handshake_done(self, waiter: asyncio.Future[None]) -> None:
        exc = None if waiter.cancelled() else waiter.exception()
        if exc is None:
            return
        log.warning(
            "tls_handshake_failed",
            peer=self.peer,
            listener=self.listener,
            error=f"{type(exc).__name__}: {exc}",
        )

    def _open(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        metrics = self.ctx.metrics
        if len(self._connections) >= self.ctx.config.max_connections:
            metrics.connections_rejected += 1
            log.warning(
                "connection_rejected",
                peer=self.peer,
                reason="max_connections",
                limit=self.ctx.config.max_connections,
            )
            self._is_closed = True
            transport.abort()
            return
        self.security = self.ctx.security.connection_for(
            self.listener, self.peer, transport.get_extra_info("ssl_object")
        )
        self._connections[self.id] = self
        metrics.connections_open += 1
        metrics.connections_total += 1
        log.info(
            "connection_open", conn=self.id, peer=self.peer, listener=self.listener
        )
        self._server_tg.start_soon(self.run, name=f"conn-{self.id}")

    async def run(self) -> None:
        """Host this connection's task group until it closes."""
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                if self._produce_waits:
                    self._produce_runner = True
                    tg.start_soon(self._run_produce_waits)
                for slot, deferred in self._early:
                    tg.start_soon(self._complete, slot, deferred)
                self._early.clear()
                await self._closed.wait()
                tg.cancel_scope.cancel()
        finally:
            self._tg = None

    def connection_lost(self, exc: Exception | None) -> None:
        self._release_budget()
        if self._connections.pop(self.id, None) is None:
            return
        self._is_closed = True
        self.ctx.metrics.connections_open -= 1
        self._closed.set()
        log.info(
            "connection_close",
            conn=self.id,
            peer=self.peer,
            seconds=round(time.time() - self.opened_at, 3),
            error=None if exc is None else str(exc),
        )

    def close(self, reason: str) -> None:
        """Close the connection (pending responses are dropped)."""
        if self._transport is not None and not self._is_closed:
            self._is_closed = True
            log.debug("connection_closing", conn=self.id, reason=reason)
            self._release_budget()
            self._transport.abort()

    def stop_reading(self) -> None:
        """Shutdown: take no new requests; pending ones still get their responses."""
        self._draining = True
        self._update_backpressure()

    @property
    def is_closed(self) -> bool:
        return self._is_closed

    @property
    def busy(self) -> bool:
        """Whether requests are awaiting a response (not idle)."""
        return bool(self._slots)

    # -- reading -----------------------------------------------------------

    def get_buffer(self, sizehint: int) -> memoryview:
        view = self._reader.assembly_buffer(_IN_PLACE_MIN)
        self._in_place = view is not None
        return _SCRATCH if view is None else view

    def buffer_updated(self, nbytes: int) -> None:
        if self._in_place:
            self._in_place = False
            self._received(None, nbytes)
        else:
            self._received(_SCRATCH[:nbytes], nbytes)

    def _received(self, data: memoryview | None, nbytes: int) -> None:
        """``nbytes`` arrived: in ``data`` (copied by the reader) or in place."""
        if self._is_closed:
            return
        self.last_active = time.monotonic()
        self.ctx.metrics.bytes_in += nbytes
        reader = self._reader
        try:
            if data is None:
                reader.assembly_received(nbytes)
            else:
                reader.receive_data(data)
            frames = reader.frames()
        except FrameTooLarge as e:
            self._bad_request("frame_too_large", size=e.size, max_size=e.max_size)
            return
        except ProtocolError as e:
            self._bad_request("bad_frame", error=str(e))
            return
        try:
            for frame in frames:
                self._handle_frame(frame)
                if self.is_closed:
                    return
        except Exception:
            log.exception("handler_failed", conn=self.id, peer=self.peer)
            self.close("handler_failed")
            return
        self._flush()
        if self._budget is not None and (self._budget_held or reader.assembly_held):
            self._sync_budget()
        self._update_backpressure()

    # -- the broker-wide budget for partly received frames ---------------------

    @property
    def frame_missing(self) -> int:
        """Bytes of the partly received frame not yet received."""
        return self._reader.assembly_missing

    def _sync_budget(self) -> None:
        """Report what the partly received frame holds; pause if the budget says so."""
        budget = self._budget
        assert budget is not None
        reader = self._reader
        held = reader.assembly_held
        self._budget_held = held
        may_read = budget.update(
            self, held, large=reader.assembly_size > ASSEMBLY_INITIAL
        )
        if may_read == self._budget_paused:
            self._budget_paused = not may_read
            if not may_read:
                log.debug(
                    "frame_budget_pause",
                    conn=self.id,
                    peer=self.peer,
                    held=held,
                    frame_size=reader.assembly_size,
                    budget_used=budget.used,
                    budget=budget.limit,
                )

    def budget_resumed(self) -> None:
        """The frame budget lets this connection read again."""
        if self._budget_paused:
            self._budget_paused = False
            log.debug("frame_budget_resume", conn=self.id, peer=self.peer)
            self._update_backpressure()

    def _release_budget(self) -> None:
        """Give back this connection's share of the frame budget (close, error)."""
        budget = self._budget
        if budget is not None and self._budget_held:
            held, self._budget_held = self._budget_held, 0
            self._budget_paused = False
            budget.release(self)
            log.debug(
                "frame_budget_release",
                conn=self.id,
                peer=self.peer,
                held=held,
                budget_used=budget.used,
            )

    def eof_received(self) -> bool | None:
        return None  # close the transport; pending responses cannot be delivered

    def _bad_request(self, reason: str, **kw: object) -> None:
        self.ctx.metrics.bad_requests += 1
        log.warning("bad_request", conn=self.id, peer=self.peer, reason=reason, **kw)
        self.close(reason)

    def _handle_frame(self, frame: memoryview) -> None:
        started = time.perf_counter()
        try:
            header, request = decode_request(frame)
        except UnsupportedVersion as e:
            self._unsupported(e, len(frame), started)
            return
        except DecodeError as e:
            api_key = (
                int.from_bytes(frame[:2], "big", signed=True)
                if len(frame) >= 2
                else None
            )
            self._bad_request("decode_error", api_key=api_key, error=str(e))
            return
        api_key = header.request_api_key
        if not is_handled(api_key, header.request_api_version):
            self._unsupported(
                UnsupportedVersion(
                    api_key=api_key,
                    api_version=header.request_api_version,
                    correlation_id=header.correlation_id,
                    client_id=header.client_id,
                ),
                len(frame),
                started,
            )
            return
        security = self.security
        if security is not None and not security.may_send(api_key):
            # Kafka's SaslServerAuthenticator: only ApiVersions and the SASL APIs
            # before authentication; anything else closes the connection.
            log.warning(
                "unauthenticated_request",
                conn=self.id,
                peer=self.peer,
                listener=self.listener,
                api_key=api_key,
            )
            self.close("unauthenticated")
            return
        rctx = RequestContext(
            broker=self.ctx,
            header=header,
            listener=self.listener,
            peer=self.peer,
            received_at=started,
            security=security,
        )
        try:
            result = self._dispatch(rctx, request)
        except CloseConnection as e:
            log.warning(
                e.event,
                conn=self.id,
                peer=self.peer,
                principal=None if security is None else security.principal,
                api_key=api_key,
                reason=str(e),
            )
            self.close(e.event)
            return
        api = api_name(api_key)
        if result is NO_RESPONSE:
            self.ctx.metrics.observe_request(api, time.perf_counter() - started)
            return
        slot = _Slot(header, len(frame), api, started)
        self._slots.append(slot)
        self._inflight_bytes += slot.size
        if isinstance(result, Deferred):
            if result.serial:
                self._produce_waits.append((slot, result))
                if not self._produce_runner and self._tg is not None:
                    self._produce_runner = True
                    self._tg.start_soon(self._run_produce_waits)
            elif self._tg is None:
                self._early.append((slot, result))
            else:
                self._tg.start_soon(self._complete, slot, result)
        else:
            slot.buffers = encode_response(header, result)

    def _unsupported(self, e: UnsupportedVersion, size: int, started: float) -> None:
        self.ctx.metrics.error(api_name(e.api_key), ErrorCode.UNSUPPORTED_VERSION.name)
        if e.api_key != 18:
            self._bad_request(
                "unsupported_version", api_key=e.api_key, api_version=e.api_version
            )
            return
        # KIP-511: answer an unknown ApiVersions version in the v0 body format with
        # UNSUPPORTED_VERSION and our version ranges, so the client can downgrade.
        header = RequestHeader(
            request_api_key=18,
            request_api_version=0,
            correlation_id=e.correlation_id,
            client_id=e.client_id,
        )
        body = ApiVersionsResponse(
            error_code=ErrorCode.UNSUPPORTED_VERSION,
            api_keys=tuple(
                ApiVersion(api_key=k, min_version=lo, max_version=hi)
                for k, (lo, hi) in advertised_versions().items()
            ),
        )
        slot = _Slot(header, size, "api_versions", started)
        slot.buffers = encode_response(header, body)
        self._slots.append(slot)
        self._inflight_bytes += size

    async def _run_produce_waits(self) -> None:
        """Complete the connection's deferred produce responses, in request order."""
        waits = self._produce_waits
        try:
            while waits and not self._is_closed:
                slot, deferred = waits.popleft()
                await self._complete(slot, deferred)
        finally:
            self._produce_runner = False

    async def _complete(self, slot: _Slot, deferred: Deferred) -> None:
        try:
            response = await deferred.run()
            slot.buffers = encode_response(slot.header, response)
        except Exception:
            log.exception("handler_failed", conn=self.id, peer=self.peer, api=slot.api)
            self.close("handler_failed")
            return
        self._flush()
        self._update_backpressure()

    # -- writing -----------------------------------------------------------

    def _flush(self) -> None:
        """Write the ready prefix of the response queue in one call."""
        slots = self._slots
        if not slots or slots[0].buffers is None or self._transport is None:
            return
        out: list[bytes | bytearray | memoryview] = []
        now = time.perf_counter()
        metrics = self.ctx.metrics
        security = self.security
        auth_failed = False
        while slots and slots[0].buffers is not None:
            slot = slots.popleft()
            assert slot.buffers is not None
            out += slot.buffers
            self._inflight_bytes -= slot.size
            metrics.observe_request(slot.api, now - slot.started)
            if (
                security is not None
                and slot.header.request_api_key == _SASL_AUTHENTICATE
                and security.auth_failed
            ):
                auth_failed = True
                break
        if self._is_closed:
            return
        metrics.bytes_out += sum(len(b) for b in out)
        self._transport.writelines(out)
        self.last_active = time.monotonic()
        if auth_failed:
            # Kafka's SaslServerAuthenticator: the failed SaslAuthenticate is
            # answered (after connection.failed.authentication.delay.ms, which the
            # handler waited), then the connection is closed. close() sends what
            # is buffered first; later requests are dropped.
            self._is_closed = True
            slots.clear()
            log.info(
                "connection_closing",
                conn=self.id,
                peer=self.peer,
                reason="sasl_authentication_failed",
            )
            self._transport.close()

    def pause_writing(self) -> None:
        self._write_paused = True
        self._update_backpressure()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._update_backpressure()

    def _update_backpressure(self) -> None:
        transport = self._transport
        if transport is None or self._is_closed:
            return
        over = (
            self._draining
            or self._write_paused
            or self._budget_paused
            or self._inflight_bytes > self.ctx.config.max_inflight_bytes
        )
        if over and not self._read_paused:
            self._read_paused = True
            log.debug(
                "backpressure_pause",
                conn=self.id,
                inflight_bytes=self._inflight_bytes,
                write_paused=self._write_paused,
            )
            transport.pause_reading()
        elif not over and self._read_paused:
            self._read_paused = False
            transport.resume_reading()
