"""The Kafka listeners: bound early, accepting once the broker is ready, drained at stop.

:class:`KafkaListeners` binds every ``--kafka-addr`` listener before recovery (a taken
port fails start-up before any partition is opened), then runs one accept loop per
listener (:mod:`broker.net.acceptor`, which survives accept() errors), one
:class:`~broker.net.connection.KafkaConnection` per client. The frame budget shared by
every connection (:class:`~broker.net.frame_budget.FrameBudget`) is built here.
At shutdown :meth:`KafkaListeners.drain` stops accepting, wakes long polls and waits
(bounded by the grace period) for in-flight requests; :meth:`KafkaListeners.idle_sweeper`
closes connections idle longer than ``connections.max.idle.ms``.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time

import anyio
import anyio.abc
import structlog

from broker.config import DEFAULT_LISTENER_NAME, BrokerConfig, ListenerConfig
from broker.context import BoundListener, BrokerContext, Runtime
from broker.net.acceptor import Acceptor, bind_socket
from broker.net.connection import ConnectionRegistry, Dispatch, KafkaConnection
from broker.net.dispatch import Dispatcher
from broker.net.frame_budget import FrameBudget
from broker.startup import KAFKA_ADDR_SETTING, StartupError, bind_error

# The listener events have always been the server's.
log = structlog.get_logger("broker.server")


class KafkaListeners:
    """Every Kafka listener of the broker, bound and (once :meth:`run`) accepting."""

    def __init__(
        self, config: BrokerConfig, runtime: Runtime, listeners: list[_KafkaListener]
    ) -> None:
        self.config = config
        self.runtime = runtime
        self._listeners = listeners
        self._acceptors: list[Acceptor] = []
        self._ctx: BrokerContext | None = None
        # every open connection of every listener (drain, idle sweep)
        self.connections: ConnectionRegistry = {}

    @classmethod
    def bind(
        cls,
        config: BrokerConfig,
        tls_contexts: dict[str, ssl.SSLContext],
        runtime: Runtime,
    ) -> KafkaListeners:
        """Bind every configured listener (nothing is accepted before :meth:`run`).

        Raises:
            StartupError: an address could not be bound (those bound are closed).
        """
        # shared by every listener's connections: bytes in partly received frames
        budget = FrameBudget(config.partial_frames_max_bytes)
        bound: list[_KafkaListener] = []
        try:
            # one by one: those bound are closed on failure
            for lc in config.listeners:
                tls = tls_contexts.get(lc.name)
                bound.append(_KafkaListener.bind(config, lc, tls, budget))
        except BaseException:
            for listener in bound:
                listener.close()
            raise
        return cls(config, runtime, bound)

    async def run(
        self, ctx: BrokerContext, dispatcher: Dispatcher, tg: anyio.abc.TaskGroup
    ) -> None:
        """Start accepting on every listener, each in a task of ``tg``; every
        connection hands its requests to ``dispatcher``."""
        self._ctx = ctx
        for listener in self._listeners:
            self._acceptors.append(
                await tg.start(listener.run, ctx, dispatcher.route, self.connections)
            )

    def bound(self) -> list[BoundListener]:
        """Every listener's bound and advertised address (known once bound, before
        :meth:`run`: cluster mode registers them)."""
        return [listener.bound() for listener in self._listeners]

    def close(self) -> None:
        """Stop accepting and release the ports (also when :meth:`run` never ran)."""
        for listener in self._listeners:
            listener.close()

    async def drain(self) -> None:
        """Stop accepting, wake long polls, wait (bounded) for in-flight requests."""
        assert self._ctx is not None, "drain() after run()"
        await _drain(self._ctx, self._acceptors, self.connections)

    async def idle_sweeper(self) -> None:
        """Close connections idle longer than ``connections.max.idle.ms``."""
        await _idle_sweeper(self.config, self.connections)


class _KafkaListener:
    """A Kafka listener: bound early (a taken port fails before recovery runs),
    accepting connections only once the broker is ready for them, through an
    accept loop that survives accept() errors (:mod:`broker.net.acceptor`)."""

    def __init__(
        self,
        lc: ListenerConfig,
        tls: ssl.SSLContext | None,
        budget: FrameBudget,
        sock: socket.socket,
    ) -> None:
        self.lc = lc
        self.tls = tls
        self.budget = budget
        self.sock = sock
        self.acceptor = Acceptor(lc.name, sock)

    @classmethod
    def bind(
        cls,
        config: BrokerConfig,
        lc: ListenerConfig,
        tls: ssl.SSLContext | None,
        budget: FrameBudget,
    ) -> _KafkaListener:
        """Bind and listen on ``lc``'s address (nothing is accepted before run())."""
        try:
            sock = bind_socket(lc.bind.host, lc.bind.port)
        except OSError as e:
            raise _bind_error(config, lc, e) from e
        return cls(lc, tls, budget, sock)

    def bound(self) -> BoundListener:
        """Where this listener is bound and what it tells clients."""
        sockname = self.sock.getsockname()
        host, port = str(sockname[0]), int(sockname[1])
        adv = self.lc.advertised
        adv_host = adv.host if adv is not None else host
        if adv_host in ("0.0.0.0", "::", ""):  # noqa: S104
            adv_host = "127.0.0.1"
        adv_port = adv.port if adv is not None and adv.port != 0 else port
        return BoundListener(
            name=self.lc.name,
            host=host,
            port=port,
            advertised_host=adv_host,
            advertised_port=adv_port,
        )

    def close(self) -> None:
        """Stop accepting and release the port (also when run() never started)."""
        self.acceptor.close()
        self.sock.close()

    async def run(
        self,
        ctx: BrokerContext,
        dispatch: Dispatch,
        connections: ConnectionRegistry,
        *,
        task_status: anyio.abc.TaskStatus[Acceptor],
    ) -> None:
        """Accept connections until closed, one task per connection."""
        lc, tls, budget = self.lc, self.tls, self.budget
        loop = asyncio.get_running_loop()
        async with anyio.create_task_group() as conns:

            async def connected(conn: socket.socket) -> None:
                # TLS is layered by the connection itself (not ssl= here), so a
                # failed handshake is logged with its peer
                await loop.connect_accepted_socket(
                    lambda: KafkaConnection(
                        ctx,
                        dispatch,
                        lc.name,
                        conns,
                        connections,
                        tls=tls,
                        budget=budget,
                    ),
                    conn,
                )

            bound = self.bound()
            ctx.runtime.listeners[lc.name] = bound
            host, port = bound.host, bound.port
            adv_host, adv_port = bound.advertised_host, bound.advertised_port
            log.info(
                "listening",
                listener=lc.name,
                host=host,
                port=port,
                advertised=f"{adv_host}:{adv_port}",
                security_protocol=ctx.config.security.protocol_of(lc.name),
            )
            task_status.started(self.acceptor)
            try:
                await self.acceptor.run(connected)  # until _drain closes it
                await anyio.sleep_forever()
            finally:
                self.close()
                for conn in list(connections.values()):
                    if conn.listener == lc.name:
                        conn.close("shutdown")


