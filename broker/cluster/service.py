"""``ClusterService``: this broker's membership of a cluster.

One per broker in cluster mode, built by the server once its listeners are bound
(:meth:`ClusterService.connect`) and run in its serving task group
(:meth:`ClusterService.run`):

- the **session**: a lease of ``session_timeout_ms`` kept alive every third of it.
  ``brokers/{id}`` is bound to it, so a broker that dies disappears after the TTL
  (one that stops deletes its key and revokes the lease at once, :meth:`leave`).
  While etcd is down the keep-alive keeps trying (etcd keeps leases across a
  restart); a lease that expired anyway is granted again and the broker registers
  again (if its id was taken meanwhile it logs ``node_id_taken`` and keeps trying);
- the **watch**: every change under the prefix, in batches, into the
  :class:`~broker.cluster.cache.MetadataCache` (a compacted history is re-read in
  full); the admin requests it sees are kept here for the requests this broker
  waits on;
- the **campaign**: ``controller`` created with ``Compare(absent)`` under the
  session lease; its create revision is the controller epoch. The winner runs
  :class:`~broker.cluster.controller.Controller` until it raises
  :class:`~broker.cluster.controller.NotController`, the key goes (lease lost) or
  the broker stops; the others wait for the key's deletion and try again;
- the **admin requests** (Kafka's ZooKeeper ``/admin`` znodes): any broker writes
  ``admin/...`` and waits, on its own cache, until the controller deleted the
  request and the change shows (None), or set ``error`` (that error; the broker
  deletes the request), or ``request_timeout_ms`` passed (REQUEST_TIMED_OUT);
- the **offsets topic on demand**: the controller creates ``__consumer_offsets``
  once ``offsets.topic.replication.factor`` brokers are live; before that, the first
  group that needs a coordinator makes this broker ask for it (Kafka creates it on
  the first FindCoordinator), with as many replicas as brokers are live then.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

import anyio
import anyio.abc
import anyio.lowlevel
import structlog

from broker.cluster import configs as configs_in_etcd
from broker.cluster.cache import MetadataCache
from broker.cluster.controller import (
    UNCLEAN,
    Controller,
    ControllerSettings,
    NotController,
)
from broker.cluster.keys import Keys
from broker.cluster.model import (
    BadRecord,
    BrokerInfo,
    ControllerInfo,
    CreatePartitionsRequest,
    CreateTopicRequest,
    ElectRequest,
    Endpoint,
    PartitionRecord,
    ReassignRequest,
    RequestError,
    ShutdownRequest,
    encode,
)
from broker.cluster.store import (
    Compare,
    Delete,
    Event,
    LeaseExpired,
    Put,
    Snapshot,
    Store,
    StoreUnavailable,
)
from broker.cluster.view import OFFSETS_TOPIC, TRANSACTION_TOPIC
from broker.config import BrokerConfig, ClusterSettings
from broker.metrics import Metrics
from broker.startup import EXIT_CONFIG, EXIT_FAILURE, StartupError
from protocol.error_codes import ErrorCode

log = structlog.get_logger("broker.cluster.service")

CLUSTER_SETTING = "--cluster / AILURUS_CLUSTER"
CONNECT_TIMEOUT_S = 10.0  # start-up gives up on etcd after this long
RETRY_S = (0.2, 2.0)  # first and largest pause between retries of etcd calls
_WATCH_BUFFER = 100_000  # events read ahead of the cache (one prefix's worth)


def _lease_ttl_s(settings: ClusterSettings) -> int:
    return max(1, math.ceil(settings.session_timeout_ms / 1000))


def _request_error(raw: bytes) -> RequestError | None:
    """The ``error`` a controller set on an admin request, if any."""
    if not raw:
        return None
    try:
        data = json.loads(raw)
        e = data.get("error") if isinstance(data, dict) else None
        return None if e is None else RequestError.from_json(e)
    except (ValueError, BadRecord):
        return None


class ClusterService:
    """Session, watch, controller election and admin requests of one broker."""

    def __init__(
        self,
        *,
        settings: ClusterSettings,
        store: Store,
        keys: Keys,
        info: BrokerInfo,
        lease: int,
        cache: MetadataCache,
        controller_type: type[Controller] = Controller,
        unclean_leader_election: bool = False,
        txn_partitions: int = 16,
    ) -> None:
        self.settings = settings
        # transaction.state.log.num.partitions, for the state log made on demand
        self.txn_partitions = txn_partitions
        # the broker default of unclean.leader.election.enable (--set)
        self.unclean_leader_election = unclean_leader_election
        self._controller_type = controller_type
        self.store = store
        self.keys = keys
        self.info = info
        self.cache = cache
        self._lease = lease
        self._lease_lost = anyio.Event()  # set when ``_lease`` is found expired
        self._session_back = anyio.Event()  # set when registered again
        self._admin: dict[str, bytes] = {}  # admin requests as last watched
        self._epoch = 0  # our controller key's create revision while elected
        self._offsets_wanted = anyio.Event()
        cache.on_offsets_topic_missing = self._offsets_wanted.set
        self._txn_topic_wanted = anyio.Event()
        cache.on_txn_topic_missing = self._txn_topic_wanted.set

    @property
    def node_id(self) -> int:
        return self.info.node_id

    @property
    def is_controller(self) -> bool:
        return self._epoch != 0

    # -- start ---------------------------------------------------------------------

    @classmethod
    async def connect(
        cls,
        config: BrokerConfig,
        endpoints: Sequence[Endpoint],
        admin: str | None,
        *,
        metrics: Metrics | None = None,
        store: Store | None = None,
        controller_type: type[Controller] = Controller,
    ) -> ClusterService:
        """Connect to etcd, adopt the cluster id, register this broker under its
        session lease and load the cache. ``metrics`` counts etcd's outages
        (``ailurus_etcd_unavailable_total``); ``store`` (default: etcd at
        ``config.cluster``) and ``controller_type`` are for tests.

        Raises:
            StartupError: etcd is unreachable, or the node id is taken.
        """
        settings = config.cluster
        if settings is None:
            raise ValueError("connect() needs config.cluster")
        if store is None:
            from broker.cluster.etcd import EtcdStore  # grpc: cluster mode only

            # a call may take a third of the session: the keep-alive must fit
            timeout_s = min(5.0, max(1.0, settings.session_timeout_ms / 3000))
            store = EtcdStore(
                settings.endpoints,
                timeout_s=timeout_s,
                on_unavailable=None if metrics is None else metrics.etcd_lost,
            )
        keys = Keys(settings.prefix)
        info = BrokerInfo(
            node_id=config.node_id,
            endpoints=tuple(endpoints),
            rack=settings.rack,
            admin=admin,
            started_ms=int(time.time() * 1000),
        )
        where = ",".join(f"{h}:{p}" for h, p in settings.endpoints)
        try:
            with anyio.fail_after(CONNECT_TIMEOUT_S):
                await store.txn(
                    [Compare(keys.cluster_id, absent=True)],
                    [Put(keys.cluster_id, config.cluster_id.encode())],
                )
                kv = await store.get(keys.cluster_id)
                cluster_id = config.cluster_id if kv is None else kv.value.decode()
                lease = await store.grant_lease(_lease_ttl_s(settings))
                registered, _ = await store.txn(
                    [Compare(keys.broker(info.node_id), absent=True)],
                    [Put(keys.broker(info.node_id), encode(info), lease=lease)],
                )
                if not registered:
                    await store.revoke_lease(lease)
                snapshot = await store.get_prefix(keys.prefix + "/")
        except (StoreUnavailable, LeaseExpired, TimeoutError) as e:
            with anyio.CancelScope(shield=True):
                await store.close()
            raise StartupError(
                f"cannot reach etcd at {where} ({str(e) or 'timed out'}): start etcd, "
                f"or change {CLUSTER_SETTING}",
                exit_code=EXIT_FAILURE,
            ) from e
        if not registered:
            with anyio.CancelScope(shield=True):
                await store.close()
            raise StartupError(
                f"node id {info.node_id} is already registered in the cluster at "
                f"{where}{settings.prefix}: stop the broker that uses it (or wait "
                f"until its session of {settings.session_timeout_ms} ms expires), "
                "or change --node-id / AILURUS_NODE_ID",
                exit_code=EXIT_CONFIG,
            )
        cache = MetadataCache(keys, info.node_id, cluster_id)
        self = cls(
            settings=settings,
            store=store,
            keys=keys,
            info=info,
            lease=lease,
            cache=cache,
            controller_type=controller_type,
            unclean_leader_election=config.topic_defaults.get(UNCLEAN, "false").lower()
            == "true",
            txn_partitions=config.transaction_log_partitions or 16,
        )
        if self.unclean_leader_election:
            log.warning(
                "unclean_leader_election_enabled",
                node_id=info.node_id,
                detail="a partition whose in-sync replicas are all down is led by "
                "an out-of-sync replica: acknowledged records may be lost",
            )
        self._load(snapshot)
        log.info(
            "cluster_joined",
            node_id=info.node_id,
            cluster_id=cluster_id,
            etcd=where,
            prefix=settings.prefix,
            brokers=[b.node_id for b in cache.brokers()],
            controller_id=cache.controller_id,
        )
        return self

    # -- run -------------------------------------------------------------------------

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Keep the session alive, watch the prefix into the cache, campaign for
        controller and run the controller while elected; until cancelled."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._keep_session)
            tg.start_soon(self._watch)
            tg.start_soon(self._campaign)
            tg.start_soon(self._create_offsets_topic_on_demand)
            tg.start_soon(self._create_txn_topic_on_demand)
            task_status.started()

    async def _create_offsets_topic_on_demand(self) -> None:
        """Ask the controller for the offsets topic when a group needs it before
        enough brokers were live for the controller to create it by itself."""
        while True:
            await self._offsets_wanted.wait()
            if self.cache.topic(OFFSETS_TOPIC) is None:
                log.info("offsets_topic_requested")
                # the controller sizes it (offsets.topic.* settings, live brokers)
                request = CreateTopicRequest(name=OFFSETS_TOPIC, partitions=-1)
                error = await self._create_topic(request)
                if error is not None and error.code != ErrorCode.TOPIC_ALREADY_EXISTS:
                    log.warning("offsets_topic_request_failed", error=error.message)
                    await anyio.sleep(1.0)  # the next group lookup asks again
            self._offsets_wanted = anyio.Event()
            self.cache.on_offsets_topic_missing = self._offsets_wanted.set

    async def _create_txn_topic_on_demand(self) -> None:
        """Ask the controller for ``__transaction_state`` when a transactional id
        first needs a coordinator (Kafka creates it on FindCoordinator): its
        partitions from ``transaction.state.log.num.partitions``, replication
        factor ``transaction.state.log.replication.factor`` capped at the live
        brokers, compacted, with ``min.insync.replicas`` from
        ``transaction.state.log.min.isr`` (capped at that factor)."""
        while True:
            await self._txn_topic_wanted.wait()
            if self.cache.topic(TRANSACTION_TOPIC) is None:
                live = len(self.cache.brokers())
                rf = max(1, min(self.settings.transaction_replication_factor, live))
                log.info("txn_topic_requested", replication_factor=rf)
                request = CreateTopicRequest(
                    name=TRANSACTION_TOPIC,
                    partitions=self.txn_partitions,
                    replication_factor=rf,
                    configs={
                        "cleanup.policy": "compact",
                        "min.insync.replicas": str(
                            max(1, min(self.settings.transaction_min_isr, rf))
                        ),
                    },
                )
                error = await self._create_topic(request)
                if error is not None and error.code != ErrorCode.TOPIC_ALREADY_EXISTS:
                    log.warning("txn_topic_request_failed", error=error.message)
                    await anyio.sleep(1.0)  # the next lookup asks again
            self._txn_topic_wanted = anyio.Event()
            self.cache.on_txn_topic_missing = self._txn_topic_wanted.set

    async def _keep_session(self) -> None:
        """Refresh the lease every TTL/3; register again if it expired."""
        interval = _lease_ttl_s(self.settings) / 3
        while True:
            await anyio.sleep(interval)
            try:
                await self.store.keep_alive(self._lease)
            except StoreUnavailable:
                # etcd is down (the watch logs the outage); try again sooner: etcd
                # keeps the lease across a restart.
                interval = min(_lease_ttl_s(self.settings) / 3, RETRY_S[1])
                continue
            except LeaseExpired:
                log.warning("session_expired", node_id=self.node_id, lease=self._lease)
                self._lease_lost.set()
                await self._register_again()
            interval = _lease_ttl_s(self.settings) / 3

    async def _register_again(self) -> None:
        """Grant a new lease and register under it, until that succeeds."""
        pause = RETRY_S[0]
        key = self.keys.broker(self.node_id)
        taken_logged = False
        while True:
            try:
                lease = await self.store.grant_lease(_lease_ttl_s(self.settings))
                ok, _ = await self.store.txn(
                    [Compare(key, absent=True)],
                    [Put(key, encode(self.info), lease=lease)],
                )
                if ok:
                    self._lease = lease
                    self._lease_lost = anyio.Event()
                    self._session_back.set()
                    self._session_back = anyio.Event()
                    log.info("broker_registered_again", node_id=self.node_id)
                    return
                await self.store.revoke_lease(lease)
                if not taken_logged:
                    taken_logged = True
                    log.error(
                        "node_id_taken",
                        node_id=self.node_id,
                        hint="another broker registered this node id; retrying",
                    )
            except (StoreUnavailable, LeaseExpired):
                pass
            await anyio.sleep(pause)
            pause = min(pause * 2, RETRY_S[1])

    async def _watch(self) -> None:
        """Feed every change under the prefix into the cache, in batches."""
        while True:
            send, receive = anyio.create_memory_object_stream[Event](_WATCH_BUFFER)
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._pump, send, self.cache.revision + 1)
                    async with receive:
                        async for event in receive:
                            batch = [event]
                            while True:
                                try:
                                    batch.append(receive.receive_nowait())
                                except anyio.WouldBlock:
                                    break
                            self._apply(batch)
            except* StoreUnavailable as eg:
                # history compacted past the cache: read everything again
                log.warning("cluster_watch_reread", reason=str(eg.exceptions[0]))
                self._load(await self._read_all())

    @property
    def _prefix(self) -> str:
        return self.keys.prefix + "/"

    async def _pump(
        self, send: anyio.abc.ObjectSendStream[Event], start_revision: int
    ) -> None:
        events = self.store.watch_prefix(self._prefix, start_revision)
        # the Store protocol types a watch as an AsyncIterator; both real stores
        # are async generators, closed here when the watch is cancelled
        async with send, contextlib.aclosing(events):  # type: ignore[type-var]
            async for event in events:
                await send.send(event)

    async def _read_all(self) -> Snapshot:
        """The whole prefix, retried while etcd is unavailable."""
        pause = RETRY_S[0]
        while True:
            try:
                return await self.store.get_prefix(self._prefix)
            except StoreUnavailable:
                await anyio.sleep(pause)
                pause = min(pause * 2, RETRY_S[1])

    def _load(self, snapshot: Snapshot) -> None:
        before = {b.node_id for b in self.cache.brokers()}
        self._admin = {
            kv.key: kv.value
            for kv in snapshot.items
            if kv.key.startswith(self.keys.admin)
        }
        self.cache.load(snapshot)
        self._log_membership(before)

    def _apply(self, batch: Sequence[Event]) -> None:
        before = {b.node_id for b in self.cache.brokers()}
        controller = self.cache.controller_id
        for e in batch:
            if e.key.startswith(self.keys.admin):
                if e.value is None:
                    self._admin.pop(e.key, None)
                else:
                    self._admin[e.key] = e.value
        self.cache.apply(batch)
        self._log_membership(before)
        if self.cache.controller_id != controller:
            log.debug(
                "controller_changed",
                controller_id=self.cache.controller_id,
                previous=controller,
            )

    def _log_membership(self, before: set[int]) -> None:
        after = {b.node_id for b in self.cache.brokers()}
        for node in sorted(after - before):
            log.info("broker_registered", node_id=node, local=node == self.node_id)
        for node in sorted(before - after):
            log.info("broker_lost", node_id=node, local=node == self.node_id)

    # -- the controller campaign -----------------------------------------------------

    async def _campaign(self) -> None:
        """Hold the controller key and run the controller, or wait for the key to
        go; forever."""
        pause = RETRY_S[0]
        while True:
            lost = self._lease_lost
            if lost.is_set():
                await self._session_back.wait()
                continue
            try:
                won, epoch = await self.store.txn(
                    [Compare(self.keys.controller, absent=True)],
                    [
                        Put(
                            self.keys.controller,
                            encode(ControllerInfo(node_id=self.node_id)),
                            lease=self._lease,
                        )
                    ],
                )
            except (StoreUnavailable, LeaseExpired):
                await anyio.sleep(pause)
                pause = min(pause * 2, RETRY_S[1])
                continue
            pause = RETRY_S[0]
            if won:
                await self._lead(epoch, lost)
            else:
                await self._wait_controller_gone()

    async def _lead(self, epoch: int, lost: anyio.Event) -> None:
        """Run the controller at ``epoch`` until it is no longer the controller."""
        self._epoch = epoch
        log.info("controller_elected", node_id=self.node_id, epoch=epoch)
        reason = "stopped"
        try:
            async with anyio.create_task_group() as tg:

                async def watch_lost() -> None:
                    nonlocal reason
                    await self._until_not_controller(epoch, lost)
                    # a stop that arrived meanwhile is not a lost office
                    await anyio.lowlevel.checkpoint()
                    reason = "lost"
                    tg.cancel_scope.cancel()

                tg.start_soon(watch_lost)
                try:
                    await self._controller_type(
                        self.store,
                        self.keys,
                        node_id=self.node_id,
                        epoch=epoch,
                        settings=ControllerSettings(
                            default_replication_factor=self.settings.default_replication_factor,
                            offsets_partitions=self.settings.offsets_partitions,
                            offsets_replication_factor=self.settings.offsets_replication_factor,
                            unclean_leader_election=self.unclean_leader_election,
                        ),
                    ).run()
                except NotController:
                    reason = "fenced"
                tg.cancel_scope.cancel()
        finally:
            self._epoch = 0
            log.info(
                "controller_resigned", node_id=self.node_id, epoch=epoch, reason=reason
            )
            with anyio.CancelScope(shield=True), anyio.move_on_after(2):
                await self._resign(epoch)

    async def _until_not_controller(self, epoch: int, lost: anyio.Event) -> None:
        """Return once the session is lost or the cache shows another (or no)
        controller than ours at ``epoch``."""
        async with anyio.create_task_group() as tg:

            async def on_lost() -> None:
                await lost.wait()
                tg.cancel_scope.cancel()

            tg.start_soon(on_lost)
            seen = self.cache.version
            while True:
                c = self.cache.controller
                # our own write may not be in the cache yet: only a key of another
                # epoch, or none once the cache is past ours, means we lost it
                if (c is not None and c.epoch != epoch) or (
                    c is None and self.cache.revision >= epoch
                ):
                    break
                seen = await self.cache.wait_changed(seen)
            tg.cancel_scope.cancel()

    async def _resign(self, epoch: int) -> None:
        """Delete the controller key if it is still ours."""
        # on failure it goes with the lease
        with contextlib.suppress(StoreUnavailable, LeaseExpired):
            await self.store.txn(
                [Compare(self.keys.controller, create_revision=epoch)],
                [Delete(self.keys.controller)],
            )

    async def _wait_controller_gone(self) -> None:
        """Wait until the controller key another broker holds is deleted (as this
        broker's cache sees it)."""
        try:
            kv = await self.store.get(self.keys.controller)
        except StoreUnavailable:
            await anyio.sleep(RETRY_S[0])
            return
        if kv is None:
            return  # gone already: campaign again
        if kv.lease == self._lease:
            await self._resign(kv.create_revision)  # ours, left by a failed resign
            return
        seen = self.cache.version
        while True:
            c = self.cache.controller
            if self.cache.revision >= kv.mod_revision and (
                c is None or c.epoch != kv.create_revision
            ):
                return
            seen = await self.cache.wait_changed(seen)

    # -- admin requests ----------------------------------------------------------------

    async def create_topics(
        self, requests: Sequence[CreateTopicRequest]
    ) -> list[RequestError | None]:
        """Ask the controller to create topics; each one's error or None, once the
        topic is in this broker's cache."""
        results: list[RequestError | None] = [None] * len(requests)

        async def one(i: int, request: CreateTopicRequest) -> None:
            results[i] = await self._create_topic(request)

        async with anyio.create_task_group() as tg:
            for i, request in enumerate(requests):
                tg.start_soon(one, i, request)
        return results

    async def _create_topic(self, request: CreateTopicRequest) -> RequestError | None:
        name = request.name
        if self.cache.topic(name) is not None:
            return RequestError(
                code=ErrorCode.TOPIC_ALREADY_EXISTS,
                message=f"Topic '{name}' already exists.",
            )
        return await self._request(
            self.keys.create(name),
            encode(request),
            done=lambda: self.cache.topic(name) is not None,
            exists=RequestError(
                code=ErrorCode.TOPIC_ALREADY_EXISTS,
                message=f"Topic '{name}' is already being created.",
            ),
        )

    async def create_partitions(
        self, request: CreatePartitionsRequest
    ) -> RequestError | None:
        name = request.name

        def done() -> bool:
            t = self.cache.topic(name)
            return t is not None and t.partitions >= request.count

        return await self._request(
            self.keys.grow(name),
            encode(request),
            done=done,
            exists=RequestError(
                code=ErrorCode.REASSIGNMENT_IN_PROGRESS,
                message=f"Partitions of '{name}' are already being created.",
            ),
        )

    async def delete_topic(self, name: str) -> RequestError | None:
        if self.cache.topic(name) is None:
            return RequestError(
                code=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                message=f"Topic '{name}' does not exist.",
            )
        return await self._request(
            self.keys.delete(name), b"", done=lambda: self.cache.topic(name) is None
        )

    async def elect(
        self, topic: str, index: int, *, unclean: bool = False
    ) -> RequestError | None:
        return await self._request(
            self.keys.elect(topic, index),
            encode(ElectRequest(unclean=unclean)),
            done=lambda: True,
        )

    async def reassign(
        self, topic: str, index: int, replicas: Sequence[int]
    ) -> RequestError | None:
        return await self._request(
            self.keys.reassign(topic, index),
            encode(ReassignRequest(replicas=tuple(replicas))),
            done=lambda: True,
            overwrite=True,  # a new target replaces one in progress (KIP-455)
        )

    async def alter_topic_configs(
        self, name: str, edit: Callable[[Mapping[str, str]], dict[str, str]]
    ) -> dict[str, str] | RequestError:
        """Replace a topic's overrides in its record (:mod:`broker.cluster.configs`)."""
        return await configs_in_etcd.alter_topic_configs(
            self.store,
            self.keys,
            self.cache,
            name,
            edit,
            self.settings.request_timeout_ms / 1000,
        )

    async def put_broker_configs(
        self, scope: str, edit: Callable[[Mapping[str, str]], dict[str, str]]
    ) -> dict[str, str] | RequestError:
        """Replace a scope's dynamic broker configs (:mod:`broker.cluster.configs`)."""
        return await configs_in_etcd.put_broker_configs(
            self.store,
            self.keys,
            self.cache,
            scope,
            edit,
            self.settings.request_timeout_ms / 1000,
        )

    async def alter_isr(
        self, topic: str, index: int, isr: Sequence[int], expected: PartitionRecord
    ) -> PartitionRecord | None:
        """The leader's ISR change (Kafka's ZooKeeper-era ``LeaderAndIsr`` update
        guarded by the znode version): write ``isr`` to the partition key with a
        compare-and-set on the key's mod revision, only while the stored state is
        still ``expected``'s leader (this broker), leader epoch and partition epoch.
        A replica joining the ISR must still be registered and not shutting down
        when the write lands (both compared in the same transaction). The
        partition epoch moves on; the controller, whose own compare-and-set then
        fails, reads the key again and decides again. The new record, or None when
        the state moved on (the caller waits for its cache) or etcd is unavailable.
        """
        key = self.keys.partition(topic, index)
        try:
            kv = await self.store.get(key)
            if kv is None:
                return None
            current = PartitionRecord.decode(kv.value)
            if (
                current.leader != self.node_id
                or current.leader_epoch != expected.leader_epoch
                or current.partition_epoch != expected.partition_epoch
            ):
                return None
            compares = [Compare(key, mod_revision=kv.mod_revision)]
            for joining in (r for r in isr if r not in current.isr):
                # A joining replica must be registered, and not shutting down,
                # when the write lands (KIP-841): this broker's cache may lag.
                broker = await self.store.get(self.keys.broker(joining))
                if broker is None:
                    return None
                compares += [
                    Compare(broker.key, create_revision=broker.create_revision),
                    Compare(self.keys.shutdown(joining), absent=True),
                ]
            new = replace(
                current,
                isr=tuple(isr),
                partition_epoch=current.partition_epoch + 1,
            )
            ok, _ = await self.store.txn(compares, [Put(key, encode(new))])
        except (StoreUnavailable, LeaseExpired, BadRecord) as e:
            log.warning("isr_change_failed", topic=topic, partition=index, error=str(e))
            return None
        if not ok:
            return None
        log.info(
            "isr_changed",
            topic=topic,
            partition=index,
            isr=list(new.isr),
            previous=list(current.isr),
            leader_epoch=new.leader_epoch,
            partition_epoch=new.partition_epoch,
        )
        return new

    async def _request(
        self,
        key: str,
        value: bytes,
        *,
        done: Callable[[], bool],
        exists: RequestError | None = None,
        overwrite: bool = False,
    ) -> RequestError | None:
        """Write an admin request and wait for its outcome (module docstring)."""
        timeout_s = self.settings.request_timeout_ms / 1000
        timed_out = RequestError(
            code=ErrorCode.REQUEST_TIMED_OUT,
            message=f"the controller did not answer within {timeout_s:g} s",
        )
        with anyio.move_on_after(timeout_s):
            try:
                if overwrite:
                    revision = await self.store.put(key, value)
                else:
                    ok, revision = await self.store.txn(
                        [Compare(key, absent=True)], [Put(key, value)]
                    )
                    if not ok:
                        ok, revision = await self._replace_refused(key, value)
                    if not ok:
                        return exists or RequestError(
                            code=ErrorCode.REQUEST_TIMED_OUT,
                            message="the same request is already pending",
                        )
            except (StoreUnavailable, LeaseExpired) as e:
                return RequestError(code=ErrorCode.REQUEST_TIMED_OUT, message=str(e))
            seen = self.cache.version
            while True:
                if self.cache.revision >= revision:
                    raw = self._admin.get(key)
                    if raw is not None:
                        error = _request_error(raw)
                        if error is not None:
                            await self._delete_request(key)
                            return error
                    elif done():
                        return None
                seen = await self.cache.wait_changed(seen)
        return timed_out

    async def _replace_refused(self, key: str, value: bytes) -> tuple[bool, int]:
        """Replace a request the controller refused and nobody collected (its
        broker stopped while waiting); (False, 0) if the request is pending."""
        kv = await self.store.get(key)
        if kv is None or _request_error(kv.value) is None:
            return False, 0
        return await self.store.txn(
            [Compare(key, mod_revision=kv.mod_revision)], [Put(key, value)]
        )

    async def _delete_request(self, key: str) -> None:
        try:
            await self.store.delete(key)
        except StoreUnavailable as e:
            log.warning("admin_request_not_deleted", key=key, error=str(e))

    async def controlled_shutdown(self) -> int:
        """Ask the controller to move the leadership of this broker's partitions
        away; how many it still leads (no other live replica could take them)."""
        key = self.keys.shutdown(self.node_id)
        timeout_s = self.settings.request_timeout_ms / 1000
        with anyio.move_on_after(timeout_s):
            try:
                revision = await self.store.put(
                    key, encode(ShutdownRequest(node_id=self.node_id))
                )
            except StoreUnavailable:
                return self.leading()
            seen = self.cache.version
            while True:
                raw = self._admin.get(key)
                if self.cache.revision >= revision and raw is not None:
                    try:
                        answer = ShutdownRequest.decode(raw)
                    except BadRecord:
                        answer = None
                    if answer is not None and answer.done:
                        # Kept until leave() deletes it with the registration: a
                        # broker shutting down must not join an ISR again, nor be
                        # elected (the controller's fenced brokers).
                        return answer.remaining
                seen = await self.cache.wait_changed(seen)
        return self.leading()

    def leading(self) -> int:
        """How many partitions this broker leads, as the cache says."""
        return sum(
            1
            for t in self.cache.topics()
            for _, p in self.cache.partitions_of(t.name)
            if p.leader == self.node_id
        )

    async def leave(self) -> None:
        """Delete this broker's registration and revoke its lease (at stop), so
        the controller reacts at once rather than after the session timeout."""
        with anyio.CancelScope(shield=True), anyio.move_on_after(5):
            try:
                await self.store.txn(
                    [],
                    [
                        Delete(self.keys.broker(self.node_id)),
                        Delete(self.keys.shutdown(self.node_id)),
                    ],
                )
                if self._epoch:
                    await self._resign(self._epoch)
                await self.store.revoke_lease(self._lease)
                log.info("cluster_left", node_id=self.node_id)
            except (StoreUnavailable, LeaseExpired) as e:
                log.warning("cluster_leave_failed", error=str(e))
        with anyio.CancelScope(shield=True):
            await self.store.close()
