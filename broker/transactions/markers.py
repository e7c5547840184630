"""Transaction markers appended to the partitions this broker leads.

The one place a COMMIT/ABORT marker is written locally: the WriteTxnMarkers handler
(a remote coordinator's request) and this broker's own transaction coordinator both
call :meth:`LocalMarkers.write`. A marker closes the producer's transaction in the
partition (``PartitionLog.append_marker``: the ``.txnindex`` gets an ABORT, the last
stable offset moves on) and bumps the producer's epoch in its idempotence state
(``ProducerService.marker_written``). A repeated marker (the coordinator resends
after a crash) is harmless, as in Kafka: it closes a transaction that starts at the
marker itself, so no data changes status.

A marker on a ``__consumer_offsets`` partition (cluster mode: the coordinator adds
a group's offsets partition to the transaction, as Kafka does) also completes the
producer's pending transactional offsets of that partition's groups once it is
replicated (``GroupService.txn_marker_written``, Kafka's
``GroupCoordinator.onTransactionCompleted``), whichever route brought it here.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from broker.durability.acks import Durability, PendingAck
from broker.groups.service import GroupService
from broker.producers.service import ProducerService
from broker.snapshots.gate import AppendGate
from broker.topics.errors import error_code
from broker.topics.service import TopicService
from broker.transactions.model import TopicPartition
from protocol.error_codes import ErrorCode
from storage.errors import StorageError

log = structlog.get_logger("broker.transactions")

ACK_TIMEOUT_MS = 30_000  # Kafka: the coordinator's request timeout


class MarkerSender(Protocol):
    """Writes a transaction's markers to its partitions (locally, or through
    WriteTxnMarkers to each partition's leader)."""

    async def write_all(
        self,
        partitions: Iterable[TopicPartition],
        *,
        producer_id: int,
        producer_epoch: int,
        commit: bool,
        coordinator_epoch: int,
    ) -> dict[TopicPartition, ErrorCode]: ...

    async def aclose(self) -> None:
        """Close what the sender holds open (connections to other brokers)."""


@dataclass(frozen=True, slots=True)
class MarkerWrite:
    """One marker for one partition."""

    topic: str
    index: int
    producer_id: int
    producer_epoch: int
    commit: bool
    coordinator_epoch: int


@dataclass(slots=True)
class MarkerBatch:
    """Markers appended by :meth:`LocalMarkers.append`, to be settled (acks,
    offsets completion) by :meth:`LocalMarkers.settle`."""

    writes: Sequence[MarkerWrite]
    codes: list[ErrorCode]  # one per write, final once settled
    pending: list[PendingAck] = field(default_factory=list)  # keyed (write, 0)
    completes: list[int] = field(default_factory=list)  # writes on offsets topics

    @property
    def settled(self) -> bool:
        """Nothing to wait for: every code is final."""
        return not self.pending and not self.completes


@dataclass(frozen=True, slots=True)
class LocalMarkers:
    """Writes markers to local partition leaders (acks=all, as Kafka's
    ``KafkaApis.handleWriteTxnMarkersRequest``)."""

    topics: TopicService
    producers: ProducerService
    durability: Durability
    append_gate: AppendGate
    groups: GroupService

    def append(self, writes: Sequence[MarkerWrite]) -> MarkerBatch:
        """Append each marker (no waiting); settle the batch before answering."""
        now = time.time_ns() // 1_000_000
        batch = MarkerBatch(writes, [])
        for n, w in enumerate(writes):
            code = self.write(
                w.topic,
                w.index,
                producer_id=w.producer_id,
                producer_epoch=w.producer_epoch,
                commit=w.commit,
                coordinator_epoch=w.coordinator_epoch,
                now_ms=now,
                pending=batch.pending,
                key=(n, 0),
            )
            batch.codes.append(code)
            if code == ErrorCode.NONE and self.groups.completes_txn_offsets(w.topic):
                batch.completes.append(n)
        return batch

    async def settle(self, batch: MarkerBatch) -> None:
        """Wait until the batch's markers are durable (acks=all; a failure
        replaces that write's code), then complete the pending offsets of the
        ``__consumer_offsets`` partitions that got one."""
        if batch.pending:

            def fail(item: PendingAck, code: ErrorCode) -> None:
                batch.codes[item.key[0]] = code

            await self.durability.acks_all(
                batch.pending, ACK_TIMEOUT_MS, fail, error_code
            )
        for n in batch.completes:
            if batch.codes[n] == ErrorCode.NONE:
                w = batch.writes[n]
                await self.groups.txn_marker_written(
                    w.topic, w.index, w.producer_id, w.producer_epoch, w.commit
                )

    def write(
        self,
        topic: str,
        index: int,
        *,
        producer_id: int,
        producer_epoch: int,
        commit: bool,
        coordinator_epoch: int,
        now_ms: int,
        pending: list[PendingAck],
        key: tuple[int, int],
    ) -> ErrorCode:
        """Append one marker to one partition; its error code (NONE: appended,
        and an ack to wait for is added to ``pending`` under ``key``)."""
        meta = self.topics.find(topic)
        if meta is None:
            return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        try:
            plog = self.topics.logs.partition(meta.name, index)
            state = self.topics.state(meta, plog)
            if not state.is_local_leader or self.append_gate.busy(plog):
                return ErrorCode.NOT_LEADER_OR_FOLLOWER
            result = plog.append_marker(
                producer_id,
                producer_epoch,
                commit,
                coordinator_epoch,
                leader_epoch=state.leader_epoch,
                now_ms=now_ms,
            )
        except StorageError as exc:
            code = error_code(exc)
            log.info(
                "txn_marker_refused",
                topic=topic,
                partition=index,
                producer_id=producer_id,
                error=code.name,
                detail=str(exc),
            )
            return code
        self.producers.marker_written(plog, producer_id, producer_epoch)
        self.durability.after_append(plog, meta.config.write_caching)
        target = result.last_offset + 1
        if len(state.isr) > 1:
            topics = self.topics

            def replicated() -> int | None:
                return topics.replicated_high_watermark(meta, plog)

            pending.append(PendingAck(plog, target, key, replicated))
        elif self.durability.needs_ack_wait(-1, meta.config.write_caching):
            pending.append(PendingAck(plog, target, key))
        return ErrorCode.NONE

    async def write_all(
        self,
        partitions: Iterable[tuple[str, int]],
        *,
        producer_id: int,
        producer_epoch: int,
        commit: bool,
        coordinator_epoch: int,
    ) -> dict[tuple[str, int], ErrorCode]:
        """Write a marker to each partition and wait for acks=all (and the
        offsets completion); each one's error code (NONE: written and durable)."""
        order = list(partitions)
        batch = self.append(
            [
                MarkerWrite(
                    topic,
                    index,
                    producer_id,
                    producer_epoch,
                    commit,
                    coordinator_epoch,
                )
                for topic, index in order
            ]
        )
        await self.settle(batch)
        return dict(zip(order, batch.codes, strict=True))

    async def aclose(self) -> None:
        """Nothing to close: local partitions only."""
