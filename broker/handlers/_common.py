"""What several handlers share: the leader epoch they report and stamp."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from storage.partition_log import PartitionLog


def leader_epoch(plog: PartitionLog) -> int:
    """The partition's current leader epoch as this broker reports and stamps it.

    A single node never changes leader, so the epoch only moves when a restored
    snapshot brings batches of a later term (the epoch becomes at least the
    snapshot's ``last_term``). Metadata, Produce, Fetch, ListOffsets and
    OffsetForLeaderEpoch all use this one value, so a client that learnt the epoch
    from Metadata is never told it is fenced or unknown.
    """
    return max(plog.leader_epoch, 0)
