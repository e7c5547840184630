"""Transaction markers appended to the partitions this broker leads.

The one place a COMMIT/ABORT marker is written locally: the WriteTxnMarkers handler
(a remote coordinator's request) and this broker's own transaction coordinator both
call :meth:`LocalMarkers.write`. A marker closes the producer's transaction in the
partition (``PartitionLog.append_marker``: the ``.txnindex`` gets an ABORT, the last
stable offset moves on) and bumps the producer's epoch in its idempotence state
(``ProducerService.marker_written``). A repeated marker (the coordinator resends
after a crash) is harmless, as in Kafka: it closes a transaction that starts at the
marker itself, so no data changes status.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import structlog

from broker.durability.acks import Durability, PendingAck
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
class LocalMarkers:
    """Writes markers to local partition leaders (acks=all, as Kafka's
    ``KafkaApis.handleWriteTxnMarkersRequest``)."""

    topics: TopicService
    producers: ProducerService
    durability: Durability
    append_gate: AppendGate

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
        """Write a marker to each partition and wait for acks=all; each one's
        error code (NONE: written and durable)."""
        now = time.time_ns() // 1_000_000
        order = list(partitions)
        codes: dict[tuple[str, int], ErrorCode] = {}
        pending: list[PendingAck] = []
        for n, (topic, index) in enumerate(order):
            codes[(topic, index)] = self.write(
                topic,
                index,
                producer_id=producer_id,
                producer_epoch=producer_epoch,
                commit=commit,
                coordinator_epoch=coordinator_epoch,
                now_ms=now,
                pending=pending,
                key=(n, 0),
            )
        if pending:

            def fail(item: PendingAck, code: ErrorCode) -> None:
                codes[order[item.key[0]]] = code

            await self.durability.acks_all(pending, ACK_TIMEOUT_MS, fail, error_code)
        return codes

    async def aclose(self) -> None:
        """Nothing to close: local partitions only."""
