"""Applying validated snapshots to partitions: the part of the watcher that writes.

:class:`SnapshotApplier` resolves a snapshot's topic (creating it with the
snapshot's name, partition count and id when missing) and applies ready snapshots
partition by partition in ancestor / last_offset order. Applying holds the
partition's append gate (broker.snapshots.gate), so produce requests to that
partition queue behind the ingest. A small remainder is appended on the loop thread;
a large one is staged by a worker process (broker.snapshots.workers) into segments
beside the log, throttled by ``snapshot.ingest.bytes.per.sec``, and adopted by rename
(PartitionLog.adopt). Long polls on the partition are woken at once, and the
committed offsets stored beside a snapshot are restored where the group has no newer
commit (:func:`restore_group_offsets`).

Every status it decides is handed to the service's ``record`` callback (which logs
``snapshot_status`` and persists the ingest state).

Cluster mode (the topic service has the watched cache): a snapshot's topic is looked
up in the cluster; a missing one is created by the controller (CreateTopics through
etcd, the broker's default replication factor, the snapshot's partition count, id
and topic configs) and placed like any topic. Only the partition's leader ingests:
elsewhere :meth:`SnapshotApplier.resolve` answers a :class:`Handover` and the
service streams the verified snapshot to the leader (broker.snapshots.handover).
The leader stamps its current leader epoch on every ingested batch (outside the
batch CRC, as a Kafka leader does on append) and appends only at its log end, so
the followers, whose logs never reach past the leader's, fetch the batches by
ordinary replication and truncate on leader epochs as for produced data. Restored
group offsets go through the group's coordinator (the replicated offsets store).
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import anyio
import structlog

from broker.cluster.cache import MetadataCache
from broker.cluster.model import NO_LEADER, CreateTopicRequest
from broker.disk.guard import DiskGuard
from broker.durability.acks import Durability
from broker.groups.service import GroupService
from broker.producers.service import ProducerService
from broker.snapshots.gate import AppendGate
from broker.snapshots.group_restore import (
    restore_group_offsets,
    restore_through_coordinators,
)
from broker.snapshots.metrics import SnapshotMetrics
from broker.snapshots.settings import SnapshotSettings
from broker.snapshots.workers import run_stage_worker
from broker.topics.service import TopicService
from protocol.error_codes import ErrorCode
from storage.errors import PartitionLimit, StorageError, TopicExists, UnknownTopic
from storage.log_manager import TopicMeta
from storage.partition_log import PartitionLog
from storage.snapshot import (
    Plan,
    Snapshot,
    Status,
    aborted_of,
    apply_order,
    plan_apply,
    read_batches,
)
from storage.snapshot_groups import read_group_offsets
from storage.snapshot_ingest import Candidate, Entry
from storage.snapshot_meta import UUID_RE, SnapshotError
from storage.snapshot_stage import STAGING_DIR, StageJob, stamp_leader_epoch

log = structlog.get_logger("broker.snapshots")

_INLINE_BYTES = 8 * 1024 * 1024  # appended on the loop thread in one call below this
_PLAN_ATTEMPTS = 5
_REPLICATED_TIMEOUT_S = 30.0  # for the high watermark to cover an ingest


@dataclass(frozen=True, slots=True)
class Handover:
    """A snapshot whose partition another broker leads: hand it to ``leader``."""

    topic: str
    leader: int


class SnapshotApplier:
    """Resolves and applies ready snapshots for one broker's snapshot service."""

    def __init__(
        self,
        *,
        topics: TopicService,
        durability: Durability,
        gate: AppendGate,
        producers: ProducerService,
        groups: GroupService,
        disk: DiskGuard | None,
        settings: SnapshotSettings,
        metrics: SnapshotMetrics,
        data_dir: str,
        root: str,
        record: Callable[[str, Entry], bool],
        settled: Callable[[str], None],
        admin_token: str | None = None,
    ) -> None:
        """``record(rel, entry)`` sets a snapshot's status (True if it changed);
        ``settled(rel)`` says its validated form is no longer needed."""
        self.topics = topics
        self.durability = durability
        self.gate = gate
        self.producers = producers
        self.groups = groups
        self.disk = disk
        self.settings = settings
        self.metrics = metrics
        self.data_dir = data_dir
        self.root = root
        self._record = record
        self._settled = settled
        self.admin_token = admin_token  # for peers' admin APIs (cluster mode)

    async def resolve(
        self, cand: Candidate, snap: Snapshot
    ) -> TopicMeta | Entry | Handover:
        """The snapshot's topic, created when missing; an Entry when it cannot be;
        a Handover when another broker leads the partition (cluster mode)."""
        meta = snap.meta
        logs = self.topics.logs
        ids = [meta.topic_id] if meta.topic_id else []
        names = [meta.topic] if meta.topic else []
        if UUID_RE.match(cand.topic_dir):
            ids.append(cand.topic_dir.lower())
        else:
            names.append(cand.topic_dir)
        cache = self.topics.cache
        if cache is not None:
            return await self._resolve_in_cluster(cache, snap, ids, names)
        topic: TopicMeta | None = None
        for tid in ids:
            with contextlib.suppress(UnknownTopic):
                topic = logs.topic_by_id(uuid.UUID(tid))
                break
        if topic is None:
            for name in names:
                with contextlib.suppress(UnknownTopic):
                    topic = logs.topic(name)
                    break
        if topic is None:
            if not names:
                return Entry(
                    status=Status.WAITING,
                    reason="unknown-topic: no topic with that id and no name",
                )
            count = max(meta.partition_count or 1, meta.partition + 1)
            try:
                topic = await self.topics.create_topic(
                    names[0],
                    count,
                    dict(meta.topic_configs),
                    topic_id=uuid.UUID(ids[0]) if ids else None,
                    reason="snapshot",
                )
            except TopicExists:
                return Entry(status=Status.WAITING, reason="topic is being created")
            except PartitionLimit as exc:
                # Refused before any file was made; the snapshot stays as it is.
                return Entry(status=Status.INVALID, reason=f"partition-limit: {exc}")
            except StorageError as exc:
                return Entry(
                    status=Status.INVALID, reason=f"topic-create-failed: {exc}"
                )
        if meta.partition >= topic.partition_count:
            return Entry(
                status=Status.WAITING,
                reason=f"unknown-partition: {topic.name} has {topic.partition_count} partitions",
            )
        # cluster mode: only the partition's leader takes a snapshot (a follower's
        # log would diverge from its leader's); always true on a single node
        state = self.topics.state(topic, logs.partition(topic.name, meta.partition))
        if not state.is_local_leader:
            return Entry(
                status=Status.WAITING,
                reason=f"not-leader: broker {state.leader_id} leads "
                f"{topic.name}/{meta.partition}",
            )
        return topic

    async def _resolve_in_cluster(
        self,
        cache: MetadataCache,
        snap: Snapshot,
        ids: list[str],
        names: list[str],
    ) -> TopicMeta | Entry | Handover:
        meta = snap.meta
        record = next(
            (t for t in cache.topics() if str(t.topic_id) in ids),
            None,
        ) or next((r for n in names if (r := cache.topic(n)) is not None), None)
        if record is None:
            if not names:
                return Entry(
                    status=Status.WAITING,
                    reason="unknown-topic: no topic with that id and no name",
                )
            made = await self._create_in_cluster(snap, names[0], ids)
            if made is not None:
                return made
            record = cache.topic(names[0])
            if record is None:
                return Entry(status=Status.WAITING, reason="topic is being created")
        name = record.name
        if meta.partition >= record.partitions:
            return Entry(
                status=Status.WAITING,
                reason=f"unknown-partition: {name} has {record.partitions} partitions",
            )
        state = cache.partition(name, meta.partition)
        if state is None or state.leader == NO_LEADER:
            return Entry(
                status=Status.WAITING,
                reason=f"no-leader: {name}/{meta.partition} has no leader",
            )
        if state.leader != cache.node_id:
            return Handover(topic=name, leader=state.leader)
        topic = self.topics.find(name)
        if topic is None:  # the replica manager has not made the local log yet
            return Entry(status=Status.WAITING, reason="topic is being created")
        return topic

    async def _create_in_cluster(
        self, snap: Snapshot, name: str, ids: list[str]
    ) -> Entry | None:
        """Ask the controller for the snapshot's topic (default replication
        factor); None once the cache shows it, else why not."""
        cluster = self.topics.cluster
        assert cluster is not None
        meta = snap.meta
        count = max(meta.partition_count or 1, meta.partition + 1)
        [error] = await cluster.create_topics(
            [
                CreateTopicRequest(
                    name=name,
                    partitions=count,
                    replication_factor=-1,
                    configs=dict(meta.topic_configs),
                    topic_id=uuid.UUID(ids[0]) if ids else None,
                )
            ]
        )
        if error is None:
            log.info("topic_created", topic=name, partitions=count, reason="snapshot")
            return None
        if error.code == ErrorCode.TOPIC_ALREADY_EXISTS:
            return Entry(status=Status.WAITING, reason="topic is being created")
        return Entry(
            status=Status.INVALID,
            reason=f"topic-create-failed: {error.message or error.code}",
        )

    async def apply_partition(
        self, topic: str, partition: int, snaps: list[tuple[str, str, Snapshot]]
    ) -> bool:
        plog = self.topics.logs.partition(topic, partition)
        fps = {rel: fp for rel, fp, _ in snaps}
        rel_of = {id(s): rel for rel, _, s in snaps}
        pending = apply_order([s for _, _, s in snaps])
        changed = False
        epoch: int | None = None
        applied: list[tuple[str, Snapshot]] = []  # cluster mode: to confirm
        if self.topics.cache is not None:
            state = self.topics.state(self.topics.logs.topic(topic), plog)
            if not state.is_local_leader:  # leadership moved since resolve
                for rel, fp, snap in snaps:
                    reason = f"not-leader: broker {state.leader_id} leads {topic}/{partition}"
                    entry = self._entry(Status.WAITING, reason, fp, snap, topic)
                    changed |= self._record(rel, entry)
                return changed
            epoch = state.leader_epoch
        async with self.gate.hold(plog):
            progress = True
            while progress and pending:
                progress = False
                for snap in list(pending):
                    rel = rel_of[id(snap)]
                    started = time.perf_counter()
                    try:
                        plan, reason, written = await self._apply_one(plog, snap, epoch)
                    except (StorageError, OSError) as exc:
                        entry = self._entry(
                            Status.WAITING,
                            f"apply failed: {exc}",
                            fps[rel],
                            snap,
                            topic,
                        )
                        changed |= self._record(rel, entry)
                        log.error("snapshot_apply_failed", snapshot=rel, error=str(exc))
                        pending.remove(snap)
                        continue
                    if plan is Status.WAITING_FOR_ANCESTOR:
                        changed |= self._record(
                            rel, self._entry(plan, reason, fps[rel], snap, topic)
                        )
                        continue
                    pending.remove(snap)
                    progress = True
                    entry = self._entry(plan, reason, fps[rel], snap, topic)
                    if plan is Status.APPLIED:
                        entry.bytes_applied = written
                        self.metrics.ingested += 1
                        self.metrics.bytes_ingested += written
                        self.metrics.duration.observe(time.perf_counter() - started)
                        self._after_apply(plog, topic)
                        if epoch is None:
                            await self._restore_group_offsets(snap, topic, partition)
                        else:
                            applied.append((rel, snap))
                    self._settled(rel)
                    changed |= self._record(rel, entry)
        if applied:
            changed |= await self._after_replicated(topic, plog, applied, fps)
        return changed

    async def _after_replicated(
        self,
        topic: str,
        plog: PartitionLog,
        applied: list[tuple[str, Snapshot]],
        fps: dict[str, str],
    ) -> bool:
        """Cluster mode: wait (the append gate released) until the partition's high
        watermark covers what was ingested, as acks=all would, then restore the
        snapshots' group offsets. A leader that lost the partition meanwhile may
        have had the batches truncated away by its successor: the snapshots go back
        to ``waiting`` and the next scan plans them again (``already-present`` if the
        batches survived, otherwise handed to the new leader)."""
        problem = await self._await_replicated(topic, plog, plog.log_end_offset)
        changed = False
        for rel, snap in applied:
            if problem is not None:
                reason = f"not yet replicated: {problem}"
                entry = self._entry(Status.WAITING, reason, fps[rel], snap, topic)
                changed |= self._record(rel, entry)
                continue
            await self._restore_group_offsets(snap, topic, plog.partition)
        return changed

    async def _await_replicated(
        self, topic: str, plog: PartitionLog, target: int
    ) -> str | None:
        """None once the high watermark reaches ``target``, else why not (this
        broker stopped leading, or the followers did not catch up in time)."""
        meta = self.topics.find(topic)
        if meta is None:
            return "the topic is gone"
        waiters = self.durability.waiters
        with anyio.move_on_after(_REPLICATED_TIMEOUT_S):
            while True:
                hw = self.topics.replicated_high_watermark(meta, plog)
                if hw is None:
                    return "this broker no longer leads the partition"
                if hw >= target:
                    return None
                event = anyio.Event()
                waiters.register([plog], event)
                try:
                    hw = self.topics.replicated_high_watermark(meta, plog)
                    if hw is not None and hw < target:
                        if plog.durable_offset < target:
                            self.durability.commit.mark_dirty(plog)
                        await event.wait()
                finally:
                    waiters.unregister([plog], event)
        return f"the followers did not catch up in {_REPLICATED_TIMEOUT_S:g} s"

    async def _apply_one(
        self, plog: PartitionLog, snap: Snapshot, epoch: int | None
    ) -> tuple[Status, str, int]:
        """Plan, then append. A small remainder is read in a worker thread and
        appended on the event-loop thread, where produce appends too, after checking
        the log did not move since the plan; a large one is appended chunk by chunk
        in a worker thread while the append gate holds producers back. ``epoch``
        (cluster mode): the leader epoch stamped on every appended batch."""
        for _ in range(_PLAN_ATTEMPTS):
            plan = await anyio.to_thread.run_sync(plan_apply, snap, plog, self.root)
            if plan.status is not Status.APPLYING:
                return plan.status, plan.reason, 0
            data = await anyio.to_thread.run_sync(
                read_batches, snap, plan.from_offset, self.root, _INLINE_BYTES
            )
            if data is None:
                written = await self._stage_and_adopt(plog, snap, plan, epoch)
                return Status.APPLIED, "", written
            # the snapshot's aborted transactions, indexed as they are
            aborted = await anyio.to_thread.run_sync(aborted_of, snap, self.root)
            if plog.log_end_offset != plan.log_end:
                continue  # a producer appended meanwhile: plan again
            if plan.reset_start:
                plog.reset_start(plan.from_offset)
            if data:
                plog.append_verbatim(
                    data if epoch is None else stamp_leader_epoch(data, epoch),
                    aborted=aborted,
                )
            await anyio.to_thread.run_sync(plog.sync)
            if aborted:
                # the snapshot's index entries are durable: a restart keeps them
                await anyio.to_thread.run_sync(plog.checkpoint)
            return Status.APPLIED, "", len(data)
        return Status.WAITING, "the log kept moving during the apply", 0

    async def _stage_and_adopt(
        self, plog: PartitionLog, snap: Snapshot, plan: Plan, epoch: int | None
    ) -> int:
        """Stage the plan's batches in a worker process, then adopt the segments.

        The append gate is held (no producer moves the log end), so the staged
        segments follow on from it when they are adopted.
        """
        guard = self.disk
        if guard is not None and not guard.admit(snap.stored_bytes):
            # the worker writes past the guarded FileOps: the floor is checked here
            raise StorageError(
                f"not enough disk space for {snap.stored_bytes} bytes above the "
                f"free-space floor of {guard.min_free_bytes}"
            )
        if plan.reset_start:
            await anyio.to_thread.run_sync(plog.reset_start, plan.from_offset)
        staging = os.path.join(
            self.data_dir,
            STAGING_DIR,
            f"{plog.topic}-{plog.partition}-{uuid.uuid4().hex}",
        )
        job = StageJob.for_plan(
            snap,
            plan,
            root=self.root,
            staging_dir=staging,
            topic=plog.topic,
            config=plog.config,
            bytes_per_s=self.settings.ingest_bytes_per_s,
            leader_epoch=epoch,
            aborted=await anyio.to_thread.run_sync(aborted_of, snap, self.root),
        )
        try:
            written = (await run_stage_worker(job)).written
            await anyio.to_thread.run_sync(plog.adopt, staging)
            await anyio.to_thread.run_sync(plog.sync)
            # the adopted segments are durable: a restart need not re-scan them
            await anyio.to_thread.run_sync(plog.checkpoint)
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(
                    functools.partial(shutil.rmtree, staging, ignore_errors=True)
                )
        return written

    def _entry(
        self, status: Status, reason: str, fp: str, snap: Snapshot, topic: str
    ) -> Entry:
        return Entry(
            status=status,
            reason=reason,
            fingerprint=fp,
            topic=topic,
            partition=snap.meta.partition,
            snapshot_id=snap.meta.snapshot_id,
            base_offset=snap.base_offset,
            last_offset=snap.last_offset,
            size=snap.stored_bytes,
        )

    def _after_apply(self, plog: PartitionLog, topic: str) -> None:
        try:
            write_caching = self.topics.logs.topic(topic).config.write_caching
        except UnknownTopic:
            return
        self.durability.after_append(plog, write_caching)
        self.durability.waiters.notify(plog)
        # the ingested batches carry producer ids and sequences the idempotence state
        # has not seen: drop it so the next idempotent produce rebuilds it from the log
        self.producers.forget(plog)

    async def _restore_group_offsets(
        self, snap: Snapshot, topic: str, partition: int
    ) -> None:
        if snap.meta.group_offsets is None:
            return
        try:
            # checked when the snapshot was validated; read again (and checked
            # again): the file may have changed since
            offsets = await anyio.to_thread.run_sync(
                read_group_offsets, snap.path, self.root, snap.meta
            )
        except SnapshotError as exc:
            log.warning(
                "snapshot_group_offsets_invalid", snapshot=snap.path, error=str(exc)
            )
            return
        cache = self.topics.cache
        if cache is not None:
            await restore_through_coordinators(
                self.groups, cache, topic, partition, offsets, token=self.admin_token
            )
            return
        await restore_group_offsets(self.groups, topic, partition, offsets)


__all__ = ["Handover", "SnapshotApplier", "restore_group_offsets"]
