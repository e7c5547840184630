"""Followers' fetch progress on the leader: the table ISR decisions will read.

Every follower Fetch (``replica_id >= 0``) records, per partition, the offset the
follower asked for (everything below it is on the follower's disk: the replica
fetcher fetches again only after its appends are durable), when, and the leader's
log end offset at that moment. Kafka keeps the same facts in its ``Replica`` state
(``logEndOffset``, ``lastFetchLeaderLogEndOffset``, ``lastCaughtUpTimeMs``) to
shrink and expand the ISR. In memory only: a new leader learns them again from the
followers' next fetches.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class FollowerFetch:
    """The latest fetch of one follower for one partition."""

    replica_id: int
    fetch_offset: int  # the follower's log end offset (durable on the follower)
    log_start_offset: int  # the follower's log start offset (-1: not sent)
    leader_log_end: int  # the leader's log end offset when it fetched
    fetched_at: float  # time.monotonic()
    caught_up_at: float | None  # last fetch that reached the leader's log end


class FollowerProgress:
    """``(topic, partition) -> {replica_id: FollowerFetch}``."""

    def __init__(self) -> None:
        self._table: dict[tuple[str, int], dict[int, FollowerFetch]] = {}

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
            caught_up_at = previous.caught_up_at
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
            return
        for key in [k for k in self._table if k[0] == topic]:
            del self._table[key]
