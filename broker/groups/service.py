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

A group's membership is stored whenever a generation completes or the group
empties, and reloaded on open (cluster mode: with the offsets partition), so
members that heartbeat within their session carry on in the same generation: the
mixin :class:`~broker.groups.membership.StoredMembership`.

Transactional offsets (TxnOffsetCommit, pending until the producer's transaction
ends: ``complete_txn_offsets``) are the mixin :class:`~broker.groups.txn_service
.TxnOffsetCommits`; OffsetFetch's ``require_stable`` is answered here.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import structlog

from broker.cluster.view import OFFSETS_TOPIC
from broker.groups.admin_view import admin_group, admin_groups
from broker.groups.coordinator import GroupCoordinator
from broker.groups.flusher import Durability, OwnFlusher
from broker.groups.membership import StoredMembership
from broker.groups.model import (
    Effect,
    GroupDescription,
    GroupListing,
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
    CommitPartition,
    FetchedOffset,
    expiry_inputs,
    fetch_answer,
    plan_commit,
)
from broker.groups.settings import GroupConfig
from broker.groups.txn_offsets import stable_rows
from broker.groups.txn_service import TxnOffsetCommits
from broker.topics.service import TopicService
from protocol.error_codes import ErrorCode
from protocol.group_metadata_records import GroupMetadataValue
from storage.errors import StorageError
from storage.group_meta import StoredGroup
from storage.offset_store import CommittedOffset, OffsetStore

if TYPE_CHECKING:
    from broker.groups.replicated import ReplicatedOffsets

__all__ = ["Durability", "GroupConfig", "GroupService", "monotonic_ms", "wall_ms"]

log = structlog.get_logger("broker.groups")

_COMPACT_CHECK_S = 10.0


def monotonic_ms() -> int:
    """The coordinator's clock."""
    return time.monotonic_ns() // 1_000_000


def wall_ms() -> int:
    """Wall-clock ms (commit timestamps, offset expiry)."""
    return time.time_ns() // 1_000_000


@dataclass(slots=True, eq=False)
class _Waiter:
    event: anyio.Event = dataclasses.field(default_factory=anyio.Event)
    result: JoinResult | SyncResult | None = None


class GroupService(StoredMembership, TxnOffsetCommits):
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
        self._own_flusher = OwnFlusher() if durability is None else None
        self._durability: Durability = durability or self._own_flusher  # type: ignore[assignment]
        self._partition_exists = partition_exists
        self._topic_names = topic_names
        self._clock = clock
        self._wall = wall_clock
        self._tokens = itertools.count(1)
        self._waiting: dict[int, _Waiter] = {}
        self._wake = anyio.Event()
        self._group_seq = 0
        self._unstored: dict[str, StoredGroup] = {}
        self._store_wake = anyio.Event()
        now = clock()
        if replicated is None:
            self._load_stored(store.stored_groups())
            for group_id in {*store.groups(), *store.txn_groups()}:
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
            "groups_open",
            groups=len(store.groups()),
            members_loaded=(
                0
                if replicated is not None
                else sum(len(g.members) for g in store.stored_groups())
            ),
            next_producer_id=next_producer_id,
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
                tg.start_soon(self._store_loop)

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

    def _on_loaded(
        self, group_ids: list[str], metadata: dict[str, GroupMetadataValue]
    ) -> None:
        self._load_records(metadata)
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
        if self.coordinator.changed:
            self._store_changed()

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
            self.coordinator.forget_empty(
                [*self.replicated.groups(), *self.replicated.txn_groups()]
            )
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
                } | {
                    t
                    for g in self.store.txn_groups()
                    for (t, _) in self.store.pending(g)
                }
                for topic in committed_topics - existing:
                    self.on_topic_deleted(topic)
        except StorageError as e:
            log.error("offset_maintenance_failed", error=str(e))
        await self.compact_if_needed()
        gone = self.coordinator.forget_empty(
            [*self.store.groups(), *self.store.txn_groups()]
        )
        self._forget_stored(gone)

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
        if result.error == ErrorCode.NONE:
            # The new generation's membership is durable before anyone acts on it
            # (Kafka answers SyncGroup once storeGroup's append completed).
            code = await self._stored(req.group_id)
            if code != ErrorCode.NONE:
                return SyncResult(error=code)
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
        self,
        group_id: str,
        partitions: Iterable[tuple[str, int]] | None,
        *,
        require_stable: bool = False,
    ) -> list[FetchedOffset]:
        """OffsetFetch: listed partitions (-1 where none) or every committed one;
        ``require_stable`` (v7+): UNSTABLE_OFFSET_COMMIT where a transactional
        offset is pending."""
        wanted = None if partitions is None else list(partitions)
        rows = fetch_answer(self._committed(group_id, wanted), wanted)
        if not require_stable:
            return rows
        pending = (
            self.replicated.pending(group_id)
            if self.replicated is not None
            else self.store.pending(group_id)
        )
        return stable_rows(rows, pending) if pending else rows

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

    # -- admin -------------------------------------------------------------------------

    def admin_groups(self) -> list[dict[str, object]]:
        """``GET /v1/groups``: every group with its state and member count."""
        return admin_groups(self.coordinator)

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
        return admin_group(
            self.coordinator, group_id, self._committed(group_id), log_end
        )
