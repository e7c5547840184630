"""The replica manager: this broker's local logs made to match the cluster's state.

Every broker keeps a local log for every partition of every topic in the watched
cache (:class:`~broker.cluster.cache.MetadataCache`), created with the cluster's
topic id and configs: empty where it hosts no replica, so a reassignment or a
replica fetcher only has to fill it. :class:`ReplicaManager` waits on
``cache.wait_changed()`` and, after every change, creates the topics it lacks,
grows the ones with fewer partitions than the cluster's, and deletes the local
topics gone from the cluster (failing the acks=all waits and waking the long polls
on them, as DeleteTopics does on a single node). File work runs in worker threads
(through :class:`~broker.topics.service.TopicService`'s ``*_local`` methods).

From the same diffs it logs ``leader_changed`` (topic, partition, leader,
leader_epoch, reason) when this broker becomes or stops being a partition's leader
(counted in ``ailurus_leader_changes_total``), and wakes the long-polling fetches of the partitions whose leadership moved away:
they answer NOT_LEADER_OR_FOLLOWER at once instead of at their deadline. A
partition it comes to lead starts from the highest high watermark it knows, never
above its log end: its old leader's last answer to this broker's fetches, or the
high-watermark checkpoint (:mod:`broker.replication.checkpoint`, read before the
first reconcile, written every 5 s when changed and at stop). Its idempotent
producers' state is current, kept by the replica fetcher as it appends; should it
not be tracked, it is rebuilt in a worker thread while the partition's idempotent
batches are refused retriably. A partition it stops leading forgets its followers. ``on_leadership`` hears of every
change (the group service loads and unloads the committed offsets of
``__consumer_offsets`` partitions).

It also runs the data path between brokers: the replica fetchers
(:class:`~broker.replication.fetchers.FetcherPool`, planned again after every
change: one fetcher per leader this broker follows) and the leader's side of the
ISR (:class:`~broker.replication.isr.IsrManager`).

At start, what a local topic the cluster does not know means depends on whether
this data dir has been a member of the cluster before (``cluster_member.json`` in
the data dir, written once the first join registered everything):

- first join (a single node's data dir, or a new one): the topics are registered
  with the controller under their own topic id, hosted on this broker, so nothing
  on disk is lost. A topic whose registration is refused or times out is kept
  (never deleted) and logged as ``topic_register_failed``, and the membership is
  not recorded (the next start tries again);
- a member coming back: the topic was deleted while this broker was away, and its
  local logs are deleted like any other topic gone from the cluster (Kafka's stray
  logs); registering it would bring a deleted topic back.

A local topic whose id differs from the cluster's topic of the same name is left
alone and logged as ``topic_id_mismatch`` (Kafka's InconsistentTopicIdException).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import anyio.abc
import structlog

from broker.cluster.cache import MetadataCache
from broker.cluster.model import NO_LEADER, CreateTopicRequest, TopicRecord
from broker.cluster.requests import ClusterRequests
from broker.durability.acks import Durability
from broker.metrics import Metrics
from broker.replication.isr import IsrManager
from broker.topics.service import TopicService
from storage.errors import LogClosed, StorageError
from storage.log_manager import TopicMeta
from storage.partition_log import PartitionLog

if TYPE_CHECKING:
    from broker.replication.fetch_round import FetcherSettings
    from broker.replication.follower_log import ProducerStates

log = structlog.get_logger("broker.replication")

MEMBERSHIP_FILE = "cluster_member.json"

# What else forgets a deleted topic (committed offsets, producer state): given the
# topic's name and its closed partition logs. Composed by the server.
OnDeleted = Callable[[str, Sequence[PartitionLog]], None]
# What else follows this broker's leaderships (committed offsets: an offsets
# partition's groups are loaded or unloaded): topic, partition, and whether this
# broker now leads it; every change, start-up included. Composed by the server.
OnLeadership = Callable[[str, int, bool], None]


class ReplicaManager:
    """Makes the local topics match the cache, and follows this broker's leaderships."""

    def __init__(
        self,
        cluster: ClusterRequests,
        topics: TopicService,
        durability: Durability,
        metrics: Metrics,
        on_deleted: OnDeleted,
        *,
        producers: ProducerStates | None = None,
        on_leadership: OnLeadership | None = None,
        listener: str | None = None,
        lag_time_max_ms: int = 30_000,
        fetcher_settings: FetcherSettings | None = None,
    ) -> None:
        self.cluster = cluster
        self.producers = producers
        self.on_leadership = on_leadership
        self.cache: MetadataCache = cluster.cache
        self.topics = topics
        self.durability = durability
        self.metrics = metrics
        self.on_deleted = on_deleted
        self.node_id = self.cache.node_id
        # (topic, partition) -> (leader, leader epoch, ISR) as last acted on
        self._leaders: dict[tuple[str, int], tuple[int, int, tuple[int, ...]]] = {}
        self._kept: set[str] = set()  # local topics the cluster refused to register
        self.applied = 0  # the cache version the local logs match
        self._applied_changed = anyio.Event()
        # imported here: the replica fetcher's message schemas and the checkpoint
        # load in cluster mode only (a single node starts without them)
        from broker.replication.checkpoint import HighWatermarkCheckpointer
        from broker.replication.fetchers import FetcherPool

        self.fetchers = FetcherPool(
            cache=self.cache,
            node_id=self.node_id,
            listener=listener or topics.config.listeners[0].name,
            topics=topics,
            commit=durability.commit,
            settings=fetcher_settings,
            producers=producers,
        )
        self.checkpoint = HighWatermarkCheckpointer(topics, self.fetchers)
        self._tg: anyio.abc.TaskGroup | None = None
        self.isr = IsrManager(cluster, topics, lag_time_max_ms=lag_time_max_ms)

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Register unknown local topics, reconcile once (then started), and again
        after every change of the cache; run the replica fetchers, the ISR
        manager and the high-watermark checkpoint; until cancelled (the
        checkpoint is written once more then)."""
        await self.checkpoint.load()
        async with anyio.create_task_group() as tg:
            self._tg = tg
            try:
                await tg.start(self.fetchers.run)
                tg.start_soon(self.isr.run)
                tg.start_soon(self.checkpoint.run)
                await self._run(task_status)
            finally:
                self._tg = None

    async def _run(self, task_status: anyio.abc.TaskStatus[None]) -> None:
        marker = Path(self.topics.config.data_dir) / MEMBERSHIP_FILE
        member = await anyio.to_thread.run_sync(_read_member, marker)
        joining = member != self.cache.cluster_id
        if joining:
            await self.register_local_topics()
        seen = self.cache.version
        await self.reconcile()
        self._applied(seen)
        if joining and not self._kept:
            await anyio.to_thread.run_sync(
                _write_member, marker, self.cache.cluster_id, self.node_id
            )
        task_status.started()
        while True:
            seen = await self.cache.wait_changed(seen)
            await self.reconcile()
            self._applied(seen)

    async def caught_up(self, version: int) -> None:
        """Wait until the local logs match the cache as of ``version`` (every change
        up to it acted on)."""
        while self.applied < version:
            await self._applied_changed.wait()

    def _applied(self, version: int) -> None:
        self.applied = version
        self._applied_changed.set()
        self._applied_changed = anyio.Event()

    async def register_local_topics(self) -> None:
        """Ask the controller to adopt the local topics the cluster does not know,
        under their own ids and hosted here."""
        unknown = [
            m for m in self.topics.logs.topics() if self.cache.topic(m.name) is None
        ]
        if not unknown:
            return
        node = self.node_id
        errors = await self.cluster.create_topics(
            [
                CreateTopicRequest(
                    name=m.name,
                    partitions=m.partition_count,
                    configs=dict(m.config.overrides),
                    assignment=((node,),) * m.partition_count,
                    topic_id=m.topic_uuid,
                )
                for m in unknown
            ]
        )
        for meta, error in zip(unknown, errors, strict=True):
            if error is None:
                log.info(
                    "topic_registered",
                    topic=meta.name,
                    topic_id=str(meta.topic_uuid),
                    partitions=meta.partition_count,
                )
                continue
            cached = self.cache.topic(meta.name)
            if cached is not None and cached.topic_id == meta.topic_uuid:
                continue  # registered meanwhile (another attempt, same id)
            self._kept.add(meta.name)
            log.error(
                "topic_register_failed",
                topic=meta.name,
                topic_id=str(meta.topic_uuid),
                code=error.code,
                error=error.message,
            )

    async def reconcile(self) -> None:
        """One pass: local topics made to match the cache, then leadership diffs."""
        wanted = {t.name: t for t in self.cache.topics()}
        for meta in self.topics.logs.topics():
            record = wanted.get(meta.name)
            if record is None and meta.name not in self._kept:
                await self._delete(meta)
        for record in wanted.values():
            await self._ensure(record)
        self._follow_leaders()
        self.fetchers.plan()

    async def _ensure(self, record: TopicRecord) -> None:
        meta = self.topics.find(record.name)
        if meta is None:
            created = await self.topics.create_local(record)
            if isinstance(created, StorageError):
                log.error(
                    "replica_create_failed", topic=record.name, error=str(created)
                )
            return
        if meta.topic_uuid != record.topic_id:
            if record.name in self._kept:
                return  # ours was refused; the cluster's is another topic
            log.error(
                "topic_id_mismatch",
                topic=record.name,
                local_topic_id=str(meta.topic_uuid),
                topic_id=str(record.topic_id),
            )
            self._kept.add(record.name)
            return
        if meta.partition_count < record.partitions:
            error = await self.topics.grow_local(record.name, record.partitions)
            if error is not None:
                log.error("replica_grow_failed", topic=record.name, error=str(error))
        if dict(meta.config.overrides) != dict(record.configs):
            # AlterConfigs through any broker: the record's overrides, live here
            error = await self.topics.alter_local(record.name, record.configs)
            if error is not None:
                log.error("replica_configs_failed", topic=record.name, error=str(error))

    async def _delete(self, meta: TopicMeta) -> None:
        try:
            logs = await self.topics.delete_local(meta)
        except StorageError as e:
            log.error("replica_delete_failed", topic=meta.name, error=str(e))
            return
        self.durability.fail_logs(logs, LogClosed(f"topic {meta.name} deleted"))
        self.on_deleted(meta.name, logs)
        self.checkpoint.forget(meta.name)
        self.fetchers.forget(meta.name)
        for key in [k for k in self._leaders if k[0] == meta.name]:
            del self._leaders[key]
        log.info("topic_deleted", topic=meta.name, topic_id=str(meta.topic_uuid))

    def _follow_leaders(self) -> None:
        """Log this broker's leadership changes; wake the long polls and acks=all
        answers of partitions it no longer leads, or whose ISR changed while it
        leads them (a smaller ISR can move the high watermark, or leave it below
        ``min.insync.replicas``: Kafka's ``tryCompleteDelayedRequests``)."""
        node = self.node_id
        now: dict[tuple[str, int], tuple[int, int, tuple[int, ...]]] = {}
        for topic in self.cache.topics():
            for index in range(topic.partitions):
                p = self.cache.partition(topic.name, index)
                if p is not None:
                    now[(topic.name, index)] = (p.leader, p.leader_epoch, p.isr)
        for key, (leader, epoch, isr) in now.items():
            before = self._leaders.get(key)
            was = before is not None and before[0] == node
            if (leader == node) == was:
                if was and before is not None and before[1] != epoch:
                    # led again at a later epoch (the leader epoch moves only with
                    # the leader): another broker led it in between, unseen
                    self._relead(*key, epoch)
                if was and before is not None and before[2] != isr:
                    self._wake(*key)
                continue
            if leader == node:
                reason = "elected"
            elif leader == NO_LEADER:
                reason = "offline"
            else:
                reason = "moved"
            log.info(
                "leader_changed",
                topic=key[0],
                partition=key[1],
                leader=leader,
                leader_epoch=epoch,
                reason=reason,
            )
            self.metrics.leader_changed()
            if leader == node:
                self._lead(*key)
            if was:
                # what consumers could see so far is kept for the checkpoint
                self.checkpoint.note(
                    *key, self.topics.followers.last_high_watermark(*key)
                )
                self.topics.followers.forget(*key)
                self._wake(*key)
            if self.on_leadership is not None:
                self.on_leadership(*key, leader == node)
        self._leaders = now

    def _relead(self, topic: str, partition: int, epoch: int) -> None:
        """What follows leaderships hears of a partition this broker lost and won
        back between two looks at the cache (its state may have moved meanwhile)."""
        log.info(
            "leader_regained", topic=topic, partition=partition, leader_epoch=epoch
        )
        if self.on_leadership is not None:
            self.on_leadership(topic, partition, True)

    def _lead(self, topic: str, partition: int) -> None:
        """This broker leads the partition from now on: its high watermark starts
        from the highest it knows (its old leader's as last fetched, or the
        checkpoint), never above its log end; its idempotent producers' state is
        rebuilt off the loop if the replica fetcher did not keep it."""
        known = max(
            self.fetchers.leader_high_watermark(topic, partition),
            self.checkpoint.known(topic, partition),
        )
        try:
            plog = self.topics.logs.partition(topic, partition)
        except StorageError:
            self.topics.followers.lead(topic, partition, known)
            return
        self.topics.followers.lead(topic, partition, min(known, plog.log_end_offset))
        producers = self.producers
        if (
            producers is None
            or producers.tracks(plog)
            or plog.log_end_offset == plog.log_start_offset  # built free on first use
            or self._tg is None
        ):
            return
        producers.begin_reload(plog)  # from now: no check against a missing state
        self._tg.start_soon(partial(producers.reload, plog, begun=True))

    def _wake(self, topic: str, partition: int) -> None:
        try:
            plog = self.topics.logs.partition(topic, partition)
        except StorageError:
            return
        self.durability.waiters.notify(plog)


def _read_member(path: Path) -> str | None:
    """The cluster id this data dir has joined, or None (never, or unreadable)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    cluster_id = data.get("cluster_id") if isinstance(data, dict) else None
    return cluster_id if isinstance(cluster_id, str) else None


def _write_member(path: Path, cluster_id: str, node_id: int) -> None:
    """Record that this data dir is a member of the cluster (atomic replace)."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w") as f:
        f.write(json.dumps({"cluster_id": cluster_id, "node_id": node_id}))
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
