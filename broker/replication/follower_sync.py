"""When a follower's appends must be on its disk: the deferred fsync of catch-up.

The promise is Kafka's with fsync added: a record acknowledged to an acks=all
producer is fsynced on every member of the ISR. A follower's fetch offset is the
only thing the leader learns of its log, and the leader uses it in two ways only:

- the high watermark of a partition is the smallest fetch offset of its ISR
  members and never moves back while the leader leads
  (:class:`broker.topics.followers.FollowerProgress`), so a fetch offset below the
  current high watermark cannot raise it: acks=all waits for nothing it says;
- a replica outside the ISR joins it only once its fetch offset has reached the
  high watermark (:class:`broker.replication.isr.IsrManager`, Kafka's
  ``Partition.maybeExpandIsr``), so a fetch offset below it cannot add it.

The high watermark a leader answers with only grows while it leads, so a follower
whose log end is still below the high watermark of the last answer (from the same
leader and leader epoch) may fetch again before that log end is durable: what it
reports then moves nothing on the leader. Before a Fetch whose offset reaches that
high watermark, and whenever the high watermark is not known (a new leader or
epoch: its first answer may carry a lower one), the follower waits until its log is
fsynced up to the offset it reports. Only then can that offset raise the high
watermark or bring the follower into the ISR.

So a follower far behind appends and fetches back to back while the broker's group
commit fsyncs in a worker thread at the same time (:meth:`GroupCommit.mark_dirty`);
it waits for that fsync only when it is about to report an offset that matters, or
when more than ``max_unsynced_bytes`` wait to be fsynced (which bounds what a crash
of the machine can take back, and the length of the last fsync). A follower that
keeps up ends every Fetch at the leader's log end, at or above its high watermark,
and so still makes every append durable before its next Fetch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import anyio

from broker.durability.group_commit import GroupCommit

if TYPE_CHECKING:
    from storage.partition_log import PartitionLog

MAX_UNSYNCED_BYTES: Final = 64 * 1024 * 1024


def must_sync_before_reporting(
    fetch_offset: int, leader_high_watermark: int, durable_offset: int
) -> bool:
    """Whether a follower must fsync before it sends ``fetch_offset`` to a leader
    whose last high watermark was ``leader_high_watermark`` (-1: unknown)."""
    if durable_offset >= fetch_offset:
        return False
    return leader_high_watermark < 0 or fetch_offset >= leader_high_watermark


class FollowerSync:
    """Makes a follower's appends durable when (and only when) they must be."""

    def __init__(
        self,
        commit: GroupCommit | None,
        *,
        max_unsynced_bytes: int = MAX_UNSYNCED_BYTES,
    ) -> None:
        self._commit = commit
        self.max_unsynced_bytes = max_unsynced_bytes
        self._unsynced: dict[PartitionLog, int] = {}  # bytes not known durable
        self.syncs_waited = 0  # times a fetch waited for an fsync (metrics, tests)

    async def appended(
        self, plog: PartitionLog, end: int, size: int, leader_high_watermark: int
    ) -> None:
        """``size`` bytes were appended up to ``end``: wait for them to be durable
        if ``end`` will be reported at or above the high watermark, or too much
        waits to be fsynced; otherwise start an fsync and return at once."""
        unsynced = self._unsynced.get(plog, 0) + size
        if unsynced >= self.max_unsynced_bytes or must_sync_before_reporting(
            end, leader_high_watermark, -1
        ):
            await self.durable(plog, end)
            return
        self._unsynced[plog] = unsynced
        if self._commit is not None:
            self._commit.mark_dirty(plog)  # overlaps the next Fetch and append

    async def before_fetch(
        self, plog: PartitionLog, fetch_offset: int, leader_high_watermark: int
    ) -> None:
        """Wait until ``fetch_offset`` may be reported (see the module docstring)."""
        if must_sync_before_reporting(
            fetch_offset, leader_high_watermark, plog.durable_offset
        ):
            await self.durable(plog, fetch_offset)

    async def durable(self, plog: PartitionLog, end: int) -> None:
        """Return once ``plog`` is fsynced up to ``end``."""
        self.syncs_waited += 1
        if self._commit is not None:
            await self._commit.wait_durable(plog, end)
        else:
            await anyio.to_thread.run_sync(plog.sync)
        self._unsynced.pop(plog, None)

    def forget(self, plog: PartitionLog) -> None:
        """The follower stopped copying ``plog`` (or truncated it)."""
        self._unsynced.pop(plog, None)
