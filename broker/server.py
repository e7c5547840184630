"""The broker process: root task group, start-up, listeners, background jobs, shutdown.

Task tree (anyio on asyncio + uvloop)::

    root
    ├── signal watcher (SIGTERM/SIGINT -> graceful shutdown)
    ├── admin HTTP API (broker.admin; its route table is built before it starts and
    │   serves the runtime while starting: 503 on /v1/status/ready)
    └── serving
        ├── group-commit driver (broker.durability.acks.Durability.run)
        ├── cluster mode only: the cluster service (broker.cluster.service:
        │   session keep-alive, the prefix watch into the cache, the controller
        │   campaign and, while elected, the controller)
        ├── consumer-group service (broker.groups.service.GroupService.run; on
        │   cancellation closes group and producer-id state)
        ├── transaction coordinator (broker.transactions.coordinator; loads the
        │   transaction state log, completes transactions, aborts timed-out ones)
        ├── cluster mode: the replica manager (broker.replication.manager; local
        │   logs made to match the cluster's cache before the listeners accept)
        ├── one listener per --kafka-addr entry (broker.net.listeners.KafkaListeners)
        │   └── one task per connection (hosts its task group of deferred responses)
        ├── snapshot watcher (broker.snapshots.service) and, when a topic is
        │   scheduled, the snapshot scheduler (broker.snapshots.scheduler)
        └── background jobs: idle-connection sweeper, retention, flush of
            write-caching topics (flush.ms)

Build order (:func:`serve`; each step uses only what the steps above it built):

1. the soft descriptor limit raised to the hard one (``broker.fdlimits``);
   ``Metrics`` and ``Runtime``;
2. what a person must fix fails here, before recovery and the first log line
   (:mod:`broker.startup`): the security service and TLS contexts, the data-dir
   lock, the bound Kafka listeners (connections wait in the backlog);
3. the root task group: the signal watcher, then the admin API (bound and serving
   its route table, :func:`broker.admin.routes.build_routes`);
4. storage and every service on it (:func:`_open_services`): the disk guard and
   ``TopicService`` (opens and recovers every partition in a worker thread),
   ``Durability``, the ``AppendGate``, ``ProducerService``, ``GroupService``,
   ``SnapshotService``, the ``SnapshotScheduler`` if any; in cluster mode
   (``--cluster``) the broker joins the cluster once its logs are open (registered
   with its bound listeners' advertised addresses; unreachable etcd or a taken node
   id is a :class:`~broker.startup.StartupError`, storage closed again) and the
   context's ``cluster`` view is the watched cache; then the frozen
   :class:`~broker.context.BrokerContext`, handed to the admin API;
5. the serving task group, in this order: group commit, groups (producer ids and
   groups exist before the first client connects: a produce served before them would
   skip the duplicate check), the transaction coordinator, the listeners start accepting, the snapshot watcher and
   scheduler, the background jobs; then ready (``ready`` event; ``--ready-file``).

:func:`open_context` runs steps 1 and 4 only (tests and tools).

Shutdown: in cluster mode first ask the controller to move this broker's
leaderships away while it still serves (bounded, skipped when it leads nothing;
Kafka's order: an acks=all produce waiting for followers' fetches ends instead of
holding the drain for its whole grace period); then stop accepting, wake long
polls, let in-flight requests finish within the grace period
(``ailurus.shutdown.grace.ms``); cancel
the rest (the group service closes group and producer-id state as it is
cancelled), then, shielded, close the listeners, leave the cluster (registration
deleted, lease revoked: the controller reacts at once, not after the session
timeout), fsync and close storage cleanly (the clean-shutdown marker), exit 0.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import ssl
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import anyio
import anyio.abc
import structlog

from broker.admin.routes import build_routes
from broker.admin.server import AdminView, RouteTable, serve_admin
from broker.authz.middleware import Authorize
from broker.cluster.cache import MetadataCache
from broker.cluster.configs import EtcdConfigStore, follow_broker_configs
from broker.cluster.model import Endpoint
from broker.cluster.requests import ClusterRequests
from broker.cluster.service import ClusterService
from broker.cluster.view import (
    OFFSETS_TOPIC,
    TRANSACTION_TOPIC,
    ClusterView,
    LocalView,
)
from broker.config import BrokerConfig
from broker.configs.dynamic import (
    ConfigStoreError,
    DynamicConfigs,
    FileConfigStore,
    read_config_file,
)
from broker.context import BrokerContext, Runtime
from broker.disk.fileops import storage_fileops
from broker.durability.acks import Durability
from broker.fdlimits import raise_nofile_limit
from broker.fetch.sessions import FetchSessionCache
from broker.groups.service import GroupService
from broker.groups.settings import GroupConfig
from broker.logging import configure_logging
from broker.metrics import Metrics
from broker.net.dispatch import Dispatcher
from broker.net.listeners import KafkaListeners
from broker.producers.service import ProducerService
from broker.replication.manager import ReplicaManager
from broker.security.acl_store import AclStoreError
from broker.security.service import SecurityService
from broker.security.tls import TlsConfigError, server_context
from broker.snapshots.gate import AppendGate
from broker.snapshots.scheduler import SnapshotScheduler
from broker.snapshots.service import SnapshotService
from broker.startup import (
    EXIT_CONFIG,
    EXIT_DATA_DIR,
    StartupError,
    check_readable,
    find_startup_error,
    lock_data_dir,
)
from broker.topics.service import TopicService
from broker.topics.storage import close_log_manager, open_log_manager
from broker.transactions.config import CRASH_AFTER_PREPARE_ENV, TxnConfig
from broker.transactions.coordinator import TransactionCoordinator
from broker.transactions.markers import LocalMarkers, MarkerSender
from broker.transactions.model import TopicPartition
from broker.transactions.txn_log import TxnLog
from storage.fileops import FileOps
from storage.lock import DataDirLock
from storage.log_manager import LogManager
from storage.partition_log import PartitionLog

log = structlog.get_logger("broker.server")

CONTROLLED_SHUTDOWN_S = 5.0  # how long a stopping broker waits on the controller


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
    """Run a broker in the current event loop until ``stop`` is set or a signal arrives.

    Builds and runs the broker in the order the module docstring gives.
    """
    started = time.perf_counter()
    nofile = raise_nofile_limit()
    metrics = Metrics()
    runtime = Runtime()
    stop = stop or anyio.Event()
    kafka: KafkaListeners | None = None
    lock: DataDirLock | None = None
    ctx: BrokerContext | None = None
    try:
        # What a person must fix fails here, before recovery and the first log line.
        security = _security_service(config)
        tls_contexts = _tls_contexts(config)
        lock = lock_data_dir(config.data_dir)
        broker_configs = _read_broker_configs(config)
        kafka = KafkaListeners.bind(config, tls_contexts, runtime)
        async with anyio.create_task_group() as root:
            root.start_soon(_watch_signals, stop)
            admin = AdminView(config=config, runtime=runtime, metrics=metrics)
            if config.admin is not None:
                routes = RouteTable()
                build_routes(routes)
                await root.start(serve_admin, admin, routes)
            nofile.log()  # past every check a person must fix
            taken, lock = lock, None  # the storage's from now on
            ctx = await _open_services(
                config,
                metrics,
                runtime,
                security,
                taken,
                kafka=kafka,
                broker_configs=broker_configs,
            )
            admin.attach(ctx)
            async with anyio.create_task_group() as serving:
                serving.start_soon(ctx.durability.run)
                # Producer-id/idempotence state and groups exist before the first
                # client connects: a produce served before them would skip the
                # duplicate check (a retried batch appended twice after a restart).
                serving.start_soon(_run_groups, ctx)
                # transaction state loads in the background (its ids answer
                # COORDINATOR_LOAD_IN_PROGRESS meanwhile)
                await serving.start(ctx.transactions.run)
                if ctx.coordination is not None:
                    # the cache is live before the first client asks for metadata
                    await serving.start(ctx.coordination.run)
                if ctx.replicas is not None:
                    # the local logs match the cluster before the first client
                    await serving.start(ctx.replicas.run)
                if ctx.topics.cache is not None:
                    serving.start_soon(
                        follow_broker_configs, ctx.topics.cache, ctx.configs
                    )
                await kafka.run(ctx, _kafka_dispatch(ctx), serving)
                await serving.start(ctx.snapshots.run)
                if ctx.scheduler is not None:
                    await serving.start(ctx.scheduler.run)
                serving.start_soon(kafka.idle_sweeper)
                serving.start_soon(_retention_job, ctx)
                serving.start_soon(ctx.topics.run_cleaner)
                serving.start_soon(ctx.durability.flush_job, ctx.topics.logs)
                runtime.ready = True
                _write_ready_file(config, runtime)
                log.info(
                    "ready",
                    seconds=round(time.perf_counter() - started, 3),
                    node_id=config.node_id,
                    data_dir=str(config.data_dir),
                )
                await stop.wait()
                if ctx.coordination is not None:
                    # Kafka's order: leadership moves while this broker still
                    # serves, so acks=all waits on its partitions (which need the
                    # followers' fetches) end, NOT_LEADER_OR_FOLLOWER, and the
                    # producers go to the new leaders at once.
                    await _controlled_shutdown(ctx.coordination)
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
            if ctx is not None and ctx.coordination is not None:
                await ctx.coordination.leave()
            if ctx is not None:
                await ctx.topics.close()
            elif lock is not None:  # start-up stopped before storage
                lock.release()
            if config.ready_file is not None:
                config.ready_file.unlink(missing_ok=True)
    log.info("stopped")


async def _open_services(
    config: BrokerConfig,
    metrics: Metrics,
    runtime: Runtime,
    security: SecurityService,
    lock: DataDirLock,
    *,
    kafka: KafkaListeners | None = None,
    cluster: ClusterRequests | None = None,
    broker_configs: dict[str, dict[str, str]] | None = None,
) -> BrokerContext:
    """Open storage and every service on it, in dependency order; the context.

    Takes over ``lock`` (released if storage cannot be opened). In cluster mode
    (``config.cluster``) the broker joins the cluster once its logs are open,
    registering the addresses of ``kafka``'s bound listeners. ``cluster``: the
    cluster's requests and cache given by a test instead (no etcd).
    ``broker_configs``: the single node's dynamic broker configs, read early
    (:func:`_read_broker_configs`; None: read them now).

    Raises:
        StartupError: the cluster's etcd is unreachable or the node id is taken
            (storage is closed again).
    """
    fileops, disk = storage_fileops(str(config.data_dir), config.min_free_bytes)
    logs = await open_log_manager(config, fileops, lock)
    coordination: ClusterService | None = None
    if config.cluster is not None and cluster is None:
        try:
            coordination = await _join_cluster(config, runtime, metrics, kafka)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await close_log_manager(logs)
            raise
        cluster = coordination
        # imported here: a single node keeps its ACLs and credentials in the
        # data dir
        from broker.cluster.acls import ClusterAcls
        from broker.cluster.scram import ClusterCredentials

        timeout_s = config.cluster.request_timeout_ms / 1000
        security.use_acls(
            ClusterAcls(
                coordination.store,
                coordination.keys,
                coordination.cache,
                timeout_s=timeout_s,
            )
        )
        security.use_credentials(
            ClusterCredentials(
                coordination.store,
                coordination.keys,
                coordination.cache,
                local=security.store,
                timeout_s=timeout_s,
            )
        )
    topics = TopicService(config, logs, metrics, disk, cluster)
    try:
        if broker_configs is None and cluster is None:
            broker_configs = _read_broker_configs(config)
        dynamic = await _dynamic_configs(
            config, logs, fileops, cluster, broker_configs or {}
        )
    except BaseException:
        with anyio.CancelScope(shield=True):
            await close_log_manager(logs)
        raise
    durability = Durability(metrics)
    append_gate = AppendGate()
    producers = await ProducerService.open(
        config.data_dir,
        topics.logs,
        node_id=None if config.cluster is None else config.node_id,
    )
    replicated = None
    if cluster is not None:
        # imported here: committed offsets in __consumer_offsets are cluster
        # mode's (a single node starts without their record codec)
        from broker.groups.replicated import ReplicatedOffsets

        replicated = ReplicatedOffsets(topics, durability, cluster.cache)
    groups = await GroupService.open(
        config.data_dir,
        GroupConfig.from_config(config),
        durability.commit,
        topics,
        next_producer_id=producers.allocator.next_id,
        replicated=replicated,
    )
    snapshots = SnapshotService(
        config, topics, durability, append_gate, producers, groups, disk
    )
    schedule = config.snapshot_schedule
    scheduler = (
        SnapshotScheduler(schedule, snapshots, topics) if schedule.enabled else None
    )
    view: ClusterView = _local_view(config, runtime)
    if cluster is not None:
        view = cluster.cache
    transactions = _transaction_coordinator(
        config,
        view,
        topics,
        durability,
        append_gate,
        producers,
        groups,
        None if cluster is None else cluster.cache,
    )
    replicas: ReplicaManager | None = None
    if cluster is not None:

        def on_leadership(topic: str, partition: int, leads: bool) -> None:
            # an offsets partition's groups, a state log partition's transactional
            # ids are loaded by its new leader
            groups.on_leadership(topic, partition, leads)
            if topic == TRANSACTION_TOPIC:
                transactions.on_leadership(partition, leads)

        def forget(topic: str, logs: Sequence[PartitionLog]) -> None:
            # committed offsets and producer state of a deleted topic go with it
            groups.on_topic_deleted(topic)
            for plog in logs:
                producers.forget(plog)

        settings = config.cluster
        replicas = ReplicaManager(
            cluster,
            topics,
            durability,
            metrics,
            forget,
            # followers keep their idempotent producers' state as they append
            producers=producers,
            on_leadership=on_leadership,
            lag_time_max_ms=30_000
            if settings is None
            else settings.replica_lag_time_max_ms,
        )
    return BrokerContext(
        config=config,
        metrics=metrics,
        runtime=runtime,
        cluster=view,
        coordination=coordination,
        disk=disk,
        topics=topics,
        configs=dynamic,
        durability=durability,
        append_gate=append_gate,
        producers=producers,
        groups=groups,
        transactions=transactions,
        security=security,
        snapshots=snapshots,
        scheduler=scheduler,
        replicas=replicas,
        fetch_sessions=FetchSessionCache(
            config.fetch_session_cache_slots, config.fetch_session_eviction_ms
        ),
    )


def _transaction_coordinator(
    config: BrokerConfig,
    view: ClusterView,
    topics: TopicService,
    durability: Durability,
    append_gate: AppendGate,
    producers: ProducerService,
    groups: GroupService,
    cache: MetadataCache | None,
) -> TransactionCoordinator:
    """The transaction coordinator: its state log, its marker writer and, on a
    single node, KIP-890 verification of transactional batches."""
    partitions = config.transaction_log_partitions
    if partitions is None:
        partitions = 1 if config.cluster is None else 16
    flag = os.environ.get(CRASH_AFTER_PREPARE_ENV)  # a test hook, see its module
    settings = TxnConfig(
        max_timeout_ms=config.transaction_max_timeout_ms,
        log_partitions=partitions,
        abort_interval_ms=config.transaction_abort_interval_ms,
        id_expiration_ms=config.transactional_id_expiration_ms,
        remove_expired_interval_ms=config.transaction_remove_expired_interval_ms,
        crash_after_prepare=Path(flag) if flag else None,
    )
    local = LocalMarkers(topics, producers, durability, append_gate, groups)
    markers: MarkerSender = local
    offsets_partition: Callable[[str], TopicPartition | None] | None = None
    if cache is not None:
        # imported here: sending markers to other brokers is cluster mode's (a
        # single node starts without WriteTxnMarkers' message schemas)
        from broker.transactions.cluster_markers import ClusterMarkers

        markers = ClusterMarkers(cache, local, config.listeners[0].name)
        offsets_partition = _offsets_partition_finder(groups)

    coordinator = TransactionCoordinator(
        coordinates=lambda txn_id: view.txn_coordinator(txn_id) == view.node_id,
        txn_log=TxnLog(topics, durability, min_isr=cache is not None),
        markers=markers,
        producers=producers,
        groups=groups,
        config=settings,
        clustered=cache is not None,
        offsets_partition=offsets_partition,
    )
    if config.cluster is None:
        # the coordinator is local: a transactional batch must belong to its
        # producer's ongoing transaction (KIP-890)
        producers.verify_txn = coordinator.verify
    return coordinator


def _offsets_partition_finder(
    groups: GroupService,
) -> Callable[[str], TopicPartition | None]:
    """Cluster mode: a group's ``__consumer_offsets`` partition, which Kafka's
    AddOffsetsToTxn adds to the transaction (None: no offsets topic yet)."""
    replicated = groups.replicated

    def find(group_id: str) -> TopicPartition | None:
        p = None if replicated is None else replicated.partition_of(group_id)
        return None if p is None else (OFFSETS_TOPIC, p)

    return find


def _read_broker_configs(config: BrokerConfig) -> dict[str, dict[str, str]]:
    """A single node's ``broker-configs.json`` ({} in cluster mode: etcd has them).

    Raises:
        StartupError: the file is unreadable (a person must fix or remove it).
    """
    if config.cluster is not None:
        return {}
    try:
        return read_config_file(config.data_dir)
    except ConfigStoreError as e:
        raise StartupError(
            f"{e} (fix or remove the file)", exit_code=EXIT_DATA_DIR
        ) from e


async def _dynamic_configs(
    config: BrokerConfig,
    logs: LogManager,
    fileops: FileOps,
    cluster: ClusterRequests | None,
    scopes: Mapping[str, Mapping[str, str]],
) -> DynamicConfigs:
    """The dynamic broker configs, applied to the open logs: ``scopes`` (from
    ``broker-configs.json``) on a single node, the cluster's cache otherwise."""
    if cluster is None:
        store = FileConfigStore(config.data_dir, fileops, scopes)
        dynamic = DynamicConfigs(config.node_id, config.topic_defaults, logs, store)
    else:
        scopes = cluster.cache.broker_config_scopes()
        dynamic = DynamicConfigs(
            config.node_id,
            config.topic_defaults,
            logs,
            EtcdConfigStore(cluster),
            cluster=True,
        )
    for scope, values in scopes.items():
        await dynamic.set_layer(scope, values, reason="loaded")
    return dynamic


