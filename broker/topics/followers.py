"""Followers' fetch progress on the leader: the table ISR decisions read, and the
high watermark of a partition with followers in its ISR.

Every follower Fetch (``replica_id >= 0``) records, per partition, the offset the
follower asked for, when, and the leader's log end offset at that moment. An offset
at or above the high watermark is on the follower's disk; one below it may not be
yet (a follower catching up fetches on while it fsyncs,
:mod:`broker.replication.follower_sync`), which is safe because such an offset
neither raises the high watermark nor adds the follower to the ISR. Kafka keeps the same facts in its ``Replica`` state
(``logEndOffset``, ``lastFetchLeaderLogEndOffset``, ``lastCaughtUpTimeMs``) to
shrink and expand the ISR. A follower is caught up at a fetch that reaches the
leader's log end, and also (Kafka's ``Replica.updateFetchState``) at the time of
its previous fetch when this one reaches the log end the leader had then: under
steady produce traffic a follower is never exactly at the end, yet it keeps up.

The high watermark of a partition whose ISR holds followers is the smallest of the
leader's own visible offset and every ISR follower's fetch offset, and never moves
back while this broker leads (Kafka's ``Partition.maybeIncrementLeaderHW``). A
follower of the ISR that has not fetched since this broker became leader holds it
where it was. The followers' offsets live in memory only: a new leader learns them
again from the followers' next fetches, starting from the highest high watermark
it knows (:meth:`FollowerProgress.lead`: the old leader's, as last fetched, or the
data dir's high-watermark checkpoint, :mod:`broker.replication.checkpoint`, which
carries it across restarts).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import anyio


@dataclass(frozen=True, slots=True, kw_only=True)
class FollowerFetch:
    """The latest fetch of one follower for one partition."""

    replica_id: int
    fetch_offset: int  # the follower's log end (durable on it once >= the HW)
    log_start_offset: int  # the follower's log start offset (-1: not sent)
    leader_log_end: int  # the leader's log end offset when it fetched
    fetched_at: float  # time.monotonic()
    caught_up_at: float | None  # last fetch that reached the leader's log end


class FollowerProgress:
    """``(topic, partition) -> {replica_id: FollowerFetch}``."""

    def __init__(self) -> None:
        self._table: dict[tuple[str, int], dict[int, FollowerFetch]] = {}
        # partitions led here: (the high watermark so far, since when led)
        self._led: dict[tuple[str, int], tuple[int, float]] = {}
        self._expand: set[tuple[str, int]] = set()  # followers caught up, not in ISR
        self._expand_wanted = anyio.Event()

    # -- leadership ------------------------------------------------------------------

    def lead(
        self, topic: str, partition: int, high_watermark: int, now: float | None = None
    ) -> None:
        """This broker leads the partition from now on, starting from
        ``high_watermark`` (the old leader's, as last fetched; 0 if unknown)."""
        self._table.pop((topic, partition), None)
        at = time.monotonic() if now is None else now
        self._led[(topic, partition)] = (max(0, high_watermark), at)

    def led_since(self, topic: str, partition: int) -> float | None:
        """When this broker started leading the partition (None: not noted)."""
        led = self._led.get((topic, partition))
        return None if led is None else led[1]

    def high_watermark(
        self,
        topic: str,
        partition: int,
        isr: tuple[int, ...],
        leader: int,
        own: int,
        log_start: int,
    ) -> int:
        """The high watermark with followers in the ISR: the smallest of ``own``
        (the leader's visible offset) and the ISR followers' fetch offsets, never
        below the last one (nor ``log_start``), never above ``own``."""
        key = (topic, partition)
        previous, since = self._led.get(key, (0, 0.0))
        fetched = self._table.get(key, {})
        candidate = own
        for replica in isr:
            if replica == leader:
                continue
            f = fetched.get(replica)
            if f is None:
                candidate = previous  # not heard from since leading: hold
                break
            candidate = min(candidate, f.fetch_offset)
        hw = min(own, max(previous, candidate, log_start))
        if hw != previous:
            self._led[key] = (hw, since)
        return hw

    def last_high_watermark(self, topic: str, partition: int) -> int:
        """The high watermark as last computed (0: none yet)."""
        led = self._led.get((topic, partition))
        return 0 if led is None else led[0]

    def hold(self, topic: str, partition: int, high_watermark: int) -> None:
        """Keep the high watermark at least here (the ISR just grew: the new
        member's offset may be below what consumers have seen)."""
        key = (topic, partition)
        previous, since = self._led.get(key, (0, time.monotonic()))
        self._led[key] = (max(previous, high_watermark), since)

    # -- ISR expansion requests --------------------------------------------------------

    def want_expand(self, topic: str, partition: int) -> None:
        """A follower outside the ISR caught up: the ISR manager should look."""
        key = (topic, partition)
        if key not in self._expand:
            self._expand.add(key)
            self._expand_wanted.set()

    def take_expand(self) -> set[tuple[str, int]]:
        """The partitions with followers to add, since the last call."""
        taken, self._expand = self._expand, set()
        self._expand_wanted = anyio.Event()
        return taken

    async def wait_expand(self) -> None:
        """Wait until a follower outside an ISR caught up."""
        if not self._expand:
            await self._expand_wanted.wait()

    def record(
        self,
        topic: str,
        partition: int,
        *,
        replica_id: int,
        fetch_offset: int,
        log_start_offset: int,
        leader_log_end: int,
        now: float | None = None,
    ) -> FollowerFetch:
        """Note a follower's fetch; returns what is now known of it."""
        at = time.monotonic() if now is None else now
        replicas = self._table.setdefault((topic, partition), {})
        previous = replicas.get(replica_id)
        caught_up_at = at if fetch_offset >= leader_log_end else None
        if caught_up_at is None and previous is not None:
            caught_up_at = (
                previous.fetched_at
                if fetch_offset >= previous.leader_log_end
                else previous.caught_up_at
            )
        entry = FollowerFetch(
            replica_id=replica_id,
            fetch_offset=fetch_offset,
            log_start_offset=log_start_offset,
            leader_log_end=leader_log_end,
            fetched_at=at,
            caught_up_at=caught_up_at,
        )
        replicas[replica_id] = entry
        return entry

    def followers(self, topic: str, partition: int) -> dict[int, FollowerFetch]:
        """Every follower seen fetching the partition, by replica id."""
        return dict(self._table.get((topic, partition), {}))

    def forget(self, topic: str, partition: int | None = None) -> None:
        """Drop a partition's followers (or a whole topic's: it was deleted, or
        this broker stopped leading it)."""
        if partition is not None:
            self._table.pop((topic, partition), None)
            self._led.pop((topic, partition), None)
            return
        for key in [k for k in self._table if k[0] == topic]:
            del self._table[key]
        for key in [k for k in self._led if k[0] == topic]:
            del self._led[key]
