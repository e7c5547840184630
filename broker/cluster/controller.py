"""The controller: the one broker that assigns replicas, elects leaders and writes
partition state, while it holds the controller key.

On start it reads everything under the prefix, creates the offsets topic once
``offsets.topic.replication.factor`` brokers are live (earlier only when a broker
asks for it because a group needs a coordinator: then with the live brokers),
reconciles (offline partitions with a live ISR replica get a leader, leaders that
are gone lose leadership, pending admin requests are served, finished
reassignments complete), then watches the prefix from the revision it read and
acts on every change: brokers coming and going, admin requests, ISR changes that
complete a reassignment. The decisions are the pure functions of
:mod:`broker.cluster.decisions` and :mod:`broker.cluster.placement`; this module
reads and writes.

Every write is one transaction guarded by ``Compare(controller,
create_revision=epoch)``; a partition key is also compared on the mod revision the
decision was made from, and a failed compare re-reads the key and decides again.
When the guard fails, another broker controls the cluster: :class:`NotController`.
The controller decides from its mirror of the prefix (:mod:`broker.cluster.mirror`),
fed by its watch and by its own writes.

Requests (``admin/...``): a served create, grow, delete, reassign or elect request
is deleted in the transaction that applies it (a reassignment once it has
started); a refused one is rewritten with ``error`` (a Kafka error code and
message) and left for the requester to delete; a request that already carries an
error is not looked at again. A shutdown request is rewritten with ``done`` and
``remaining`` (the partitions the broker still leads); while it exists the broker
is not chosen as a new leader, and the controller deletes it once the broker's
registration is gone (or has been renewed since).

Unclean leader election: a partition whose ISR has no live replica stays offline
unless its topic's ``unclean.leader.election.enable`` (else the broker default,
:attr:`ControllerSettings.unclean_leader_election`, false as in Kafka) is true;
then its first live replica leads. Electing a replica outside the ISR (this way or
by an unclean ElectLeaders) logs the warning ``unclean_leader_elected``, once per
topic while this controller's term lasts.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial

import structlog

from broker.cluster import decisions, placement
from broker.cluster.keys import Keys
from broker.cluster.mirror import Mirror
from broker.cluster.model import (
    NO_LEADER,
    BadRecord,
    CreatePartitionsRequest,
    CreateTopicRequest,
    DeleteTopicRequest,
    ElectRequest,
    PartitionRecord,
    ReassignRequest,
    RequestError,
    ShutdownRequest,
    TopicRecord,
    encode,
)
from broker.cluster.store import Compare, Delete, Op, Put, Store
from broker.cluster.view import INTERNAL_TOPICS, OFFSETS_TOPIC
from protocol.error_codes import ErrorCode

log = structlog.get_logger("broker.cluster.controller")

CHUNK = 100  # new partition keys per transaction (etcd allows 128 operations)
BATCH = 50  # partition changes per transaction (each a compare and a put)
_RETRIES = 8  # decisions re-made after a failed compare-and-set
_LEGAL = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
UNCLEAN = "unclean.leader.election.enable"


class NotController(Exception):
    """A guarded write failed: another broker holds the controller key now."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ControllerSettings:
    default_replication_factor: int = 1
    offsets_partitions: int = 16
    offsets_replication_factor: int = 3  # capped at the live brokers
    # unclean.leader.election.enable for topics that do not set it (broker default)
    unclean_leader_election: bool = False


def topic_name_error(name: str) -> RequestError | None:
    """Kafka's legal topic names (``Topic.validate``)."""
    if not name or name in {".", ".."} or len(name) > 249 or set(name) - _LEGAL:
        return RequestError(
            code=ErrorCode.INVALID_TOPIC_EXCEPTION,
            message=f"Topic name {name!r} is illegal: up to 249 of ASCII letters, "
            "digits, '.', '_' and '-'.",
        )
    return None


