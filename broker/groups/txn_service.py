"""TxnOffsetCommit and transaction completion: the group service's transactional part.

:class:`TxnOffsetCommits` is a mixin of :class:`~broker.groups.service.GroupService`
(its attributes are the service's): TxnOffsetCommit writes a producer's pending
offsets (single node: the offset store, fsynced; cluster mode: a transactional
batch in ``__consumer_offsets``), and the end of the producer's transaction commits
or drops them (:meth:`TxnOffsetCommits.complete_txn_offsets`, called by the
transaction coordinator on a single node, and by WriteTxnMarkers on
``__consumer_offsets`` in a cluster). The rules: :mod:`broker.groups.txn_offsets`
and :mod:`storage.txn_offsets`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import TYPE_CHECKING

import structlog

from broker.cluster.view import OFFSETS_TOPIC
from broker.groups.coordinator import GroupCoordinator
from broker.groups.flusher import Durability
from broker.groups.offsets import CommitPartition, plan_commit
from broker.groups.settings import GroupConfig
from broker.groups.txn_offsets import validate_txn_commit
from protocol.error_codes import ErrorCode
from storage.errors import ProducerFenced, StorageError
from storage.offset_store import OffsetStore

if TYPE_CHECKING:
    from broker.groups.replicated import ReplicatedOffsets

log = structlog.get_logger("broker.groups")


class TxnOffsetCommits:
    """The transactional offsets of a :class:`GroupService` (a mixin)."""

    config: GroupConfig
    store: OffsetStore
    replicated: ReplicatedOffsets | None
    coordinator: GroupCoordinator
    _durability: Durability
    _partition_exists: Callable[[str, int], bool]
    _clock: Callable[[], int]
    _wall: Callable[[], int]

    async def txn_commit_offsets(
        self,
        group_id: str,
        producer_id: int,
        producer_epoch: int,
        member_id: str,
        generation_id: int,
        group_instance_id: str | None,
        partitions: list[CommitPartition],
    ) -> dict[tuple[str, int], ErrorCode]:
        """TxnOffsetCommit: per-partition errors, answered once the pending offsets
        are durable (fsynced; cluster mode: replicated). They stay invisible to
        OffsetFetch until :meth:`complete_txn_offsets` commits them."""
        if not group_id:
            check = ErrorCode.INVALID_GROUP_ID
        elif producer_id < 0 or producer_epoch < 0:
            check = ErrorCode.INVALID_REQUEST  # no producer to hold the offsets
        else:
            check = validate_txn_commit(
                self.coordinator.groups.get(group_id),
                member_id,
                generation_id,
                group_instance_id,
            )
        if check != ErrorCode.NONE:
            return {(p.topic, p.partition): check for p in partitions}
        accepted, errors = plan_commit(
            partitions,
            now_ms=self._wall(),
            partition_exists=self._partition_exists,
            metadata_max_bytes=self.config.offset_metadata_max_bytes,
        )
        if not accepted:
            return errors
        self.coordinator.ensure_group(group_id, self._clock())
        if self.replicated is not None:
            code = await self.replicated.txn_commit(
                group_id, producer_id, producer_epoch, accepted
            )
        else:
            code = ErrorCode.NONE
            try:
                seq = self.store.txn_commit(
                    group_id, producer_id, producer_epoch, accepted
                )
                await self._durability.wait_durable(self.store, seq)
            except ProducerFenced:
                code = ErrorCode.INVALID_PRODUCER_EPOCH
            except StorageError as e:
                log.error("txn_offset_commit_failed", group_id=group_id, error=str(e))
                code = ErrorCode.COORDINATOR_NOT_AVAILABLE
        for c in accepted:
            errors[(c.topic, c.partition)] = code
        return errors

    async def complete_txn_offsets(
        self,
        producer_id: int,
        producer_epoch: int,
        groups: Collection[str],
        commit: bool,
    ) -> None:
        """The transaction of ``producer_id`` ended (the transaction coordinator's
        COMMIT or ABORT for the groups it added with AddOffsetsToTxn): its pending
        offsets in ``groups`` become committed (each unless the partition was
        committed after it) or are dropped. A completion older than the pending
        offsets' epoch is ignored, as a fenced marker is.

        Async because on a single node the completion is written to the offset
        store and fsynced before this returns. In cluster mode the COMMIT/ABORT
        marker in the group's ``__consumer_offsets`` partition is the durable
        record: WriteTxnMarkers calls this once the marker is replicated, and this
        only applies it in memory.

        Raises:
            StorageError: the completion could not be written or fsynced (single
                node); the coordinator retries, as it retries a marker.
        """
        if self.replicated is not None:
            self.replicated.complete_txn(producer_id, producer_epoch, groups, commit)
            return
        seq, applied = self.store.complete_txn(
            producer_id, producer_epoch, groups, commit
        )
        if applied is None:
            log.warning(
                "txn_offsets_completion_fenced",
                producer_id=producer_id,
                producer_epoch=producer_epoch,
            )
            return
        await self._durability.wait_durable(self.store, seq)
        log.debug(
            "txn_offsets_completed",
            producer_id=producer_id,
            commit=commit,
            committed=applied,
        )

    def completes_txn_offsets(self, topic: str) -> bool:
        """Whether a transaction marker on ``topic`` completes pending offsets
        (cluster mode, ``__consumer_offsets``)."""
        return self.replicated is not None and topic == OFFSETS_TOPIC

    async def txn_marker_written(
        self,
        topic: str,
        partition: int,
        producer_id: int,
        producer_epoch: int,
        commit: bool,
    ) -> None:
        """A COMMIT/ABORT marker was written (and replicated) to ``topic``'s
        ``partition``: in cluster mode, on ``__consumer_offsets``, it completes
        the producer's pending offsets of the groups of that partition (Kafka's
        ``GroupCoordinator.onTransactionCompleted``)."""
        replicated = self.replicated
        if replicated is None or topic != OFFSETS_TOPIC:
            return
        groups = replicated.txn_groups_of(partition, producer_id)
        if groups:
            await self.complete_txn_offsets(producer_id, producer_epoch, groups, commit)
