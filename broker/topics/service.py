"""The topics of this broker: the one owner of the log manager on the broker side.

Handlers, the snapshot service, the admin API and authorisation look topics up,
create them and read their views through :class:`TopicService`. Creation runs in a
worker thread (directories, segment files, checkpoints and fsyncs stay off the event
loop), within the broker's partition caps, and logs ``topic_created`` once.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import anyio
import structlog

from broker.config import BrokerConfig
from broker.disk.guard import DiskGuard
from broker.disk.guard import metric_lines as diskguard_metric_lines
from broker.metrics import Metrics
from broker.topics.errors import error_code
from broker.topics.followers import FollowerProgress
from broker.topics.state import PartitionState, single_node_state
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
    """One topic to create: name, partition count and config overrides."""

    name: str
    partitions: int
    configs: Mapping[str, str] = field(default_factory=dict)


class TopicService:
    """Topic lookups, creation, views and retention over the open data dir."""

    def __init__(
        self,
        config: BrokerConfig,
        logs: LogManager,
        metrics: Metrics,
        disk: DiskGuard | None = None,
    ) -> None:
        self.config = config
        self._logs = logs
        self.metrics = metrics
        self.disk = disk
        # Followers' fetch offsets on the partitions this broker leads (ISR input).
        self.followers = FollowerProgress()

    @classmethod
    async def open(
        cls,
        config: BrokerConfig,
        fileops: FileOps,
        lock: DataDirLock,
        metrics: Metrics,
        disk: DiskGuard | None = None,
    ) -> TopicService:
        """Open and recover the data dir (worker thread; logs ``storage_open``)."""
        return cls(config, await open_log_manager(config, fileops, lock), metrics, disk)

    async def close(self) -> None:
        """Final fsync and clean close (writes the clean-shutdown marker)."""
        await close_log_manager(self._logs)

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
        order. Successes are logged as ``topic_created``."""
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
        return logs

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
        are computed (a single node leads every partition)."""
        return single_node_state(self.config.node_id, plog, meta.config.write_caching)

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