class Controller:
    """Runs while this broker holds the controller key at ``epoch``."""

    def __init__(
        self,
        store: Store,
        keys: Keys,
        *,
        node_id: int,
        epoch: int,
        settings: ControllerSettings,
    ) -> None:
        self.store = store
        self.keys = keys
        self.node_id = node_id
        self.epoch = epoch
        self.settings = settings
        self._mirror = Mirror(keys)
        self._guard = Compare(keys.controller, create_revision=epoch)
        self._unclean_warned: set[str] = set()  # topics warned about this term

    # -- the loop -----------------------------------------------------------------

    async def run(self) -> None:
        """Act on requests and broker changes until cancelled.

        Raises:
            NotController: a write guarded by ``epoch`` failed.
            StoreUnavailable: etcd is unreachable (the caller campaigns again).
        """
        prefix = self.keys.prefix + "/"
        snap = await self.store.get_prefix(prefix)
        self._mirror.load(snap)
        self._check_controller()
        await self.reconcile()
        events = self.store.watch_prefix(prefix, snap.revision + 1)
        # closed here when the controller stops, not later by the garbage collector
        # in another task (both stores' watches are async generators)
        async with contextlib.aclosing(events):  # type: ignore[type-var]
            async for ev in events:
                if self._mirror.observe(ev):
                    await self._on_change(ev.key)

    async def reconcile(self) -> None:
        """Everything the state calls for: the offsets topic, leaders for the live
        brokers, pending requests, finished reassignments."""
        await self._ensure_offsets_topic()
        for node in sorted(self._mirror.fenced()):
            await self._forget_shutdown(str(node))
        await self._reconcile_liveness("reconcile")
        for kv in self._mirror.requests():
            await self._on_request(kv.key)
        for topic, index in self._mirror.partition_ids():
            await self._complete_reassignment(topic, index)

    async def _on_change(self, key: str) -> None:
        parts = self.keys.relative(key)
        match parts:
            case ["controller"]:
                self._check_controller()
            case ["brokers", node]:
                if self._mirror.get(key) is not None:
                    await self._forget_shutdown(node)
                    await self._reconcile_liveness("broker_joined")
                    await self._ensure_offsets_topic()
                else:
                    log.info("broker_lost", node_id=node)
                    await self._reconcile_liveness("broker_lost")
                    await self._forget_shutdown(node)
            case ["admin", *_]:
                await self._on_request(key)
            case ["partitions", topic, index] if index.isdigit():
                await self._complete_reassignment(topic, int(index))
            case _:
                pass

    # -- the mirror -----------------------------------------------------------------

    async def _refresh(self, key: str) -> None:
        """Re-read one key after a failed compare."""
        snap = await self.store.get_prefix(key)
        kv = next((kv for kv in snap.items if kv.key == key), None)
        self._mirror.refreshed(key, kv, snap.revision)

    def _check_controller(self) -> None:
        kv = self._mirror.get(self.keys.controller)
        if kv is None or kv.create_revision != self.epoch:
            raise NotController(
                f"the controller key is no longer at epoch {self.epoch}"
            )

    # -- writes -------------------------------------------------------------------

    async def _write(self, compares: Sequence[Compare], ops: Sequence[Op]) -> bool:
        """One guarded transaction; False when one of ``compares`` failed.

        Raises:
            NotController: the guard failed.
        """
        ok, revision = await self.store.txn([self._guard, *compares], ops)
        if ok:
            self._mirror.wrote(ops, revision)
            return True
        kv = await self.store.get(self.keys.controller)
        if kv is None or kv.create_revision != self.epoch:
            raise NotController(
                f"the controller key is no longer at epoch {self.epoch}"
            )
        return False

    async def _update(
        self,
        topic: str,
        index: int,
        decide: Callable[[PartitionRecord], PartitionRecord | RequestError | None],
        reason: str,
        *,
        also: Sequence[Op] = (),
    ) -> PartitionRecord | RequestError | None:
        """Decide a partition's new state and write it with compare-and-set (with
        ``also`` in the same transaction), deciding again on a failed compare."""
        key = self.keys.partition(topic, index)
        for _ in range(_RETRIES):
            cur = self._mirror.partition(topic, index)
            if cur is None:
                return None
            rec, rev = cur
            new = decide(rec)
            if not isinstance(new, PartitionRecord):
                return new
            if await self._write(
                [Compare(key, mod_revision=rev)], [Put(key, encode(new)), *also]
            ):
                self._log_change(topic, index, rec, new, reason)
                return new
            await self._refresh(key)
        log.warning("partition_write_contended", topic=topic, partition=index)
        return None

    async def _update_many(
        self,
        decide: Callable[[str, PartitionRecord], PartitionRecord | None],
        reason: str,
    ) -> None:
        """Decide every partition's new state and write the changed ones
        :data:`BATCH` to a transaction (a failed batch falls back to one
        compare-and-set per partition, deciding again). ``decide`` gets the
        topic name and the record."""
        batch: list[tuple[str, int, PartitionRecord, int, PartitionRecord]] = []
        for topic, index in self._mirror.partition_ids():
            cur = self._mirror.partition(topic, index)
            if cur is None:
                continue
            new = decide(topic, cur[0])
            if new is not None:
                batch.append((topic, index, cur[0], cur[1], new))
        for at in range(0, len(batch), BATCH):
            chunk = batch[at : at + BATCH]
            keys = [self.keys.partition(t, i) for t, i, _, _, _ in chunk]
            if await self._write(
                [
                    Compare(k, mod_revision=rev)
                    for k, (_, _, _, rev, _) in zip(keys, chunk, strict=True)
                ],
                [Put(k, encode(new)) for k, (*_, new) in zip(keys, chunk, strict=True)],
            ):
                for topic, index, old, _, new in chunk:
                    self._log_change(topic, index, old, new, reason)
                continue
            for k in keys:
                await self._refresh(k)
            for topic, index, _, _, _ in chunk:
                await self._update(topic, index, partial(decide, topic), reason)

    def _unclean(self, configs: Mapping[str, str]) -> bool:
        """A topic's ``unclean.leader.election.enable``: its own config, else the
        broker default (false, as in Kafka)."""
        value = configs.get(UNCLEAN)
        if value is None:
            return self.settings.unclean_leader_election
        return value.lower() == "true"

    def _log_change(
        self,
        topic: str,
        index: int,
        old: PartitionRecord | None,
        new: PartitionRecord,
        reason: str,
    ) -> None:
        if old is not None and old.leader == new.leader:
            return
        log.info(
            "leader_changed",
            topic=topic,
            partition=index,
            leader=new.leader,
            leader_epoch=new.leader_epoch,
            reason=reason,
        )
        if (
            old is not None
            and new.leader != NO_LEADER
            and new.leader not in old.isr
            and topic not in self._unclean_warned
        ):
            # records the ISR acknowledged may be lost: say so, once per topic
            # per controller term
            self._unclean_warned.add(topic)
            log.warning(
                "unclean_leader_elected",
                topic=topic,
                partition=index,
                leader=new.leader,
                leader_epoch=new.leader_epoch,
                previous_isr=list(old.isr),
                reason=reason,
            )
        if new.leader == NO_LEADER:
            log.warning(
                "partition_offline", topic=topic, partition=index, reason=reason
            )

    async def _reply(self, key: str, value: bytes) -> None:
        """Rewrite a request with its answer, keeping the lease it is bound to
        (unless it changed or vanished meanwhile)."""
        kv = await self.store.get(key)
        if kv is None:
            return
        await self._write(
            [Compare(key, mod_revision=kv.mod_revision)],
            [Put(key, value, lease=kv.lease)],
        )

    async def _refuse(self, key: str, value: bytes, error: RequestError) -> None:
        """Answer a request with an error."""
        log.info(
            "request_refused", key=key, code=int(error.code), message=error.message
        )
        await self._reply(key, value)

    # -- liveness -------------------------------------------------------------------

    async def _reconcile_liveness(self, reason: str) -> None:
        live = self._mirror.live()
        fenced = self._mirror.fenced()
        unclean_topics: dict[str, bool] = {}

        def decide(topic: str, rec: PartitionRecord) -> PartitionRecord | None:
            if topic not in unclean_topics:
                t = self._mirror.topic(topic)
                unclean_topics[topic] = t is not None and self._unclean(t.configs)
            return decisions.for_liveness(
                rec,
                live,
                epoch=self.epoch,
                fenced=fenced,
                unclean=unclean_topics[topic],
            )

        await self._update_many(decide, reason)

    async def _forget_shutdown(self, node: str) -> None:
        """Drop the shutdown request of a broker that left, or of an earlier life
        of one that registered again: it no longer shuts down."""
        key = self.keys.admin + f"shutdown/{node}"
        request = self._mirror.get(key)
        if request is None or not node.isdigit():
            return
        broker = self._mirror.get(self.keys.broker(int(node)))
        if broker is None or request.mod_revision < broker.create_revision:
            await self._write([self._mirror.cas(key)], [Delete(key)])

    async def _ensure_offsets_topic(self) -> None:
        if self._mirror.topic(OFFSETS_TOPIC) is not None:
            return
        if self._mirror.get(self.keys.create(OFFSETS_TOPIC)) is not None:
            return  # a pending request creates it
        live = self._mirror.live()
        if len(live) < max(1, self.settings.offsets_replication_factor):
            # not yet: a broker asks for it when a group needs it first
            return
        rf = self.settings.offsets_replication_factor
        assignment = placement.assign(live, self.settings.offsets_partitions, rf)
        record = TopicRecord(
            name=OFFSETS_TOPIC,
            topic_id=uuid.uuid4(),
            partitions=len(assignment),
            internal=True,
        )
        await self._write_topic(record, assignment, start=0, done=())

    async def _write_topic(
        self,
        record: TopicRecord,
        assignment: Sequence[tuple[int, ...]],
        *,
        start: int,
        done: Sequence[Op],
    ) -> bool:
        """Write new partitions ``start..`` in chunks, then the topic record (and
        ``done``, the request's deletion) last: a broker that sees the topic sees
        its partitions. False when the topic record changed meanwhile."""
        live = set(self._mirror.live())
        fenced = self._mirror.fenced()
        records = [
            decisions.new_partition(r, live, self.epoch, fenced) for r in assignment
        ]
        for at in range(0, len(records), CHUNK):
            keys = [
                self.keys.partition(record.name, i)
                for i in range(start + at, start + min(at + CHUNK, len(records)))
            ]
            ops = [
                Put(k, encode(r))
                for k, r in zip(keys, records[at : at + CHUNK], strict=True)
            ]
            for _ in range(_RETRIES):
                if await self._write([self._mirror.cas(k) for k in keys], ops):
                    break
                for k in keys:
                    await self._refresh(k)
            else:
                log.warning("topic_write_contended", topic=record.name)
                return False
        topic_key = self.keys.topic(record.name)
        if not await self._write(
            [self._mirror.cas(topic_key)], [Put(topic_key, encode(record)), *done]
        ):
            await self._refresh(topic_key)
            return False
        for i, rec in enumerate(records, start=start):
            self._log_change(record.name, i, None, rec, "created")
        log.info(
            "topic_written",
            topic=record.name,
            partitions=record.partitions,
            topic_id=str(record.topic_id),
        )
        return True

    # -- requests -------------------------------------------------------------------

    async def _on_request(self, key: str) -> None:
        kv = self._mirror.get(key)
        if kv is None:
            return
        parts = self.keys.relative(key)
        try:
            match parts:
                case ["admin", "create", name]:
                    await self._create(key, CreateTopicRequest.decode(kv.value))
                case ["admin", "partitions", name]:
                    await self._grow(
                        key, name, CreatePartitionsRequest.decode(kv.value)
                    )
                case ["admin", "delete", name]:
                    await self._delete(key, name, DeleteTopicRequest.decode(kv.value))
                case ["admin", "reassign", name, index] if index.isdigit():
                    await self._reassign(
                        key, name, int(index), ReassignRequest.decode(kv.value)
                    )
                case ["admin", "elect", name, index] if index.isdigit():
                    await self._elect(
                        key, name, int(index), ElectRequest.decode(kv.value)
                    )
                case ["admin", "shutdown", node] if node.isdigit():
                    await self._shutdown(key, ShutdownRequest.decode(kv.value))
                case _:
                    log.warning("unknown_request", key=key)
        except BadRecord as e:
            log.warning("bad_record", key=key, error=str(e))

    async def _create(self, key: str, req: CreateTopicRequest) -> None:
        if req.error is not None:
            return
        live = self._mirror.live()
        error = topic_name_error(req.name)
        if error is None and self._mirror.topic(req.name) is not None:
            error = RequestError(
                code=ErrorCode.TOPIC_ALREADY_EXISTS,
                message=f"Topic '{req.name}' already exists.",
            )
        if error is None:
            error = self._collision(req.name)
        assignment: list[tuple[int, ...]] = []
        if error is None:
            try:
                if req.assignment is not None:
                    assignment = placement.validate(req.assignment, live)
                elif req.name == OFFSETS_TOPIC:
                    # asked for by a group before enough brokers were live
                    rf = min(self.settings.offsets_replication_factor, len(live))
                    n = self.settings.offsets_partitions
                    assignment = placement.assign(live, n, max(1, rf))
                else:
                    rf = req.replication_factor
                    if rf == -1:
                        rf = self.settings.default_replication_factor
                    assignment = placement.assign(live, req.partitions, rf)
            except placement.PlacementError as e:
                error = RequestError(code=e.code, message=e.message)
        if error is not None:
            await self._refuse(key, encode(replace(req, error=error)), error)
            return
        record = TopicRecord(
            name=req.name,
            topic_id=req.topic_id or uuid.uuid4(),
            partitions=len(assignment),
            configs=dict(req.configs),
            internal=req.name in INTERNAL_TOPICS,
        )
        if not await self._write_topic(record, assignment, start=0, done=[Delete(key)]):
            error = RequestError(
                code=ErrorCode.TOPIC_ALREADY_EXISTS,
                message=f"Topic '{req.name}' already exists.",
            )
            if self._mirror.topic(req.name) is not None:
                await self._refuse(key, encode(replace(req, error=error)), error)

    def _collision(self, name: str) -> RequestError | None:
        """Kafka refuses a name that differs from an existing one only by '.'
        versus '_' (they collide in metric names)."""
        flat = name.replace(".", "_")
        for other in self._mirror.topic_names():
            if other != name and other.replace(".", "_") == flat:
                return RequestError(
                    code=ErrorCode.INVALID_TOPIC_EXCEPTION,
                    message=f"Topic '{name}' collides with existing topic: {other}",
                )
        return None

    async def _grow(self, key: str, name: str, req: CreatePartitionsRequest) -> None:
        if req.error is not None:
            return
        topic = self._mirror.topic(name)
        first = self._mirror.partition(name, 0)
        error: RequestError | None = None
        assignment: list[tuple[int, ...]] = []
        if topic is None or first is None:
            error = RequestError(
                code=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                message=f"Topic '{name}' does not exist.",
            )
        elif req.count <= topic.partitions:
            error = RequestError(
                code=ErrorCode.INVALID_PARTITIONS,
                message=f"Topic currently has {topic.partitions} partitions, "
                f"{req.count} would not be an increase.",
            )
        else:
            live = self._mirror.live()
            p0 = first[0]
            rf = len(decisions.target_of(p0))
            adding = req.count - topic.partitions
            try:
                if req.assignment is not None:
                    if len(req.assignment) != adding:
                        raise placement.PlacementError(
                            ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                            f"Increasing the number of partitions by {adding} but "
                            f"{len(req.assignment)} assignments provided.",
                        )
                    assignment = placement.validate(
                        req.assignment, live, replication_factor=rf
                    )
                else:
                    assignment = placement.assign(
                        live,
                        adding,
                        rf,
                        start_index=placement.grow_start_index(
                            live, p0.replicas[0] if p0.replicas else 0
                        ),
                        start_partition=topic.partitions,
                    )
            except placement.PlacementError as e:
                error = RequestError(code=e.code, message=e.message)
        if error is not None:
            await self._refuse(key, encode(replace(req, error=error)), error)
            return
        assert topic is not None
        await self._write_topic(
            replace(topic, partitions=req.count),
            assignment,
            start=topic.partitions,
            done=[Delete(key)],
        )

    async def _delete(self, key: str, name: str, req: DeleteTopicRequest) -> None:
        if req.error is not None:
            return
        if self._mirror.topic(name) is None:
            error = RequestError(
                code=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                message=f"Topic '{name}' does not exist.",
            )
            await self._refuse(key, encode(replace(req, error=error)), error)
            return
        topic_key = self.keys.topic(name)
        ops: list[Op] = [
            Delete(self.keys.topic_partitions(name), prefix=True),
            Delete(topic_key),
            Delete(key),
        ]
        if await self._write([self._mirror.cas(topic_key)], ops):
            log.info("topic_deleted", topic=name)
        else:
            await self._refresh(topic_key)

    async def _reassign(
        self, key: str, name: str, index: int, req: ReassignRequest
    ) -> None:
        if req.error is not None:
            return
        live = set(self._mirror.live())
        await self._answer_partition(
            key,
            name,
            index,
            req,
            lambda rec: decisions.reassign(rec, req.replicas, live, epoch=self.epoch),
            "reassignment",
        )

    async def _elect(self, key: str, name: str, index: int, req: ElectRequest) -> None:
        if req.error is not None:
            return
        live = set(self._mirror.live())
        elect = decisions.elect_unclean if req.unclean else decisions.elect_preferred
        await self._answer_partition(
            key,
            name,
            index,
            req,
            lambda rec: elect(rec, live, epoch=self.epoch),
            "unclean_election" if req.unclean else "preferred_election",
        )

    async def _answer_partition(
        self,
        key: str,
        name: str,
        index: int,
        req: ReassignRequest | ElectRequest,
        decide: Callable[[PartitionRecord], PartitionRecord | RequestError | None],
        reason: str,
    ) -> None:
        """Apply a request about one partition, deleting its key in the same
        write, or answer it with the refusal (an unknown partition included)."""
        result = await self._update(name, index, decide, reason, also=[Delete(key)])
        if isinstance(result, RequestError) or result is None:
            error = result or RequestError(
                code=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                message=f"Partition {name}-{index} does not exist.",
            )
            await self._refuse(key, encode(replace(req, error=error)), error)

    async def _shutdown(self, key: str, req: ShutdownRequest) -> None:
        if req.done:
            return
        live = set(self._mirror.live())
        fenced = self._mirror.fenced()
        await self._update_many(
            lambda _, rec: decisions.shut_down(
                rec, req.node_id, live, epoch=self.epoch, fenced=fenced
            ),
            "controlled_shutdown",
        )
        remaining = 0
        for topic, index in self._mirror.partition_ids():
            cur = self._mirror.partition(topic, index)
            if cur is not None and cur[0].leader == req.node_id:
                remaining += 1
        log.info("controlled_shutdown", node_id=req.node_id, remaining=remaining)
        await self._reply(key, encode(replace(req, done=True, remaining=remaining)))

    async def _complete_reassignment(self, topic: str, index: int) -> None:
        cur = self._mirror.partition(topic, index)
        if cur is None or not (cur[0].adding or cur[0].removing):
            return
        live = set(self._mirror.live())
        await self._update(
            topic,
            index,
            lambda rec: decisions.complete_reassignment(rec, live, epoch=self.epoch),
            "reassignment",
        )