def _bind_error(config: BrokerConfig, lc: ListenerConfig, exc: OSError) -> StartupError:
    named = len(config.listeners) > 1 or lc.name != DEFAULT_LISTENER_NAME
    return bind_error(
        str(lc.bind),
        exc,
        setting=KAFKA_ADDR_SETTING,
        what=f"Kafka listener {lc.name!r}" if named else "",
    )


async def _drain(
    ctx: BrokerContext, servers: list[Acceptor], connections: ConnectionRegistry
) -> None:
    """Stop accepting, wake long polls, wait (bounded) for in-flight requests."""
    ctx.runtime.shutting_down = True
    log.info("shutting_down", connections=len(connections))
    for server in servers:
        server.close()
    for conn in list(connections.values()):
        conn.stop_reading()
    ctx.durability.waiters.notify_all()
    deadline = time.monotonic() + ctx.config.shutdown_grace_ms / 1000

    # Bounded shutdown wait; polling here costs nothing while serving.
    def busy() -> bool:
        return any(c.busy for c in connections.values())

    while time.monotonic() < deadline and busy():  # noqa: ASYNC110
        await anyio.sleep(0.01)
    still_busy = sum(1 for c in connections.values() if c.busy)
    if still_busy:
        log.warning("shutdown_cancelled_requests", connections=still_busy)


async def _idle_sweeper(config: BrokerConfig, connections: ConnectionRegistry) -> None:
    idle_s = config.connections_max_idle_ms / 1000
    if idle_s <= 0:
        return
    period = max(0.05, min(idle_s / 4, 30.0))
    while True:
        await anyio.sleep(period)
        now = time.monotonic()
        for conn in list(connections.values()):
            if not conn.busy and now - conn.last_active > idle_s:
                log.info("connection_idle_timeout", conn=conn.id, peer=conn.peer)
                conn.close("idle")
