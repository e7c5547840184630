"""The broker process: root task group, start-up, listeners, background jobs, shutdown.

Task tree (anyio on asyncio + uvloop)::

    root
    ├── signal watcher (SIGTERM/SIGINT -> graceful shutdown)
    ├── admin HTTP API (serves 503 on /v1/status/ready while starting)
    └── serving
        ├── one listener per --kafka-addr entry
        │   └── one task per connection (hosts its task group of deferred responses)
        ├── group-commit driver (broker.durability.group_commit)
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

import json
import os
import signal
import ssl
import time
from dataclasses import replace
from pathlib import Path

import anyio
import anyio.abc
import structlog

from broker.admin.server import serve_admin
from broker.config import BrokerConfig
from broker.context import BrokerContext
from broker.fdlimits import raise_nofile_limit
from broker.groups.wiring import run_group_services
from broker.logging import configure_logging
from broker.net.dispatch import load_handlers
from broker.net.listeners import KafkaListeners
from broker.security.service import SecurityService
from broker.security.tls import TlsConfigError, server_context
from broker.snapshots.scheduler import run_snapshot_scheduler
from broker.snapshots.service import run_snapshot_watcher
from broker.startup import (
    EXIT_CONFIG,
    StartupError,
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
    raise_nofile_limit()
    # handler modules (and the message schemas they import) load on first use
    load_handlers(lazy=True)
    ctx = BrokerContext.create(config)
    stop = stop or anyio.Event()
    kafka: KafkaListeners | None = None
    try:
        # What a person must fix fails here, before recovery and the first log line.
        tls_contexts = _security(ctx)
        ctx.lock_data_dir()
        kafka = KafkaListeners.bind(ctx, tls_contexts)
        async with anyio.create_task_group() as root:
            root.start_soon(_watch_signals, stop)
            if config.admin is not None:
                await root.start(serve_admin, ctx)
            await ctx.open_storage()
            async with anyio.create_task_group() as serving:
                # Producer-id/idempotence state and groups exist before the first
                # client connects: a produce served before them would skip the
                # duplicate check (a retried batch appended twice after a restart).
                serving.start_soon(ctx.group_commit.run)
                await serving.start(run_group_services, ctx)
                await kafka.run(serving)
                await serving.start(run_snapshot_watcher, ctx)
                await serving.start(run_snapshot_scheduler, ctx)
                serving.start_soon(kafka.idle_sweeper)
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
                await kafka.drain()
                serving.cancel_scope.cancel()
            root.cancel_scope.cancel()
    except BaseExceptionGroup as eg:
        startup = find_startup_error(eg)
        if startup is not None:
            raise startup from None
        raise
    finally:
        with anyio.CancelScope(shield=True):
            if kafka is not None:
                kafka.close()
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


async def _retention_job(ctx: BrokerContext) -> None:
    while True:
        await anyio.sleep(RETENTION_CHECK_S)
        await ctx.topics.apply_retention()


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
