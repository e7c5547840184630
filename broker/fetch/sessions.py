"""The incremental fetch session cache (KIP-227; Kafka's ``FetchSessionCache``).

A session remembers, per partition of one fetcher, what the fetcher last asked for
(fetch offset, max bytes, leader epochs, its log start) and what it was last told
(high watermark, log start offset), so later fetches name only what changed and
responses carry only partitions with news. Nothing else is held: no records, no
log handles.

The cache holds at most ``max_slots`` sessions (``max.incremental.fetch.session.
cache.slots``, default 1000; 0 turns sessions off). When it is full, a new session
takes a slot only by evicting one, by Kafka's rules:

1. a session unused for more than ``eviction_ms``
   (``min.incremental.fetch.session.eviction.ms``, default 120 s), the least
   recently used first;
2. else the least valuable evictable session, ranked by (privileged, partition
   count, id), if the newcomer ranks strictly higher by (privileged, partition
   count): a consumer's session is evictable once it is older than
   ``eviction_ms``; a privileged (follower's) one only by another privileged
   session, and likewise only once older than ``eviction_ms``, while every
   consumer session is evictable by a privileged newcomer.

Otherwise no session is created and the fetch is answered without one (session id
0), which clients take as "keep sending full fetches".

Pure state: the caller passes the time (milliseconds, monotonic) and owns the
locking (everything runs on the event loop).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

INVALID_SESSION_ID: Final = 0
INITIAL_EPOCH: Final = 0
FINAL_EPOCH: Final = -1
_MAX_EPOCH: Final = 2**31 - 1

DEFAULT_SLOTS: Final = 1000
DEFAULT_EVICTION_MS: Final = 120_000

# (topic name, or topic id in a v13+ session; partition index)
PartitionKey = tuple[str | bytes, int]


def next_epoch(epoch: int) -> int:
    """The epoch after ``epoch`` (wraps to 1, as Kafka's ``FetchMetadata``)."""
    if epoch < 0:
        return FINAL_EPOCH
    return 1 if epoch == _MAX_EPOCH else epoch + 1


@dataclass(slots=True, kw_only=True)
class CachedPartition:
    """One partition of a session. Its request fields carry FetchPartition's names,
    so the fetch handler reads either the same way."""

    topic: str
    topic_id: bytes
    partition: int
    fetch_offset: int
    partition_max_bytes: int
    current_leader_epoch: int = -1
    last_fetched_epoch: int = -1
    log_start_offset: int = -1  # the fetcher's (a follower's) log start
    # what the fetcher was last told; -1 makes the next response include it
    high_watermark: int = -1
    local_log_start: int = -1


@dataclass(slots=True, kw_only=True, eq=False)
class FetchSession:
    """A fetcher's session: its partitions in response order and its epoch."""

    id: int
    privileged: bool
    uses_topic_ids: bool
    created_ms: int
    last_used_ms: int
    epoch: int = 1  # the epoch the next incremental request must carry
    partitions: dict[PartitionKey, CachedPartition] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return len(self.partitions)


class FetchSessionCache:
    """Sessions by id, bounded by ``max_slots`` (see the module docstring)."""

    def __init__(
        self,
        max_slots: int = DEFAULT_SLOTS,
        eviction_ms: int = DEFAULT_EVICTION_MS,
    ) -> None:
        self.max_slots = max_slots
        self.eviction_ms = eviction_ms
        self._sessions: dict[int, FetchSession] = {}
        self.created = 0
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._sessions)

    def __iter__(self) -> Iterator[FetchSession]:
        return iter(list(self._sessions.values()))

    @property
    def partition_count(self) -> int:
        """Partitions cached over all sessions."""
        return sum(s.size for s in self._sessions.values())

    def get(self, session_id: int) -> FetchSession | None:
        return self._sessions.get(session_id)

    def remove(self, session_id: int) -> FetchSession | None:
        return self._sessions.pop(session_id, None)

    def touch(self, session: FetchSession, now_ms: int) -> None:
        session.last_used_ms = now_ms

    def create(
        self,
        partitions: dict[PartitionKey, CachedPartition],
        *,
        privileged: bool,
        uses_topic_ids: bool,
        now_ms: int,
    ) -> FetchSession | None:
        """A new session holding ``partitions``, or None when no slot is free and
        none may be taken (KIP-227's eviction rules)."""
        if self.max_slots <= 0:
            return None
        if len(self._sessions) >= self.max_slots and not self._evict_for(
            privileged, len(partitions), now_ms
        ):
            return None
        session = FetchSession(
            id=self._new_id(),
            privileged=privileged,
            uses_topic_ids=uses_topic_ids,
            created_ms=now_ms,
            last_used_ms=now_ms,
            epoch=next_epoch(INITIAL_EPOCH),
            partitions=partitions,
        )
        self._sessions[session.id] = session
        self.created += 1
        return session

    def _new_id(self) -> int:
        while True:
            candidate = secrets.randbelow(_MAX_EPOCH) + 1  # 1 .. 2**31 - 1
            if candidate not in self._sessions:
                return candidate

    def _evict_for(self, privileged: bool, size: int, now_ms: int) -> bool:
        """Make room for a session of ``size`` partitions; whether it did."""
        sessions = self._sessions.values()
        stale = min(sessions, key=lambda s: (s.last_used_ms, s.id))
        if now_ms - stale.last_used_ms > self.eviction_ms:
            return self._evict(stale)
        candidates = [
            s
            for s in sessions
            if now_ms - s.created_ms > self.eviction_ms
            or (privileged and not s.privileged)
        ]
        if not candidates:
            return False
        weakest = min(candidates, key=lambda s: (s.privileged, s.size, s.id))
        if (privileged, size) <= (weakest.privileged, weakest.size):
            return False
        return self._evict(weakest)

    def _evict(self, session: FetchSession) -> bool:
        del self._sessions[session.id]
        self.evicted += 1
        return True
