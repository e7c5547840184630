"""The async driver of the group coordinator: waits, timers, durable offset commits.

Owns the glue between the pure :class:`~broker.groups.coordinator.GroupCoordinator`
and the event loop (anyio): each request that must wait (JoinGroup, SyncGroup) gets
a token and an ``anyio.Event``; :class:`~broker.groups.model.Reply` effects resolve
them. ONE timer task sleeps until the coordinator's next deadline (woken early when
a :class:`~broker.groups.model.ScheduleTimer` effect arrives) and calls ``tick``.
Offset commits are written to the :class:`~storage.offset_store.OffsetStore` and
answered once fsynced, through the broker's group commit (the same fsync rounds as
acks=all produce). A maintenance task expires offsets (``offsets.retention.minutes``),
drops offsets of deleted topics and forgets empty groups without offsets.

A client that disconnects while waiting just cancels its wait: the coordinator's
later reply to that token is dropped.

In cluster mode (a :class:`~broker.groups.replicated.ReplicatedOffsets` given) the
committed offsets live in ``__consumer_offsets`` instead of the local store: commits
and group deletions are appended there and answered once replicated, the groups of
an offsets partition this broker comes to lead are loaded from its log (the group
APIs answer COORDINATOR_LOAD_IN_PROGRESS meanwhile, :meth:`GroupService.refusal`),
and those of a partition it stops leading are unloaded; offset expiry writes
tombstones there.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import anyio
import structlog

from broker.cluster.view import OFFSETS_TOPIC
from broker.config import BrokerConfig
from broker.groups.consumer_protocol import decode_consumer_assignment
from broker.groups.coordinator import GroupCoordinator
from broker.groups.model import (
    Effect,
    GroupDescription,
    GroupListing,
    GroupState,
    JoinRequest,
    JoinResult,
    LeavingMember,
    Reply,
    ScheduleTimer,
    SyncRequest,
    SyncResult,
)
from broker.groups.offset_delete import plan_offset_delete
from broker.groups.offsets import (
    DEFAULT_METADATA_MAX_BYTES,
    DEFAULT_RETENTION_MS,
    CommitPartition,
    FetchedOffset,
    expiry_inputs,
    fetch_answer,
    plan_commit,
)
from broker.topics.service import TopicService
from protocol.error_codes import ErrorCode
from storage.errors import StorageError
from storage.offset_store import CommittedOffset, OffsetStore

if TYPE_CHECKING:
    from broker.groups.replicated import ReplicatedOffsets

log = structlog.get_logger("broker.groups")

_COMPACT_CHECK_S = 10.0


def monotonic_ms() -> int:
    """The coordinator's clock."""
    return time.monotonic_ns() // 1_000_000


def wall_ms() -> int:
    """Wall-clock ms (commit timestamps, offset expiry)."""
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupConfig:
    """Group settings (Kafka names in comments)."""

    initial_rebalance_delay_ms: int = (
        0  # group.initial.rebalance.delay.ms (Kafka: 3000)
    )
    min_session_timeout_ms: int = 1_000  # group.min.session.timeout.ms (Kafka: 6000)
    max_session_timeout_ms: int = 1_800_000  # group.max.session.timeout.ms
    offsets_retention_ms: int = DEFAULT_RETENTION_MS  # offsets.retention.minutes
    offset_metadata_max_bytes: int = (
        DEFAULT_METADATA_MAX_BYTES  # offset.metadata.max.bytes
    )
    retention_check_interval_ms: int = 600_000  # offsets.retention.check.interval.ms

    @classmethod
    def from_config(cls, config: BrokerConfig) -> GroupConfig:
        """The group settings of the broker config (unset ones keep the defaults)."""
        given = {
            "initial_rebalance_delay_ms": config.initial_rebalance_delay_ms,
            "min_session_timeout_ms": config.min_session_timeout_ms,
            "max_session_timeout_ms": config.max_session_timeout_ms,
            "offsets_retention_ms": None
            if config.offsets_retention_minutes is None
            else config.offsets_retention_minutes * 60_000,
            "offset_metadata_max_bytes": config.offset_metadata_max_bytes,
            "retention_check_interval_ms": config.retention_check_interval_ms,
        }
        return cls(**{k: v for k, v in given.items() if v is not None})


