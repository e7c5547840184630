"""The topics of this broker: the one owner of the log manager on the broker side.

Handlers, the snapshot service, the admin API and authorisation look topics up,
create them and read their views through :class:`TopicService`. Creation runs in a
worker thread (directories, segment files, checkpoints and fsyncs stay off the event
loop), within the broker's partition caps, and logs ``topic_created`` once.

In cluster mode (built with a :class:`~broker.cluster.requests.ClusterRequests`)
the cluster decides: a partition's leader, epoch, replicas and ISR come from the
watched cache (:meth:`TopicService.state`; offsets stay the local log's), and
creation, growth and deletion are requests to the controller. They return once the
replica manager (:mod:`broker.replication.manager`) has made the local logs match
the cache, through the ``*_local`` methods here, so a handler answers with the
local topic as on a single node.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import anyio
import structlog

from broker.cluster.cache import MetadataCache
from broker.cluster.model import (
    CreatePartitionsRequest,
    CreateTopicRequest,
    PartitionRecord,
    RequestError,
    TopicRecord,
)
from broker.cluster.requests import ClusterRequests
from broker.config import BrokerConfig
from broker.disk.guard import DiskGuard
from broker.disk.guard import metric_lines as diskguard_metric_lines
from broker.metrics import Metrics
from broker.topics.cleaner import CleanerJob
from broker.topics.errors import Refused, error_code
from broker.topics.followers import FollowerProgress
from broker.topics.state import (
    PartitionState,
    cluster_state,
    high_watermark,
    single_node_state,
)
from broker.topics.storage import close_log_manager, open_log_manager
from protocol.error_codes import ErrorCode
from storage.errors import StorageError, TopicExists, UnknownTopic
from storage.fileops import FileOps
from storage.lock import DataDirLock
from storage.log_manager import LogManager, TopicMeta
from storage.partition_log import PartitionLog

log = structlog.get_logger("broker.topics")

ZERO_UUID = b"\x00" * 16

R = TypeVar("R")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class NewTopic:
    """One topic to create: name, partition count and config overrides (and, in
    cluster mode, its replication factor or manual assignment)."""

    name: str
    partitions: int
    configs: Mapping[str, str] = field(default_factory=dict)
    replication_factor: int = -1  # -1: the cluster's default
    assignment: tuple[tuple[int, ...], ...] | None = None  # replicas per partition


class TopicService:
    """Topic lookups, creation, views and retention over the open data dir."""

    def __init__(
        self,
        config: BrokerConfig,
        logs: LogManager,
        metrics: Metrics,
        disk: DiskGuard | None = None,
        cluster: ClusterRequests | None = None,
    ) -> None:
        self.config = config
        self._logs = logs
        self.metrics = metrics
        self.disk = disk
        self.cluster = cluster  # None: a single node
        self._cache: MetadataCache | None = None if cluster is None else cluster.cache
        self._local_changed = anyio.Event()  # set when a local topic comes or goes
        # Followers' fetch offsets on the partitions this broker leads (ISR input).
        self.followers = FollowerProgress()
        self.cleaner = CleanerJob(config)  # log compaction (started by the server)

    @classmethod
    async def open(
        cls,
        config: BrokerConfig,
        fileops: FileOps,
        lock: DataDirLock,
        metrics: Metrics,
        disk: DiskGuard | None = None,
        cluster: ClusterRequests | None = None,
    ) -> TopicService:
        """Open and recover the data dir (worker thread; logs ``storage_open``)."""
        logs = await open_log_manager(config, fileops, lock)
        return cls(config, logs, metrics, disk, cluster)

    async def close(self) -> None:
        """Final fsync and clean close (writes the clean-shutdown marker)."""
        await close_log_manager(self._logs)

    @property
    def cache(self) -> MetadataCache | None:
        """The cluster's watched cache (None on a single node)."""
        return self._cache

    @property
    def logs(self) -> LogManager:
        """The storage handle."""
        return self._logs

    # -- lookups ---------------------------------------------------------------

    def find(self, name: str) -> TopicMeta | None:
        try:
            return self._logs.topic(name)
        except UnknownTopic:
            return None

    def find_by_id(self, raw_id: bytes | uuid.UUID) -> TopicMeta | None:
        """The topic with this id (None for the zero id or an unknown one)."""
        if isinstance(raw_id, uuid.UUID):
            raw_id = raw_id.bytes
        if raw_id == ZERO_UUID:
            return None
        try:
            return self._logs.topic_by_id(bytes(raw_id))
        except UnknownTopic:
            return None

    def names(self) -> list[str]:
        return sorted(m.name for m in self._logs.topics())

    # -- creation ----------------------------------------------------------------

    async def create_topics(
        self, wanted: Sequence[NewTopic], *, reason: str
    ) -> list[TopicMeta | StorageError]:
        """Create topics in a worker thread; each one's TopicMeta or StorageError, in
        order. Successes are logged as ``topic_created``.

        In cluster mode the controller creates them (a refusal is a
        :class:`~broker.topics.errors.Refused` with its error code) and each answer
        is the local topic the replica manager made.
        """
        if self.cluster is not None:
            return await self._create_in_cluster(wanted)
        logs = self._logs

        def work() -> list[TopicMeta | StorageError]:
            out: list[TopicMeta | StorageError] = []
            for t in wanted:
                try:
                    out.append(logs.create_topic(t.name, t.partitions, dict(t.configs)))
                except StorageError as e:
                    out.append(e)
            return out

        results = await anyio.to_thread.run_sync(work)
        for t, result in zip(wanted, results, strict=True):
            if isinstance(result, TopicExists):
                continue  # created meanwhile by another request
            if isinstance(result, StorageError):
                log.warning(
                    "topic_create_failed",
                    topic=t.name,
                    reason=reason,
                    error=str(result),
                )
                continue
            _log_created(result, t.partitions, dict(t.configs), reason)
        return results

    async def create_topic(
        self,
        name: str,
        partitions: int,
        configs: Mapping[str, str] | None = None,
        *,
        topic_id: uuid.UUID | None = None,
        reason: str,
    ) -> TopicMeta:
        """Create one topic in a worker thread and log ``topic_created``.

        Raises:
            StorageError: it could not be created (``TopicExists``, ``PartitionLimit``,
                ...); nothing is logged then.
        """
        if self.cluster is not None:
            # placed by the controller with the default replication factor, under
            # its own id (a restored snapshot's topic: broker.snapshots.apply)
            [result] = await self._create_in_cluster(
                [NewTopic(name, partitions, dict(configs or {}))],
                topic_id=topic_id,
            )
            if isinstance(result, StorageError):
                raise result
            return result
        logs = self._logs
        wanted = dict(configs or {})
        meta = await anyio.to_thread.run_sync(
            lambda: logs.create_topic(name, partitions, wanted, topic_id)
        )
        _log_created(meta, partitions, wanted, reason)
        return meta

    def delete_topic(self, meta: TopicMeta) -> list[PartitionLog]:
        """Delete a topic's files; its partition logs, now closed (the caller fails
        what waits on them).

        Raises:
            StorageError: it could not be deleted.
        """
        logs = self._logs.partitions(meta.name)
        self._logs.delete_topic(meta.name)
        self.followers.forget(meta.name)
        for plog in logs:
            self.cleaner.cleaner.forget(plog.topic, plog.partition)
        return logs

    async def add_partitions(
        self, growing: Sequence[tuple[str, int, tuple[tuple[int, ...], ...] | None]]
    ) -> list[StorageError | None]:
        """Grow topics to the given partition counts (with the new partitions'
        replicas, if assigned); each one's error or None, in order. The files are
        made in a worker thread; in cluster mode the controller grows the topic and
        this returns once the local topic has grown too."""
        if self.cluster is None:
            return await _grow(self._logs, [(n, c) for n, c, _ in growing])
        results: list[StorageError | None] = []
        for name, count, assignment in growing:
            error = await self.cluster.create_partitions(
                CreatePartitionsRequest(name=name, count=count, assignment=assignment)
            )
            if error is not None:
                results.append(_refused(error))
                continue

            def grown(name: str = name, count: int = count) -> bool:
                meta = self.find(name)
                return meta is not None and meta.partition_count >= count

            results.append(await self._await_local(grown, f"{name} to grow"))
        return results

    async def alter_configs(
        self, name: str, edit: Callable[[Mapping[str, str]], dict[str, str]]
    ) -> StorageError | None:
        """Replace a topic's config overrides with ``edit`` of the current ones,
        live on its partitions and persisted (the topic's manifest; in cluster mode
        its record in etcd, edited by compare-and-set, which every broker's replica
        manager applies). None once this broker applies them. ``edit`` may raise
        to refuse the change; the caller serialises changes on this broker."""
        if self.cluster is None:
            meta = self.find(name)
            if meta is None:
                return UnknownTopic(name)
            return await self.alter_local(name, edit(meta.config.overrides))
        written = await self.cluster.alter_topic_configs(name, edit)
        if isinstance(written, RequestError):
            return _refused(written)

        def applied() -> bool:
            meta = self.find(name)
            return meta is None or dict(meta.config.overrides) == written

        return await self._await_local(applied, f"{name}'s configs")

    async def alter_local(
        self, name: str, overrides: Mapping[str, str]
    ) -> StorageError | None:
        """Replace a local topic's overrides (worker thread; logs
        ``topic_configs_altered``); the storage error, or None."""
        logs = self._logs
        wanted = dict(overrides)

        def work() -> StorageError | None:
            try:
                logs.alter_topic_configs(name, wanted)
            except StorageError as e:
                return e
            return None

        error = await anyio.to_thread.run_sync(work)
        if error is None:
            log.info("topic_configs_altered", topic=name, configs=wanted)
            self._notify_local()
        return error

    async def request_delete(self, meta: TopicMeta) -> StorageError | None:
        """Cluster mode: ask the controller to delete a topic; None once the replica
        manager has deleted the local topic too (it fails what waits on it)."""
        assert self.cluster is not None
        error = await self.cluster.delete_topic(meta.name)
        if error is not None:
            return _refused(error)

        def gone() -> bool:
            now = self.find(meta.name)
            return now is None or now.topic_id != meta.topic_id

        return await self._await_local(gone, f"{meta.name} to be deleted")

    # -- cluster mode: the local logs the replica manager keeps -----------------

    async def create_local(self, record: TopicRecord) -> TopicMeta | StorageError:
        """Create the local topic of a cluster topic, with its id and configs, in a
        worker thread (the replica manager; logs ``topic_created``)."""
        logs = self._logs
        configs = dict(record.configs)

        def work() -> TopicMeta | StorageError:
            try:
                return logs.create_topic(
                    record.name, record.partitions, configs, record.topic_id
                )
            except StorageError as e:
                return e

        result = await anyio.to_thread.run_sync(work)
        if not isinstance(result, StorageError):
            _log_created(result, record.partitions, configs, "cluster")
            self._notify_local()
        return result

    async def grow_local(self, name: str, count: int) -> StorageError | None:
        """Grow a local topic to the cluster's partition count (worker thread)."""
        [error] = await _grow(self._logs, [(name, count)])
        if error is None:
            log.info("topic_partitions_added", topic=name, partitions=count)
            self._notify_local()
        return error

    async def delete_local(self, meta: TopicMeta) -> list[PartitionLog]:
        """Delete a local topic gone from the cluster (worker thread); its partition
        logs, now closed (the caller fails what waits on them).

        Raises:
            StorageError: it could not be deleted.
        """
        logs = await anyio.to_thread.run_sync(self.delete_topic, meta)
        self._notify_local()
        return logs

    async def _create_in_cluster(
        self, wanted: Sequence[NewTopic], *, topic_id: uuid.UUID | None = None
    ) -> list[TopicMeta | StorageError]:
        assert self.cluster is not None
        errors = await self.cluster.create_topics(
            [
                CreateTopicRequest(
                    name=t.name,
                    partitions=t.partitions,
                    replication_factor=t.replication_factor,
                    configs=dict(t.configs),
                    assignment=t.assignment,
                    topic_id=topic_id,
                )
                for t in wanted
            ]
        )
        out: list[TopicMeta | StorageError] = []
        for t, error in zip(wanted, errors, strict=True):
            if error is not None:
                out.append(_refused(error))
                continue

            def made(name: str = t.name) -> bool:
                return self.find(name) is not None

            timed_out = await self._await_local(made, f"{t.name} to be created")
            meta = self.find(t.name)
            if meta is not None:
                out.append(meta)
            else:  # deleted again at once, or not seen in time
                out.append(
                    timed_out or Refused(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, t.name)
                )
        return out

    async def _await_local(
        self, done: Callable[[], bool], what: str
    ) -> StorageError | None:
        """Wait until ``done()`` holds of the local topics: None, or REQUEST_TIMED_OUT
        after the cluster's request timeout."""
        settings = self.config.cluster
        timeout = 30.0 if settings is None else settings.request_timeout_ms / 1000
        with anyio.move_on_after(timeout):
            while not done():
                await self._local_changed.wait()
            return None
        return Refused(ErrorCode.REQUEST_TIMED_OUT, f"timed out waiting for {what}")

    def _notify_local(self) -> None:
        self._local_changed.set()
        self._local_changed = anyio.Event()

    def partition_room(self, adding: int) -> str | None:
        """Why ``adding`` more partitions would exceed the broker's partition cap, or
        None (storage checks again when it creates them)."""
        cap = self._logs.max_partitions
        held = self._logs.partition_total()
        if cap is not None and held + adding > cap:
            return (
                f"{adding} more partitions would exceed the broker's limit of {cap} "
                f"(ailurus.max.partitions; {held} exist)"
            )
        return None

    def request_room(self, requested: int, adding: int) -> str | None:
        """Why a request adding ``adding`` partitions after ``requested`` would exceed
        the per-request cap, or None."""
        cap = self.config.max_partitions_per_request
        if requested + adding > cap:
            return (
                f"the request would add {requested + adding} partitions; at most {cap} "
                f"per request (ailurus.max.partitions.per.request)"
            )
        return None

    # -- partition state -----------------------------------------------------------

    def state(self, meta: TopicMeta, plog: PartitionLog) -> PartitionState:
        """The partition's leader, replicas and visible offsets: the one place they
        are computed (a single node leads every partition; in cluster mode the
        cache says who leads, the local log gives the offsets)."""
        cache = self._cache
        if cache is None:
            return single_node_state(
                self.config.node_id, plog, meta.config.write_caching
            )
        record = cache.partition(meta.name, plog.partition)
        if record is None or len(record.isr) <= 1 or record.leader != cache.node_id:
            return cluster_state(cache.node_id, record, plog, meta.config.write_caching)
        return cluster_state(
            cache.node_id,
            record,
            plog,
            meta.config.write_caching,
            high_watermark=self._replicated_hw(meta, plog, record),
        )

    def _replicated_hw(
        self, meta: TopicMeta, plog: PartitionLog, record: PartitionRecord
    ) -> int:
        """The high watermark of a partition this broker leads with followers in
        its ISR (:class:`~broker.topics.followers.FollowerProgress`)."""
        return self.followers.high_watermark(
            meta.name,
            plog.partition,
            record.isr,
            record.leader,
            high_watermark(plog, meta.config.write_caching),
            plog.log_start_offset,
        )

    def replicated_high_watermark(
        self, meta: TopicMeta, plog: PartitionLog
    ) -> int | None:
        """What acks=all waits for on a replicated partition: its high watermark
        while this broker leads it (the leader's own offset once the ISR is the
        leader alone), None once it no longer does."""
        cache = self._cache
        record = None if cache is None else cache.partition(meta.name, plog.partition)
        if cache is None or record is None or record.leader != cache.node_id:
            return None
        if len(record.isr) <= 1:
            return high_watermark(plog, meta.config.write_caching)
        return self._replicated_hw(meta, plog, record)

    def isr_size(self, name: str, index: int) -> int:
        """How many replicas the partition's ISR holds as the cluster's cache has
        it (0 for a partition it does not know; 1 on a single node)."""
        cache = self._cache
        if cache is None:
            return 1
        record = cache.partition(name, index)
        return 0 if record is None else len(record.isr)

    def follower_fetched(
        self,
        meta: TopicMeta,
        plog: PartitionLog,
        *,
        replica_id: int,
        fetch_offset: int,
        log_start_offset: int,
    ) -> bool:
        """Note a follower's fetch of a partition this broker leads; whether the
        high watermark moved (the caller wakes what waits on it). A follower of the
        replicas outside the ISR that reached the high watermark is handed to the
        ISR manager (Kafka's ``Partition.maybeExpandIsr``)."""
        name, index = meta.name, plog.partition
        self.followers.record(
            name,
            index,
            replica_id=replica_id,
            fetch_offset=fetch_offset,
            log_start_offset=log_start_offset,
            leader_log_end=plog.log_end_offset,
        )
        cache = self._cache
        record = None if cache is None else cache.partition(name, index)
        if cache is None or record is None or record.leader != cache.node_id:
            return False
        if replica_id not in record.isr:
            # Kafka's isFollowerInSync: the follower has reached the high watermark
            hw = (
                high_watermark(plog, meta.config.write_caching)
                if len(record.isr) <= 1
                else self._replicated_hw(meta, plog, record)
            )
            if replica_id in record.replicas and fetch_offset >= hw:
                self.followers.want_expand(name, index)
            return False
        if len(record.isr) <= 1:
            return False
        before = self.followers.last_high_watermark(name, index)
        return self._replicated_hw(meta, plog, record) != before

    # -- answering per partition -------------------------------------------------

    def answer_partition(
        self,
        api: str,
        meta: TopicMeta | None,
        index: int,
        answer: Callable[[TopicMeta, PartitionLog], R | ErrorCode],
        fail: Callable[[ErrorCode], R],
    ) -> R:
        """One partition's entry in a per-partition response.

        ``answer`` gets the topic and the partition's log and returns the entry, or an
        error code. Every error (no such topic, a storage error, or a code ``answer``
        returns) is counted in the ``api``'s error metric and answered by
        ``fail(code)``.
        """
        if meta is None:
            code = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        else:
            try:
                result = answer(meta, self._logs.partition(meta.name, index))
            except StorageError as e:
                code = error_code(e)
            else:
                if not isinstance(result, ErrorCode):
                    return result
                code = result
        self.metrics.error(api, code.name)
        return fail(code)

    # -- views -------------------------------------------------------------------

    def summary(self, name: str) -> dict[str, object] | None:
        try:
            meta = self._logs.topic(name)
        except StorageError:
            return None
        return {
            "name": meta.name,
            "topic_id": str(meta.topic_uuid),
            "partition_count": meta.partition_count,
            "configs": dict(meta.config.overrides),
            "partitions": [
                self._partition_summary(meta, idx)
                for idx in range(meta.partition_count)
            ],
        }

    def _partition_summary(self, meta: TopicMeta, idx: int) -> dict[str, object]:
        plog = self._logs.partition(meta.name, idx)
        state = self.state(meta, plog)
        return {
            "partition": idx,
            "log_start_offset": state.log_start_offset,
            "log_end_offset": plog.log_end_offset,
            "high_watermark": state.high_watermark,
            "durable_offset": plog.durable_offset,
            "size_bytes": plog.size_bytes,
            "leader": state.leader_id,
            "leader_epoch": plog.leader_epoch,
            "compaction": self.cleaner.status(plog),
        }

    def metric_lines(self) -> Iterator[str]:
        """The partition gauges of ``GET /metrics``, then the disk guard's lines."""
        manager = self._logs
        rows = []
        for meta in manager.topics():
            for idx in range(meta.partition_count):
                s = self._partition_summary(meta, idx)
                rows.append((meta.name, idx, s))
        for metric, key, text in (
            ("ailurus_partition_log_start_offset", "log_start_offset", "First offset."),
            ("ailurus_partition_log_end_offset", "log_end_offset", "Next offset."),
            ("ailurus_partition_high_watermark", "high_watermark", "Visible end."),
            ("ailurus_partition_size_bytes", "size_bytes", "Bytes on disk."),
        ):
            yield f"# HELP {metric} {text}"
            yield f"# TYPE {metric} gauge"
            for name, idx, s in rows:
                yield f'{metric}{{topic="{name}",partition="{idx}"}} {s[key]}'
        yield from diskguard_metric_lines(self.disk, manager)
        yield from self.cleaner.metric_lines()

    # -- log compaction --------------------------------------------------------------

    async def run_cleaner(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """The log cleaner's job (broker/topics/cleaner.py) until cancelled."""
        await self.cleaner.run(
            self._logs.logs, self._cleanable_limit, task_status=task_status
        )

    def _cleanable_limit(self, plog: PartitionLog) -> int | None:
        """Nothing at or above the high watermark is cleaned (None: no limit)."""
        try:
            meta = self._logs.topic(plog.topic)
        except StorageError:
            return None
        return self.state(meta, plog).high_watermark

    # -- retention -----------------------------------------------------------------

    async def apply_retention(self) -> None:
        manager = self._logs

        def run() -> list[tuple[str, int, int, int]]:
            out = []
            now = now_ms()
            for plog in manager.logs():
                try:
                    removed = plog.apply_retention(now)
                except StorageError:
                    continue
                if removed:
                    out.append(
                        (
                            plog.topic,
                            plog.partition,
                            len(removed),
                            plog.log_start_offset,
                        )
                    )
            return out

        for topic, partition, segments, start in await anyio.to_thread.run_sync(run):
            retention_log.info(
                "retention_removed",
                topic=topic,
                partition=partition,
                segments=segments,
                log_start_offset=start,
            )


async def _grow(
    logs: LogManager, growing: Sequence[tuple[str, int]]
) -> list[StorageError | None]:
    """Grow topics to the given counts in a worker thread; each one's error."""

    def grow() -> list[StorageError | None]:
        out: list[StorageError | None] = []
        for name, count in growing:
            try:
                logs.add_partitions(name, count)
                out.append(None)
            except StorageError as e:
                out.append(e)
        return out

    return await anyio.to_thread.run_sync(grow)


def _refused(error: RequestError) -> StorageError:
    """A controller's refusal as the storage error handlers answer."""
    if error.code == ErrorCode.TOPIC_ALREADY_EXISTS:
        return TopicExists(error.message)
    return Refused(error.code, error.message)


# The retention events have always been the context's.
retention_log = structlog.get_logger("broker.context")


def _log_created(
    meta: TopicMeta, partitions: int, configs: dict[str, str], reason: str
) -> None:
    if reason == "snapshot":  # the snapshot service's line has never had configs
        log.info(
            "topic_created",
            topic=meta.name,
            topic_id=str(meta.topic_uuid),
            partitions=partitions,
            reason=reason,
        )
        return
    log.info(
        "topic_created",
        topic=meta.name,
        topic_id=str(meta.topic_uuid),
        partitions=partitions,
        configs=configs,
        reason=reason,
    )