async def _join_cluster(
    config: BrokerConfig,
    runtime: Runtime,
    metrics: Metrics,
    kafka: KafkaListeners | None,
) -> ClusterService:
    """Register this broker (its advertised listeners and admin API) in the
    cluster and load the cluster's state (:meth:`ClusterService.connect`)."""
    endpoints = [
        Endpoint(
            name=b.name,
            host=b.advertised_host,
            port=b.advertised_port,
            security_protocol=config.security.protocol_of(b.name),
        )
        for b in (kafka.bound() if kafka is not None else [])
    ]
    admin = runtime.admin_address
    return await ClusterService.connect(
        config,
        endpoints,
        None if admin is None else f"{admin[0]}:{admin[1]}",
        metrics=metrics,
    )


async def _controlled_shutdown(coordination: ClusterService) -> None:
    """Ask the controller to move this broker's leaderships away, bounded (Kafka's
    controlled shutdown); skipped when it leads nothing."""
    with anyio.CancelScope(shield=True), anyio.move_on_after(CONTROLLED_SHUTDOWN_S):
        if coordination.leading() == 0:
            return
        remaining = await coordination.controlled_shutdown()
        log.info("controlled_shutdown", remaining=remaining)


def _local_view(config: BrokerConfig, runtime: Runtime) -> LocalView:
    """A single node's view of the cluster: this broker at its bound listeners."""

    def endpoints() -> list[Endpoint]:
        return [
            Endpoint(
                name=b.name,
                host=b.advertised_host,
                port=b.advertised_port,
                security_protocol=config.security.protocol_of(b.name),
            )
            for b in runtime.listeners.values()
        ]

    return LocalView(config.node_id, config.cluster_id, endpoints)


