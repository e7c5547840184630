"""The broker process: root task group, start-up, listeners, background jobs, shutdown.

Task tree (anyio on asyncio + uvloop)::

    root
    ├── signal watcher (SIGTERM/SIGINT -> graceful shutdown)
    ├── admin HTTP API (serves 503 on /v1/status/ready while starting)
    └── serving
        ├── one listener per --kafka-addr entry
        │   └── one task per connection (hosts its task group of deferred responses)
        ├── group-commit driver (broker.durability)
        └── background jobs: idle-connection sweeper, retention, flush of write-caching
            topics (flush.ms)

Start-up first raises the soft descriptor limit to the hard one
(``broker.fdlimits``), then does everything that can fail for a reason a person must
fix, before the first log line and before recovery (:mod:`broker.startup`): TLS
material, the data-dir lock, binding the Kafka listeners (connections wait in the
backlog until accepted) and the admin API. Then it opens and recovers every partition
in a worker thread, logs the findings, starts accepting on the listeners and becomes
ready (``ready`` event; ``--ready-file``).
Shutdown: stop accepting, wake long polls, let in-flight requests finish within the
grace period (``ailurus.shutdown.grace.ms``), cancel the rest, fsync, close storage
cleanly (the clean-shutdown marker), exit 0.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import ssl
import time
from dataclasses import replace
from pathlib import Path

import anyio
import anyio.abc
import structlog

from broker.admin import serve_admin
from broker.config import DEFAULT_LISTENER_NAME, BrokerConfig, ListenerConfig
from broker.connection import KafkaConnection
from broker.context import BoundListener, BrokerContext
from broker.dispatch import load_handlers
from broker.fdlimits import raise_nofile_limit
from broker.frame_budget import FrameBudget
from broker.groups.wiring import run_group_services
from broker.listener import Acceptor, bind_socket
from broker.logging import configure_logging
from broker.security.service import SecurityService
from broker.security.tls import TlsConfigError, server_context
from broker.snapshot_scheduler import run_snapshot_scheduler
from broker.snapshot_watcher import run_snapshot_watcher
from broker.startup import (
    EXIT_CONFIG,
    KAFKA_ADDR_SETTING,
    StartupError,
    bind_error,
    check_readable,
    find_startup_error,
)

log = structlog.get_logger("broker.server")

RETENTION_CHECK_S = 300.0  # Kafka's log.retention.check.interval.ms default
FLUSH_CHECK_S = 0.25


def run(config: BrokerConfig) -> int:
    """Run the broker until a signal stops it; the process exit code.

    Raises:
        StartupError: the broker could not start (nothing was logged about it; the
            caller reports the message and exits with its ``exit_code``).
    """
    configure_logging(config.log_level, config.log_format)
    try:
        anyio.run(
            serve,
            config,
            backend="asyncio",
            backend_options={"use_uvloop": True},
        )
    except KeyboardInterrupt:
        return 0
    return 0


async def serve(config: BrokerConfig, *, stop: anyio.Event | None = None) -> None:
    """Run a broker in the current event loop until ``stop`` is set or a signal arrives."""
    started = time.perf_counter()
    nofile = raise_nofile_limit()
    # handler modules (and the message schemas they import) load on first use
    load_handlers(lazy=True)
    ctx = BrokerContext.create(config)
    # shared by every listener's connections: bytes in partly received frames
    frame_budget = FrameBudget(config.partial_frames_max_bytes)
    stop = stop or anyio.Event()
    listeners: list[_KafkaListener] = []
    try:
        # What a person must fix fails here, before recovery and the first log line.
        tls_contexts = _security(ctx)
        ctx.lock_data_dir()
        for lc in config.listeners:  # one by one: those bound are closed on failure
            bound = _KafkaListener.bind(
                ctx, lc, tls_contexts.get(lc.name), frame_budget
            )
            listeners.append(bound)
        async with anyio.create_task_group() as root:
            root.start_soon(_watch_signals, stop)
            if config.admin is not None:
                await root.start(serve_admin, ctx)
            nofile.log()  # past every check a person must fix
            await ctx.open_storage()
            async with anyio.create_task_group() as serving:
                # Producer-id/idempotence state and groups exist before the first
                # client connects: a produce served before them would skip the
                # duplicate check (a retried batch appended twice after a restart).
                serving.start_soon(ctx.group_commit.run)
                await serving.start(run_group_services, ctx)
                servers: list[Acceptor] = [
                    await serving.start(listener.run) for listener in listeners
                ]
                await serving.start(run_snapshot_watcher, ctx)
                await serving.start(run_snapshot_scheduler, ctx)
                serving.start_soon(_idle_sweeper, ctx)
                serving.start_soon(_retention_job, ctx)
                serving.start_soon(_flush_job, ctx)
                ctx.ready = True
                _write_ready_file(ctx)
                log.info(
                    "ready",
                    seconds=round(time.perf_counter() - started, 3),
                    node_id=config.node_id,
                    data_dir=str(config.data_dir),
                )
                await stop.wait()
                await _drain(ctx, servers)
                serving.cancel_scope.cancel()
            root.cancel_scope.cancel()
    except BaseExceptionGroup as eg:
        startup = find_startup_error(eg)
        if startup is not None:
            raise startup from None
        raise
    finally:
        with anyio.CancelScope(shield=True):
            for listener in listeners:
                listener.close()
            await ctx.close_storage()
            if config.ready_file is not None:
                config.ready_file.unlink(missing_ok=True)
    log.info("stopped")


async def _watch_signals(stop: anyio.Event) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("signal_received", signal=signal.Signals(signum).name)
            stop.set()
            return


def _security(ctx: BrokerContext) -> dict[str, ssl.SSLContext]:
    """Hang the security service on the context; TLS contexts per listener name."""
    config = ctx.config
    names = tuple(lc.name for lc in config.listeners)
    protocols = {n: config.security.protocol_of(n) for n in names}
    client_auth = config.tls is not None and config.tls.client_auth == "required"
    ctx.security = SecurityService(
        config.security,
        data_dir=config.data_dir,
        listeners=names,
        client_cert_listeners=frozenset(
            n for n, p in protocols.items() if p == "SSL" and client_auth
        ),
    )
    contexts: dict[str, ssl.SSLContext] = {}
    if config.tls is None:
        return contexts
    check_readable(config.tls.cert_file, "--tls-cert / AILURUS_TLS_CERT")
    check_readable(config.tls.key_file, "--tls-key / AILURUS_TLS_KEY")
    if config.tls.ca_file is not None:
        check_readable(config.tls.ca_file, "--tls-ca / AILURUS_TLS_CA")
    try:
        with_client_auth = server_context(config.tls)
        # Kafka applies ssl.client.auth to SSL listeners; SASL_SSL authenticates
        # with SASL, so it asks for no client certificate.
        without = server_context(replace(config.tls, client_auth="none"))
    except TlsConfigError as e:
        raise StartupError(
            f"{e} (change --tls-cert / --tls-key / --tls-ca, AILURUS_TLS_*)",
            exit_code=EXIT_CONFIG,
        ) from e
    for name, proto in protocols.items():
        if proto == "SSL":
            contexts[name] = with_client_auth
        elif proto == "SASL_SSL":
            contexts[name] = without
    return contexts


class _KafkaListener:
    """A Kafka listener: bound early (a taken port fails before recovery runs),
    accepting connections only once the broker is ready for them, through an
    accept loop that survives accept() errors (:mod:`broker.listener`)."""

    def __init__(
        self,
        ctx: BrokerContext,
        lc: ListenerConfig,
        tls: ssl.SSLContext | None,
        budget: FrameBudget,
        sock: socket.socket,
    ) -> None:
        self.ctx = ctx
        self.lc = lc
        self.tls = tls
        self.budget = budget
        self.sock = sock
        self.acceptor = Acceptor(lc.name, sock)

    @classmethod
    def bind(
        cls,
        ctx: BrokerContext,
        lc: ListenerConfig,
        tls: ssl.SSLContext | None,
        budget: FrameBudget,
    ) -> _KafkaListener:
        """Bind and listen on ``lc``'s address (nothing is accepted before run())."""
        try:
            sock = bind_socket(lc.bind.host, lc.bind.port)
        except OSError as e:
            raise _bind_error(ctx, lc, e) from e
        return cls(ctx, lc, tls, budget, sock)

    def close(self) -> None:
        """Stop accepting and release the port (also when run() never started)."""
        self.acceptor.close()
        self.sock.close()

    async def run(self, *, task_status: anyio.abc.TaskStatus[Acceptor]) -> None:
        """Accept connections until closed, one task per connection."""
        ctx, lc, sock, tls, budget = self.ctx, self.lc, self.sock, self.tls, self.budget
        loop = asyncio.get_running_loop()
        async with anyio.create_task_group() as conns:

            async def connected(conn: socket.socket) -> None:
                # TLS is layered by the connection itself (not ssl= here), so a
                # failed handshake is logged with its peer
                await loop.connect_accepted_socket(
                    lambda: KafkaConnection(
                        ctx, lc.name, conns, tls=tls, budget=budget
                    ),
                    conn,
                )

            sockname = sock.getsockname()
            host, port = str(sockname[0]), int(sockname[1])
            adv = lc.advertised
            adv_host = adv.host if adv is not None else host
            if adv_host in ("0.0.0.0", "::", ""):  # noqa: S104
                adv_host = "127.0.0.1"
            adv_port = adv.port if adv is not None and adv.port != 0 else port
            ctx.listeners[lc.name] = BoundListener(
                name=lc.name,
                host=host,
                port=port,
                advertised_host=adv_host,
                advertised_port=adv_port,
            )
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
                for conn in list(ctx.connections.values()):
                    if conn.listener == lc.name:
                        conn.close("shutdown")