class Durability(Protocol):
    """The broker's group commit (broker.durability.group_commit.GroupCommit) as we use it."""

    async def wait_durable(self, lg: OffsetStore, offset: int, /) -> None: ...


class _OwnFlusher:
    """Group commit for the offset store alone (when no broker group commit is given)."""

    def __init__(self) -> None:
        self._need = anyio.Event()
        self._done = anyio.Event()
        self._error: StorageError | None = None
        self._store: OffsetStore | None = None

    async def wait_durable(self, lg: OffsetStore, offset: int, /) -> None:
        self._store = lg
        while lg.durable_offset < offset:
            done = self._done
            self._need.set()
            await done.wait()
            if self._error is not None:
                raise self._error

    async def run(self) -> None:
        while True:
            await self._need.wait()
            self._need = anyio.Event()
            store = self._store
            if store is not None:
                try:
                    await anyio.to_thread.run_sync(store.sync)
                except StorageError as e:
                    self._error = e
            done, self._done = self._done, anyio.Event()
            done.set()


@dataclass(slots=True, eq=False)
class _Waiter:
    event: anyio.Event = dataclasses.field(default_factory=anyio.Event)
    result: JoinResult | SyncResult | None = None


class GroupService:
    """Consumer groups and committed offsets for one broker; run :meth:`run` in a task group."""

    def __init__(
        self,
        store: OffsetStore,
        *,
        config: GroupConfig | None = None,
        durability: Durability | None = None,
        partition_exists: Callable[[str, int], bool] = lambda t, p: True,
        topic_names: Callable[[], Iterable[str]] | None = None,
        clock: Callable[[], int] = monotonic_ms,
        wall_clock: Callable[[], int] = wall_ms,
        replicated: ReplicatedOffsets | None = None,
    ) -> None:
        self.config = config or GroupConfig()
        self.store = store
        self.replicated = replicated
        self.coordinator = GroupCoordinator(
            initial_rebalance_delay_ms=self.config.initial_rebalance_delay_ms,
            min_session_timeout_ms=self.config.min_session_timeout_ms,
            max_session_timeout_ms=self.config.max_session_timeout_ms,
        )
        self._own_flusher = _OwnFlusher() if durability is None else None
        self._durability: Durability = durability or self._own_flusher  # type: ignore[assignment]
        self._partition_exists = partition_exists
        self._topic_names = topic_names
        self._clock = clock
        self._wall = wall_clock
        self._tokens = itertools.count(1)
        self._waiting: dict[int, _Waiter] = {}
        self._wake = anyio.Event()
        now = clock()
        if replicated is None:
            for group_id in store.groups():
                self.coordinator.ensure_group(group_id, now)

    @property
    def offsets(self) -> OffsetStore:
        """The committed offsets of every group (the durable offset store)."""
        return self.store

    def ensure_group(self, group_id: str, now_ms: int) -> None:
        """Make ``group_id`` known to the coordinator (an empty group when it is
        new), e.g. for offsets committed outside a client's commit."""
        self.coordinator.ensure_group(group_id, now_ms)

    # -- driver ----------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        data_dir: Path,
        config: GroupConfig,
        durability: Durability,
        topics: TopicService,
        *,
        next_producer_id: int,
        replicated: ReplicatedOffsets | None = None,
    ) -> GroupService:
        """Open the offset store in the data dir (worker thread) and log what it found.

        ``next_producer_id`` only completes the ``groups_open`` line; ``replicated``:
        cluster mode's committed offsets in ``__consumer_offsets``.
        """
        store = await anyio.to_thread.run_sync(OffsetStore, data_dir)
        if store.recovered_bytes_dropped:
            log.warning(
                "offsets_recovered", dropped_bytes=store.recovered_bytes_dropped
            )
        for skipped in store.skipped:
            log.warning(
                "offset_entry_skipped",
                line=skipped.line,
                group=skipped.group,
                reason=skipped.reason,
            )
        if store.skipped_count > len(store.skipped):
            log.warning(
                "offset_entries_skipped",
                skipped=store.skipped_count,
                logged=len(store.skipped),
            )

        def exists(topic: str, partition: int) -> bool:
            try:
                return 0 <= partition < topics.logs.topic(topic).partition_count
            except StorageError:
                return False

        service = cls(
            store,
            config=config,
            durability=durability,
            partition_exists=exists,
            topic_names=topics.names,
            replicated=replicated,
        )
        log.info(
            "groups_open", groups=len(store.groups()), next_producer_id=next_producer_id
        )
        return service

    async def close(self) -> None:
        """Close the offset store (clean: compacted)."""
        store = self.store
        with anyio.CancelScope(shield=True):
            try:
                await anyio.to_thread.run_sync(lambda: store.close(clean=True))
            except StorageError as e:
                log.error("offsets_close_failed", error=str(e))

    async def run(self) -> None:
        """Timer, maintenance (and own flusher) tasks; runs until cancelled."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._timer_loop)
            tg.start_soon(self._maintenance_loop)
            if self._own_flusher is not None:
                tg.start_soon(self._own_flusher.run)
            if self.replicated is not None:
                tg.start_soon(self.replicated.run, self._on_loaded)

    # -- cluster mode: ownership of groups ----------------------------------------------

    def refusal(self, group_id: str) -> ErrorCode:
        """Why the group APIs cannot serve ``group_id`` on this broker (NONE: they
        can): in cluster mode NOT_COORDINATOR when another broker coordinates it,
        COORDINATOR_LOAD_IN_PROGRESS while its offsets are being loaded."""
        if self.replicated is None:
            return ErrorCode.NONE
        return self.replicated.refusal(group_id)

    def on_leadership(self, topic: str, partition: int, leads: bool) -> None:
        """This broker became or stopped being a partition's leader (cluster mode):
        an offsets partition's groups are loaded, or unloaded."""
        replicated = self.replicated
        if replicated is None or topic != OFFSETS_TOPIC:
            return
        replicated.on_leadership(partition, leads)
        if leads:
            return
        gone = [g for g in self.coordinator.groups if replicated.maps_to(g, partition)]
        self._apply(self.coordinator.unload(gone))

    def _on_loaded(self, group_ids: list[str]) -> None:
        now = self._clock()
        for group_id in group_ids:
            self.coordinator.ensure_group(group_id, now)

    def _apply(self, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, Reply):
                waiter = self._waiting.pop(effect.token, None)
                if waiter is not None:
                    waiter.result = effect.result
                    waiter.event.set()
            elif isinstance(effect, ScheduleTimer):
                self._wake.set()

    async def _timer_loop(self) -> None:
        while True:
            self._wake = anyio.Event()
            deadline = self.coordinator.next_deadline()
            if deadline is None:
                await self._wake.wait()
            else:
                delay = (deadline - self._clock()) / 1000
                if delay > 0:
                    with anyio.move_on_after(delay):
                        await self._wake.wait()
            self._apply(self.coordinator.tick(self._clock()))

    async def _maintenance_loop(self) -> None:
        interval = self.config.retention_check_interval_ms / 1000
        next_expiry = anyio.current_time() + interval
        while True:
            # Compaction is checked often: at thousands of commits/s the log grows
            # fast; expiry and dropping deleted topics' offsets run every interval.
            await anyio.sleep(min(_COMPACT_CHECK_S, interval))
            if anyio.current_time() >= next_expiry:
                next_expiry = anyio.current_time() + interval
                await self.maintain()
            else:
                await self.compact_if_needed()

    async def compact_if_needed(self) -> None:
        """Rewrite the offset log (worker thread) once it is mostly superseded lines."""
        if self.store.should_compact():
            try:
                await anyio.to_thread.run_sync(self.store.compact)
            except StorageError as e:
                log.error("offset_compaction_failed", error=str(e))

    async def maintain(self) -> None:
        """Expire offsets, drop those of deleted topics, forget unused empty groups."""
        if self.replicated is not None:
            protected, empty_since = expiry_inputs(
                self.coordinator, mono_now_ms=self._clock(), wall_now_ms=self._wall()
            )
            await self.replicated.maintain(
                now_ms=self._wall(),
                retention_ms=self.config.offsets_retention_ms,
                protected=protected,
                empty_since=empty_since,
            )
            self.coordinator.forget_empty(self.replicated.groups())
            return
        protected, empty_since = expiry_inputs(
            self.coordinator, mono_now_ms=self._clock(), wall_now_ms=self._wall()
        )
        try:
            expired = self.store.expire(
                now_ms=self._wall(),
                retention_ms=self.config.offsets_retention_ms,
                protected_groups=protected,
                empty_since_ms=empty_since,
            )
            if expired:
                log.info("offsets_expired", count=len(expired))
            if self._topic_names is not None:
                existing = set(self._topic_names())
                committed_topics = {
                    t for g in self.store.groups() for (t, _) in self.store.fetch(g)
                }
                for topic in committed_topics - existing:
                    self.on_topic_deleted(topic)
        except StorageError as e:
            log.error("offset_maintenance_failed", error=str(e))
        await self.compact_if_needed()
        self.coordinator.forget_empty(self.store.groups())

    async def _wait(self, token: int, waiter: _Waiter) -> JoinResult | SyncResult:
        try:
            await waiter.event.wait()
        finally:
            self._waiting.pop(token, None)
        assert waiter.result is not None
        return waiter.result

    # -- group membership --------------------------------------------------------------

    async def join(self, req: JoinRequest) -> JoinResult:
        """JoinGroup: returns when the rebalance completes (or at once on error)."""
        token = next(self._tokens)
        waiter = self._waiting[token] = _Waiter()
        self._apply(
            self.coordinator.join(dataclasses.replace(req, token=token), self._clock())
        )
        result = await self._wait(token, waiter)
        assert isinstance(result, JoinResult)
        return result

    async def sync(self, req: SyncRequest) -> SyncResult:
        """SyncGroup: returns the member's assignment once the leader sent it."""
        token = next(self._tokens)
        waiter = self._waiting[token] = _Waiter()
        self._apply(
            self.coordinator.sync(dataclasses.replace(req, token=token), self._clock())
        )
        result = await self._wait(token, waiter)
        assert isinstance(result, SyncResult)
        return result

    def heartbeat(
        self,
        group_id: str,
        member_id: str,
        generation_id: int,
        group_instance_id: str | None,
    ) -> ErrorCode:
        """Heartbeat (answered at once)."""
        return self.coordinator.heartbeat(
            group_id, member_id, generation_id, group_instance_id, self._clock()
        )

    def leave(self, group_id: str, members: Iterable[LeavingMember]) -> list[ErrorCode]:
        """LeaveGroup: one error per member, in order."""
        errors, effects = self.coordinator.leave(group_id, members, self._clock())
        self._apply(effects)
        return errors

    def list_groups(self, states: Iterable[str] = ()) -> list[GroupListing]:
        """ListGroups."""
        return self.coordinator.list_groups(states)

    def describe(self, group_id: str) -> GroupDescription:
        """DescribeGroups for one group."""
        return self.coordinator.describe(group_id)

    async def delete_groups(self, group_ids: Iterable[str]) -> dict[str, ErrorCode]:
        """DeleteGroups: Empty groups and their offsets go; answered once durable."""
        out: dict[str, ErrorCode] = {}
        seq = 0
        replicated = self.replicated
        for group_id in group_ids:
            code = self.coordinator.delete_group(group_id)
            if replicated is not None:
                if code == ErrorCode.GROUP_ID_NOT_FOUND and replicated.fetch(group_id):
                    code = ErrorCode.NONE  # offsets only (a simple consumer's)
                if code == ErrorCode.NONE:
                    code = await replicated.delete_group(group_id)
                    log.info("group_deleted", group_id=group_id)
                out[group_id] = code
                continue
            if code == ErrorCode.NONE:
                try:
                    seq = max(seq, self.store.delete_group(group_id))
                except StorageError:
                    code = ErrorCode.COORDINATOR_NOT_AVAILABLE
                log.info("group_deleted", group_id=group_id)
            out[group_id] = code
        if seq:
            try:
                await self._durability.wait_durable(self.store, seq)
            except StorageError:
                return {
                    g: ErrorCode.COORDINATOR_NOT_AVAILABLE if c == ErrorCode.NONE else c
                    for g, c in out.items()
                }
        return out

    # -- offsets -----------------------------------------------------------------------

    async def delete_offsets(
        self, group_id: str, partitions: Iterable[tuple[str, int]]
    ) -> tuple[ErrorCode, dict[tuple[str, int], ErrorCode]]:
        """OffsetDelete: (top-level error, per-partition errors); the offsets the
        rules allow (:mod:`broker.groups.offset_delete`) go, answered once durable
        (cluster mode: once replicated)."""
        committed = self._committed(group_id)
        top, codes = plan_offset_delete(
            self.coordinator.groups.get(group_id), bool(committed), partitions
        )
        doomed = [k for k, c in codes.items() if c == ErrorCode.NONE and k in committed]
        if top != ErrorCode.NONE or not doomed:
            return top, codes
        if self.replicated is not None:
            code = await self.replicated.delete_offsets(group_id, doomed)
            if code != ErrorCode.NONE:
                return code, {}
        else:
            try:
                seq = self.store.delete_offsets(group_id, doomed)
                await self._durability.wait_durable(self.store, seq)
            except StorageError as e:
                log.error("offset_delete_failed", group_id=group_id, error=str(e))
                return ErrorCode.COORDINATOR_NOT_AVAILABLE, {}
        log.info("offsets_deleted", group_id=group_id, count=len(doomed))
        return top, codes

    async def commit_offsets(
        self,
        group_id: str,
        member_id: str,
        generation_id: int,
        group_instance_id: str | None,
        partitions: list[CommitPartition],
        *,
        retention_time_ms: int = -1,
    ) -> dict[tuple[str, int], ErrorCode]:
        """OffsetCommit: per-partition errors, answered once the offsets are fsynced."""
        if not group_id:
            return {
                (p.topic, p.partition): ErrorCode.INVALID_GROUP_ID for p in partitions
            }
        check = self.coordinator.validate_commit(
            group_id, member_id, generation_id, group_instance_id, self._clock()
        )
        if check != ErrorCode.NONE:
            return {(p.topic, p.partition): check for p in partitions}
        accepted, errors = plan_commit(
            partitions,
            now_ms=self._wall(),
            retention_time_ms=retention_time_ms,
            partition_exists=self._partition_exists,
            metadata_max_bytes=self.config.offset_metadata_max_bytes,
        )
        if not accepted:
            return errors
        if self.replicated is not None:
            code = await self.replicated.commit(group_id, accepted)
            for c in accepted:
                errors[(c.topic, c.partition)] = code
            return errors
        try:
            seq = self.store.commit(group_id, accepted)
            await self._durability.wait_durable(self.store, seq)
        except StorageError as e:
            log.error("offset_commit_failed", group_id=group_id, error=str(e))
            for c in accepted:
                errors[(c.topic, c.partition)] = ErrorCode.COORDINATOR_NOT_AVAILABLE
        return errors

    def fetch_offsets(
        self, group_id: str, partitions: Iterable[tuple[str, int]] | None
    ) -> list[FetchedOffset]:
        """OffsetFetch: listed partitions (-1 where none) or every committed one."""
        wanted = None if partitions is None else list(partitions)
        return fetch_answer(self._committed(group_id, wanted), wanted)

    def _committed(
        self, group_id: str, wanted: list[tuple[str, int]] | None = None
    ) -> Mapping[tuple[str, int], CommittedOffset]:
        if self.replicated is not None:
            return self.replicated.fetch(group_id, wanted)
        return self.store.fetch(group_id, wanted)

    def _offset_groups(self) -> list[str]:
        if self.replicated is not None:
            return self.replicated.groups()
        return self.store.groups()

    def on_topic_deleted(self, topic: str) -> None:
        """Drop every group's offsets of a deleted topic."""
        if self.replicated is not None:
            dropped = self.replicated.drop_topic(topic)
            if dropped:
                log.info("offsets_dropped", topic=topic, count=dropped)
            return
        try:
            dropped = self.store.delete_topic(topic)
        except StorageError as e:
            log.error("offset_drop_failed", topic=topic, error=str(e))
            return
        if dropped:
            log.info("offsets_dropped", topic=topic, count=dropped)

    # -- transactions ------------------------------------------------------------------

    def complete_txn_offsets(
        self,
        producer_id: int,
        producer_epoch: int,
        groups: Collection[str],
        commit: bool,
    ) -> None:
        """The transaction coordinator's hook: the transaction of ``producer_id``
        (at ``producer_epoch``) ended, committed or aborted, and its offsets
        committed with TxnOffsetCommit in ``groups`` become committed offsets or are
        dropped (what a COMMIT/ABORT marker in ``__consumer_offsets`` does in Kafka).

        Called once the markers of the transaction's partitions are written, before
        the coordinator writes CompleteCommit/CompleteAbort, and again after a
        restart for a transaction that was prepared but not completed (it must be
        idempotent). TxnOffsetCommit is not served yet, so no offsets are pending
        and there is nothing to complete here.
        """
        del producer_id, producer_epoch, groups, commit

    # -- admin -------------------------------------------------------------------------

    def admin_groups(self) -> list[dict[str, object]]:
        """``GET /v1/groups``: every group with its state and member count."""
        return [
            {
                "group_id": g.group_id,
                "state": g.state.value,
                "protocol_type": g.protocol_type,
                "members": len(self.coordinator.describe(g.group_id).members),
            }
            for g in sorted(self.list_groups(), key=lambda g: g.group_id)
        ]

    def committed_offsets(self) -> Iterator[tuple[str, str, int, int]]:
        """(group, topic, partition, offset) of every committed offset, sorted."""
        for group_id in sorted(self._offset_groups()):
            for (topic, partition), c in sorted(self._committed(group_id).items()):
                if c.offset >= 0:
                    yield group_id, topic, partition, c.offset

    def admin_group(
        self, group_id: str, log_end: Callable[[str, int], int | None]
    ) -> dict[str, object] | None:
        """``GET /v1/groups/{id}``: state, members, assignments, offsets and lag."""
        d = self.describe(group_id)
        committed = self._committed(group_id)
        if d.state is GroupState.DEAD and not committed:
            return None
        offsets = []
        for (topic, partition), c in sorted(committed.items()):
            end = log_end(topic, partition)
            offsets.append(
                {
                    "topic": topic,
                    "partition": partition,
                    "offset": c.offset,
                    "metadata": c.metadata,
                    "log_end_offset": end,
                    "lag": None if end is None else max(end - c.offset, 0),
                }
            )
        return {
            "group_id": group_id,
            "state": d.state.value,
            "protocol_type": d.protocol_type,
            "protocol": d.protocol_name,
            "generation_id": d.generation_id,
            "leader": d.leader_id,
            "members": [
                {
                    "member_id": m.member_id,
                    "group_instance_id": m.group_instance_id,
                    "client_id": m.client_id,
                    "client_host": m.client_host,
                    "assignment_bytes": len(m.assignment),
                    "assignment": decode_consumer_assignment(m.assignment),
                }
                for m in d.members
            ],
            "offsets": offsets,
        }
