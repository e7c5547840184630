"""The leader's side of the ISR: followers join it when caught up, and leave it
when they fall behind for too long.

Kafka's ZooKeeper-era design: the leader, not the controller, changes a
partition's ISR, with a compare-and-set on the partition state guarded by its
version (here :meth:`ClusterRequests.alter_isr`: the key's mod revision, and the
leader and partition epochs this broker last saw). The controller, whose own
compare-and-set then fails, reads the key again and decides again; a reassignment
completes once its target replicas are in the ISR.

- **expand** (``Partition.maybeExpandIsr``): a replica outside the ISR whose fetch
  offset reached the high watermark (the fetch handler notes it in
  :class:`~broker.topics.followers.FollowerProgress`) joins it. The high watermark is
  held where it was first, so the new member's offset never takes it back. This
  rule is half of what lets a catching-up follower fetch on before its appends are
  fsynced (:mod:`broker.replication.follower_sync`): an offset below the high
  watermark never adds a replica, so only offsets it made durable can;
- **shrink** (``Partition.maybeShrinkIsr``): a follower of the ISR that has not
  caught up for ``replica.lag.time.max.ms`` (since this broker became leader, if it
  never did) leaves it, checked every half of that time. A follower at the leader's
  log end is never out of sync. A check that comes more than one interval late
  (this broker was paused, SIGSTOP or a long stall) is skipped: the followers could
  not fetch from a leader that stood still, and one round lets them catch up
  rather than leaving the leader alone in the ISR.

A write that loses its compare-and-set is not retried: the next fetch (or check)
decides again on the state the cache then shows. Logs ``isr_changed`` (cluster
service) with the old and new ISR.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import anyio
import structlog

from broker.cluster.cache import MetadataCache
from broker.cluster.requests import ClusterRequests
from broker.topics.service import TopicService
from storage.errors import StorageError

log = structlog.get_logger("broker.replication")

# How recently a follower must have fetched to join the ISR.
_FRESH_FETCH_S = 10.0


class IsrManager:
    """Expands and shrinks the ISR of the partitions this broker leads."""

    def __init__(
        self,
        cluster: ClusterRequests,
        topics: TopicService,
        *,
        lag_time_max_ms: int = 30_000,
    ) -> None:
        self.cluster = cluster
        self.cache: MetadataCache = cluster.cache
        self.topics = topics
        self.lag_time_max_s = lag_time_max_ms / 1000

    async def run(self) -> None:
        """Act on caught-up followers as they are noted, and check for laggards
        every half ``lag_time_max``; until cancelled."""
        interval = max(0.1, self.lag_time_max_s / 2)
        next_check = time.monotonic() + interval
        while True:
            with anyio.move_on_after(max(0.0, next_check - time.monotonic())):
                await self.topics.followers.wait_expand()
            for topic, index in sorted(self.topics.followers.take_expand()):
                await self.expand(topic, index)
            now = time.monotonic()
            if now >= next_check:
                if now - next_check > interval:
                    # This broker itself stood still (paused, or a stalled loop):
                    # its followers' fetches went unanswered meanwhile, so their
                    # lag says nothing yet. Give them one round to catch up.
                    log.info(
                        "isr_check_deferred", late_ms=int((now - next_check) * 1000)
                    )
                else:
                    await self.shrink_all()
                next_check = time.monotonic() + interval

    async def expand(self, topic: str, index: int) -> None:
        """Add the replicas outside the ISR that caught up."""
        node = self.cache.node_id
        rec = self.cache.partition(topic, index)
        meta = self.topics.find(topic)
        if rec is None or rec.leader != node or meta is None:
            return
        try:
            plog = self.topics.logs.partition(topic, index)
        except StorageError:
            return
        hw = self.topics.replicated_high_watermark(meta, plog)
        if hw is None:
            return
        now = time.monotonic()
        fetched = self.topics.followers.followers(topic, index)
        joining = [
            r
            for r in rec.replicas
            if r not in rec.isr
            and self.cache.broker(r) is not None
            and (f := fetched.get(r)) is not None
            and f.fetch_offset >= hw
            and now - f.fetched_at < _FRESH_FETCH_S
        ]
        if not joining:
            return
        self.topics.followers.hold(topic, index, hw)
        await self._write(topic, index, [*rec.isr, *joining], "caught_up")

    async def shrink_all(self) -> None:
        """Remove the followers that have not caught up for ``lag_time_max``."""
        node = self.cache.node_id
        now = time.monotonic()
        for t in self.cache.topics():
            for index, rec in self.cache.partitions_of(t.name):
                if rec.leader != node or len(rec.isr) <= 1:
                    continue
                try:
                    plog = self.topics.logs.partition(t.name, index)
                except StorageError:
                    continue
                since = self.topics.followers.led_since(t.name, index)
                fetched = self.topics.followers.followers(t.name, index)
                end = plog.log_end_offset
                out = []
                for r in rec.isr:
                    if r == node:
                        continue
                    f = fetched.get(r)
                    if f is not None and f.fetch_offset >= end:
                        continue
                    last = f.caught_up_at if f is not None else None
                    last = last if last is not None else since
                    if last is not None and now - last > self.lag_time_max_s:
                        out.append(r)
                if out:
                    await self._write(
                        t.name,
                        index,
                        [r for r in rec.isr if r not in out],
                        "lagging",
                    )

    async def _write(
        self, topic: str, index: int, isr: Sequence[int], reason: str
    ) -> None:
        rec = self.cache.partition(topic, index)
        if rec is None:
            return
        new = await self.cluster.alter_isr(topic, index, isr, rec)
        if new is None:
            log.info(
                "isr_change_skipped",
                topic=topic,
                partition=index,
                isr=list(isr),
                reason=reason,
            )