@contextlib.asynccontextmanager
async def open_context(
    config: BrokerConfig, *, cluster: ClusterRequests | None = None
) -> AsyncIterator[BrokerContext]:
    """A broker's context without listeners or admin API (tests, tools): storage and
    every service open; on exit the group and producer state and storage close.
    The replica manager (cluster mode) is not started: the caller runs it."""
    security = _security_service(config)
    ctx = await _open_services(
        config,
        Metrics(),
        Runtime(),
        security,
        lock_data_dir(config.data_dir),
        cluster=cluster,
    )
    try:
        yield ctx
    finally:
        with anyio.CancelScope(shield=True):
            ctx.producers.close()
            await ctx.groups.close()
            await ctx.topics.close()


async def _run_groups(ctx: BrokerContext) -> None:
    """Drive the group service until cancelled, then close groups and producer state."""
    try:
        await ctx.groups.run()
    finally:
        ctx.producers.close()
        await ctx.groups.close()


async def _watch_signals(stop: anyio.Event) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("signal_received", signal=signal.Signals(signum).name)
            stop.set()
            return


def _kafka_dispatch(ctx: BrokerContext) -> Dispatcher:
    """The dispatcher of Kafka requests: through authorisation only when security
    enforces something (otherwise straight to the handlers). Handler modules, and
    the message schemas they import, load on their API's first request."""
    if ctx.security.enforces:
        return Dispatcher((Authorize(ctx.security, ctx.topics),))
    return Dispatcher()


