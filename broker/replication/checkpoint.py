"""The high-watermark checkpoint of a cluster broker (Kafka's
``replication-offset-checkpoint``, :mod:`storage.hw_checkpoint`).

A partition's high watermark with followers in its ISR lives in the leader's memory
(:mod:`broker.topics.followers`), and a follower knows its leader's from the Fetch
answers (:class:`~broker.replication.fetcher.PartitionProgress`). Without a
checkpoint a broker that leads after a restart of the whole cluster would start
from 0 and show consumers nothing until its followers fetched again.

:class:`HighWatermarkCheckpointer` reads the file once at start (in a worker
thread; a damaged file is logged as ``hw_checkpoint_corrupt`` and ignored), keeps
the highest high watermark known of every local partition (led here: the one
consumers see; followed: the leader's last answer, never above the local log end),
and writes the file every ``interval_s`` when something changed, in a worker
thread, and once more when it stops (clean shutdown). A partition this broker comes
to lead starts from :meth:`HighWatermarkCheckpointer.known`; entries never exceed
the local log end, and a deleted topic's are forgotten. The replica manager runs
it: a single node (whose high watermark is its durable log end) has none.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import structlog

from broker.topics.service import TopicService
from storage.errors import StorageError
from storage.hw_checkpoint import CorruptCheckpoint, HighWatermarkCheckpoint

if TYPE_CHECKING:
    from broker.replication.fetchers import FetcherPool

log = structlog.get_logger("broker.replication")

CHECKPOINT_INTERVAL_S = 5.0  # Kafka's replica.high.watermark.checkpoint.interval.ms


class HighWatermarkCheckpointer:
    """The checkpoint file of this broker's data dir and what it will hold next."""

    def __init__(
        self,
        topics: TopicService,
        fetchers: FetcherPool,
        *,
        interval_s: float = CHECKPOINT_INTERVAL_S,
    ) -> None:
        self.topics = topics
        self.fetchers = fetchers
        self.interval_s = interval_s
        self.file = HighWatermarkCheckpoint(
            topics.logs.data_dir, fileops=topics.logs.fileops
        )
        self._known: dict[tuple[str, int], int] = {}
        self._written: dict[tuple[str, int], int] | None = None  # None: not yet
        self._writing = anyio.Lock()  # one write at a time (one .tmp file)

    async def load(self) -> None:
        """Read the file (worker thread): entries of local partitions, each capped
        at the local log end."""
        try:
            read = await anyio.to_thread.run_sync(self.file.read)
        except CorruptCheckpoint as exc:
            log.warning("hw_checkpoint_corrupt", path=self.file.path, error=str(exc))
            return
        except StorageError as exc:
            log.warning("hw_checkpoint_unreadable", path=self.file.path, error=str(exc))
            return
        logs = self.topics.logs
        for (topic, partition), offset in read.items():
            try:
                plog = logs.partition(topic, partition)
            except StorageError:
                continue  # the topic is gone from this data dir
            capped = min(offset, plog.log_end_offset)
            if capped > 0:
                self._known[(topic, partition)] = capped
        self._written = dict(read)

    def known(self, topic: str, partition: int) -> int:
        """The highest high watermark known of the partition (0: none)."""
        return self._known.get((topic, partition), 0)

    def note(self, topic: str, partition: int, high_watermark: int) -> None:
        """Keep at least this high watermark of the partition (this broker stops
        leading it: the next write may come before its new leader answers)."""
        key = (topic, partition)
        if high_watermark > self._known.get(key, 0):
            self._known[key] = high_watermark

    def forget(self, topic: str) -> None:
        """A local topic was deleted: its entries go (a topic made again under the
        same name starts from nothing)."""
        for key in [k for k in self._known if k[0] == topic]:
            del self._known[key]

    def update(self) -> dict[tuple[str, int], int]:
        """Note every local partition's high watermark as of now; what the file
        should hold (partitions with a high watermark above 0)."""
        topics = self.topics
        cache = topics.cache
        node = None if cache is None else cache.node_id
        known = self._known
        live: dict[tuple[str, int], int] = {}
        for meta in topics.logs.topics():
            for plog in topics.logs.partitions(meta.name):
                key = (meta.name, plog.partition)
                record = None if cache is None else cache.partition(*key)
                if record is not None and record.leader == node:
                    now = topics.state(meta, plog).high_watermark
                else:
                    now = self.fetchers.leader_high_watermark(*key)
                # a follower's high watermark never passes its own log end (Kafka's
                # Partition.updateFollowerFetchState); nor does a truncated log's
                hw = min(max(now, known.get(key, 0)), plog.log_end_offset)
                if hw > 0:
                    live[key] = hw
        self._known = live
        return dict(live)  # a copy: forget() and note() change the table

    async def write(self) -> None:
        """Write the file if it would change (worker thread); a failure is logged
        and tried again at the next interval."""
        async with self._writing:
            offsets = self.update()
            if offsets == self._written:
                return
            try:
                await anyio.to_thread.run_sync(self.file.write, offsets)
            except StorageError as exc:
                log.warning("hw_checkpoint_failed", path=self.file.path, error=str(exc))
                return
            self._written = offsets

    async def run(self) -> None:
        """Write every ``interval_s`` when changed, and once more when cancelled."""
        try:
            while True:
                await anyio.sleep(self.interval_s)
                await self.write()
        finally:
            with anyio.CancelScope(shield=True):
                await self.write()