def _bind_error(ctx: BrokerContext, lc: ListenerConfig, exc: OSError) -> StartupError:
    named = len(ctx.config.listeners) > 1 or lc.name != DEFAULT_LISTENER_NAME
    return bind_error(
        str(lc.bind),
        exc,
        setting=KAFKA_ADDR_SETTING,
        what=f"Kafka listener {lc.name!r}" if named else "",
    )


async def _drain(ctx: BrokerContext, servers: list[Acceptor]) -> None:
    """Stop accepting, wake long polls, wait (bounded) for in-flight requests."""
    ctx.shutting_down = True
    log.info("shutting_down", connections=len(ctx.connections))
    for server in servers:
        server.close()
    for conn in list(ctx.connections.values()):
        conn.stop_reading()
    ctx.waiters.notify_all()
    deadline = time.monotonic() + ctx.config.shutdown_grace_ms / 1000

    # Bounded shutdown wait; polling here costs nothing while serving.
    def busy() -> bool:
        return any(c.busy for c in ctx.connections.values())

    while time.monotonic() < deadline and busy():  # noqa: ASYNC110
        await anyio.sleep(0.01)
    still_busy = sum(1 for c in ctx.connections.values() if c.busy)
    if still_busy:
        log.warning("shutdown_cancelled_requests", connections=still_busy)