def _security_service(config: BrokerConfig) -> SecurityService:
    """The security service of the configured listeners (may enforce nothing)."""
    names = tuple(lc.name for lc in config.listeners)
    protocols = {n: config.security.protocol_of(n) for n in names}
    client_auth = config.tls is not None and config.tls.client_auth == "required"
    service = SecurityService(
        config.security,
        data_dir=config.data_dir,
        listeners=names,
        client_cert_listeners=frozenset(
            n for n, p in protocols.items() if p == "SSL" and client_auth
        ),
    )
    if config.cluster is None:
        try:
            service.acls.bindings()  # a damaged ACL file stops the start, named
        except AclStoreError as e:
            raise StartupError(
                f"{e} (fix or remove the file, then start again)",
                exit_code=EXIT_DATA_DIR,
            ) from None
    return service


def _tls_contexts(config: BrokerConfig) -> dict[str, ssl.SSLContext]:
    """TLS contexts per listener name (checks the certificate files first)."""
    names = tuple(lc.name for lc in config.listeners)
    protocols = {n: config.security.protocol_of(n) for n in names}
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
        await anyio.sleep(ctx.config.log_retention_check_interval_ms / 1000)
        await ctx.topics.apply_retention()


def _write_ready_file(config: BrokerConfig, runtime: Runtime) -> None:
    path = config.ready_file
    if path is None:
        return
    data = {
        "pid": os.getpid(),
        "node_id": config.node_id,
        "data_dir": str(config.data_dir),
        "kafka": {name: b.as_json() for name, b in runtime.listeners.items()},
        "admin": None
        if runtime.admin_address is None
        else {"host": runtime.admin_address[0], "port": runtime.admin_address[1]},
    }
    tmp = Path(f"{path}.tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)
