"""The replica fetchers of one broker: a :class:`ReplicaFetcher` per leader it follows.

For every partition where this broker is a replica (``adding`` included) and
another live broker leads, :meth:`FetcherPool.plan` makes sure the fetcher of that
leader copies it at the leader's epoch (Kafka's ``ReplicaFetcherManager``: one
fetcher thread per source broker, partitions added and removed as
LeaderAndIsr requests arrive). The replica manager calls it after every change of
the cache: a leader that moved takes its partitions to another fetcher, a new
leader epoch makes the fetcher check the local log against it (truncation), a
partition no longer hosted here (or led here) stops being fetched, and a fetcher
with nothing left to copy stops.

A fetcher connects to the leader's endpoint of the listener named like this
broker's first listener. Only plain TCP is spoken between brokers for now: a
leader reachable only through a TLS or SASL listener is not fetched from (logged
as ``replica_listener_unsupported``).

A partition a fetcher gave up on (the leader said it does not lead it, or fenced
our epoch: its cache may lag behind ours) is planned again after a short pause,
cache change or not.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Final

import anyio
import anyio.abc
import structlog

from broker.cluster.cache import MetadataCache
from broker.cluster.model import NO_LEADER
from broker.durability.group_commit import GroupCommit
from broker.replication.fetch_round import FetcherSettings, TopicPartition
from broker.replication.fetcher import ReplicaFetcher
from broker.replication.follower_log import ProducerStates
from broker.topics.service import TopicService
from protocol.error_codes import ErrorCode
from storage.errors import StorageError
from storage.partition_log import PartitionLog

log = structlog.get_logger("broker.replication")

RETRY_STOPPED_S: Final = 0.5  # a partition a fetcher gave up on is planned again
PLAINTEXT: Final = "PLAINTEXT"


@dataclass(slots=True, eq=False)
class _Running:
    fetcher: ReplicaFetcher
    address: tuple[str, int]
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)


class FetcherPool:
    """The fetchers of this broker, one per leader (see the module docstring)."""

    def __init__(
        self,
        *,
        cache: MetadataCache,
        node_id: int,
        listener: str,
        topics: TopicService,
        commit: GroupCommit | None,
        settings: FetcherSettings | None = None,
        producers: ProducerStates | None = None,
    ) -> None:
        self.cache = cache
        self.node_id = node_id
        self.listener = listener
        self.topics = topics
        self.commit = commit
        self.settings = settings or FetcherSettings()
        self.producers = producers  # whose state follows the appends
        self._running: dict[int, _Running] = {}
        self._stopped: dict[TopicPartition, float] = {}  # tp -> when it stopped
        self._leader_hw: dict[TopicPartition, int] = {}  # as last fetched
        self._unsupported: set[int] = set()  # leaders logged once
        self._tg: anyio.abc.TaskGroup | None = None
        self._stop_seen = anyio.Event()  # set when a fetcher gives a partition up

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Host the fetchers, and plan again the partitions they gave up on once
        their pause is over; until cancelled."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            task_status.started()
            try:
                while True:
                    await self._stop_seen.wait()
                    self._stop_seen = anyio.Event()
                    while (due := self.retry_in()) is not None:
                        await anyio.sleep(due)
                        self.plan()
            finally:
                self._tg = None

    # -- what the replica manager asks -------------------------------------------------

    def fetching(self, tp: TopicPartition) -> int | None:
        """The leader ``tp`` is fetched from (None: not fetched)."""
        for leader, running in self._running.items():
            if running.fetcher.progress(tp) is not None:
                return leader
        return None

    def leader_high_watermark(self, topic: str, partition: int) -> int:
        """The high watermark the partition's last leader reported (0: unknown)."""
        tp = TopicPartition(topic, partition)
        for running in self._running.values():
            progress = running.fetcher.progress(tp)
            if progress is not None and progress.leader_high_watermark >= 0:
                return progress.leader_high_watermark
        return self._leader_hw.get(tp, 0)

    def forget(self, topic: str) -> None:
        """A local topic was deleted: the high watermarks last fetched for it go (a
        topic made again under the same name must not inherit them)."""
        for tp in [t for t in self._leader_hw if t.topic == topic]:
            del self._leader_hw[tp]

    def retry_in(self) -> float | None:
        """Seconds until a partition a fetcher gave up on is due again."""
        if not self._stopped:
            return None
        now = time.monotonic()
        return max(0.0, min(self._stopped.values()) + RETRY_STOPPED_S - now)

    def plan(self) -> None:
        """Make the fetchers copy exactly what the cache says this broker follows."""
        if self._tg is None:
            return
        cache = self.cache
        now = time.monotonic()
        node = self.node_id
        # paused partitions whose pause is over are planned like any other
        for tp in [t for t, at in self._stopped.items() if now - at >= RETRY_STOPPED_S]:
            del self._stopped[tp]
        wanted: dict[int, dict[TopicPartition, tuple[int, bytes]]] = {}
        for topic in cache.topics():
            for index, rec in cache.partitions_of(topic.name):
                if node not in rec.replicas or rec.leader in (node, NO_LEADER):
                    continue
                tp = TopicPartition(topic.name, index)
                if tp in self._stopped:
                    continue
                wanted.setdefault(rec.leader, {})[tp] = (
                    rec.leader_epoch,
                    topic.topic_id.bytes,
                )
        # Removals first: a partition moving between leaders is never in two
        # fetchers at once.
        for leader, running in list(self._running.items()):
            parts = wanted.get(leader, {})
            address = self._address(cache, leader)
            if address != running.address or not parts:
                self._stop_fetcher(leader)
                continue
            for tp in running.fetcher.partitions:
                if tp not in parts:
                    self._remove(running.fetcher, tp)
        for leader, parts in wanted.items():
            address = self._address(cache, leader)
            if address is None:
                continue
            running = self._running.get(leader) or self._start_fetcher(leader, address)
            fetcher = running.fetcher
            for tp, (epoch, topic_id) in parts.items():
                progress = fetcher.progress(tp)
                plog = self._local_log(tp)
                if plog is None:  # the local topic is not there (yet)
                    if progress is not None:
                        fetcher.remove_partition(tp)
                elif progress is None or progress.log is not plog:
                    # new here, or the topic was made again: copy into this log
                    fetcher.add_partition(plog, leader_epoch=epoch, topic_id=topic_id)
                elif progress.leader_epoch != epoch:
                    fetcher.set_leader_epoch(tp, epoch)

    # -- internals -------------------------------------------------------------------

    def _local_log(self, tp: TopicPartition) -> PartitionLog | None:
        try:
            return self.topics.logs.partition(tp.topic, tp.partition)
        except StorageError:
            return None

    def _address(self, cache: MetadataCache, leader: int) -> tuple[str, int] | None:
        broker = cache.broker(leader)
        endpoint = None if broker is None else broker.endpoint(self.listener)
        if endpoint is None:
            return None
        if endpoint.security_protocol != PLAINTEXT:
            if leader not in self._unsupported:
                self._unsupported.add(leader)
                log.warning(
                    "replica_listener_unsupported",
                    leader=leader,
                    listener=self.listener,
                    security_protocol=endpoint.security_protocol,
                    hint="replica fetchers speak plain TCP only",
                )
            return None
        self._unsupported.discard(leader)
        return endpoint.host, endpoint.port

    def _start_fetcher(self, leader: int, address: tuple[str, int]) -> _Running:
        assert self._tg is not None
        fetcher = ReplicaFetcher(
            node_id=self.node_id,
            leader_id=leader,
            host=address[0],
            port=address[1],
            on_stop=self._on_stop,
            commit=self.commit,
            settings=self.settings,
            producers=self.producers,
        )
        running = _Running(fetcher=fetcher, address=address)
        self._running[leader] = running
        self._tg.start_soon(self._run_fetcher, running)
        return running

    @staticmethod
    async def _run_fetcher(running: _Running) -> None:
        with running.scope:
            await running.fetcher.run()

    def _stop_fetcher(self, leader: int) -> None:
        running = self._running.pop(leader)
        for tp in running.fetcher.partitions:
            self._remove(running.fetcher, tp)
        running.scope.cancel()

    def _remove(self, fetcher: ReplicaFetcher, tp: TopicPartition) -> None:
        progress = fetcher.progress(tp)
        if progress is not None and progress.leader_high_watermark >= 0:
            self._leader_hw[tp] = progress.leader_high_watermark
        fetcher.remove_partition(tp)

    def _on_stop(self, tp: TopicPartition, code: ErrorCode) -> None:
        self._stopped[tp] = time.monotonic()
        self._stop_seen.set()
        log.debug(
            "replica_fetch_paused",
            topic=tp.topic,
            partition=tp.partition,
            error=code.name,
        )