async def _idle_sweeper(ctx: BrokerContext) -> None:
    idle_s = ctx.config.connections_max_idle_ms / 1000
    if idle_s <= 0:
        return
    period = max(0.05, min(idle_s / 4, 30.0))
    while True:
        await anyio.sleep(period)
        now = time.monotonic()
        for conn in list(ctx.connections.values()):
            if not conn.busy and now - conn.last_active > idle_s:
                log.info("connection_idle_timeout", conn=conn.id, peer=conn.peer)
                conn.close("idle")


async def _retention_job(ctx: BrokerContext) -> None:
    while True:
        await anyio.sleep(RETENTION_CHECK_S)
        await ctx.apply_retention()


async def _flush_job(ctx: BrokerContext) -> None:
    """Fsync write-caching topics' partitions every flush.ms (others sync eagerly)."""
    while True:
        await anyio.sleep(FLUSH_CHECK_S)
        ctx.schedule_periodic_flush()


def _write_ready_file(ctx: BrokerContext) -> None:
    path = ctx.config.ready_file
    if path is None:
        return
    data = {
        "pid": os.getpid(),
        "node_id": ctx.config.node_id,
        "data_dir": str(ctx.config.data_dir),
        "kafka": {name: b.as_json() for name, b in ctx.listeners.items()},
        "admin": None
        if ctx.admin_address is None
        else {"host": ctx.admin_address[0], "port": ctx.admin_address[1]},
    }
    tmp = Path(f"{path}.tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)
