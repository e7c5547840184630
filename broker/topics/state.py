"""A partition's replication state, as every Kafka API answers it.

:class:`PartitionState` is what Produce, Fetch, ListOffsets, OffsetForLeaderEpoch,
Metadata, DeleteRecords, the admin API and snapshots ask about a partition instead
of assuming that this node leads it: the leader and its epoch, the replicas and the
in-sync replicas, and the offsets a consumer may see. It is computed in one place,
:meth:`broker.topics.service.TopicService.state`. On a single node this node leads
every partition, and it is the only replica; in cluster mode the watched cache
says who leads (:func:`cluster_state`).
"""

from __future__ import annotations

from dataclasses import dataclass

from broker.cluster.model import NO_LEADER, PartitionRecord
from protocol.error_codes import ErrorCode
from storage.partition_log import PartitionLog


@dataclass(frozen=True, slots=True, kw_only=True)
class PartitionState:
    """One partition's leader, replicas and visible offsets, as seen by ``node_id``."""

    topic: str
    partition: int
    node_id: int  # the node answering
    leader_id: int
    leader_epoch: int  # the one epoch Metadata, Produce, Fetch and ListOffsets use
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    high_watermark: int  # what consumers may read (the durability rule)
    log_start_offset: int
    last_stable_offset: int  # min(first open transaction's offset, high watermark)

    @property
    def is_local_leader(self) -> bool:
        """Whether this node leads the partition (takes its appends and fetches)."""
        return self.leader_id == self.node_id

    def refusal(self, current_leader_epoch: int = -1) -> ErrorCode | None:
        """Why a data request for the partition is refused here, or None: this node
        does not lead it (NOT_LEADER_OR_FOLLOWER; also while it is offline), or the
        client's ``current_leader_epoch`` (-1: unchecked) is newer than ours
        (UNKNOWN_LEADER_EPOCH) or older (FENCED_LEADER_EPOCH), Kafka's rules
        (KIP-320, ``Partition.checkCurrentLeaderEpoch``)."""
        if not self.is_local_leader:
            return ErrorCode.NOT_LEADER_OR_FOLLOWER
        if current_leader_epoch > self.leader_epoch:
            return ErrorCode.UNKNOWN_LEADER_EPOCH
        if 0 <= current_leader_epoch < self.leader_epoch:
            return ErrorCode.FENCED_LEADER_EPOCH
        return None


def high_watermark(plog: PartitionLog, write_caching: bool) -> int:
    """What consumers may read: the durable offset, or the log end offset for a
    write-caching topic (see :mod:`broker.durability.acks`)."""
    return plog.log_end_offset if write_caching else plog.durable_offset


_own_high_watermark = high_watermark


def leader_epoch(plog: PartitionLog) -> int:
    """The partition's leader epoch as this broker reports and stamps it.

    A single node never changes leader, so the epoch only moves when a restored
    snapshot brings batches of a later term (the epoch becomes at least the
    snapshot's ``last_term``). Every API uses this one value, so a client that learnt
    the epoch from Metadata is never told it is fenced or unknown.
    """
    return max(plog.leader_epoch, 0)


def single_node_state(
    node_id: int, plog: PartitionLog, write_caching: bool
) -> PartitionState:
    """The state of a partition this node alone holds: it leads, it is the replica."""
    hw = high_watermark(plog, write_caching)
    return PartitionState(
        topic=plog.topic,
        partition=plog.partition,
        node_id=node_id,
        leader_id=node_id,
        leader_epoch=leader_epoch(plog),
        replicas=(node_id,),
        isr=(node_id,),
        high_watermark=hw,
        log_start_offset=plog.log_start_offset,
        last_stable_offset=plog.last_stable_offset(hw),
    )


def cluster_state(
    node_id: int,
    record: PartitionRecord | None,
    plog: PartitionLog,
    write_caching: bool,
    *,
    high_watermark: int | None = None,
) -> PartitionState:
    """A partition's state in cluster mode: leader, epoch, replicas and ISR as the
    cluster's cache has them (no record yet: offline), offsets from the local log
    (``high_watermark``: the leader's, computed with its followers)."""
    hw = (
        _own_high_watermark(plog, write_caching)
        if high_watermark is None
        else high_watermark
    )
    replicas: tuple[int, ...] = ()
    isr: tuple[int, ...] = ()
    if record is None:
        leader, epoch = NO_LEADER, 0
    else:
        leader, epoch = record.leader, record.leader_epoch
        replicas, isr = record.replicas, record.isr
    return PartitionState(
        topic=plog.topic,
        partition=plog.partition,
        node_id=node_id,
        leader_id=leader,
        leader_epoch=epoch,
        replicas=replicas,
        isr=isr,
        high_watermark=hw,
        log_start_offset=plog.log_start_offset,
        last_stable_offset=plog.last_stable_offset(hw),
    )
