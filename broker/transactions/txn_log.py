"""The transaction state log: ``__transaction_state`` written and read back.

Each change of a transactional id's state is one record (:mod:`protocol
.txn_log_records`, Kafka's key/value) appended to the id's partition
(``abs(hashCode(transactional_id)) % partitions``, as Kafka's
``TransactionStateManager.partitionFor``) through the normal partition append path,
and the coordinator acts on it only once it is durable: fsynced, and on a replicated
partition covered by the high watermark (acks=all; Kafka appends with
``requiredAcks = -1``). Loading replays a partition from its start: the last record
of an id wins, a tombstone deletes it (``TransactionStateManager
.loadTransactionMetadata``).

The topic is created on first need with ``transaction.state.log.num.partitions``
partitions and ``cleanup.policy=compact`` (Kafka's settings: a key's latest record is
all that matters). The default count is 1 on a single node, where every
transactional id is coordinated by the same broker anyway and more partitions would
only mean more directories and more fsyncs; a cluster defaults to 16, like the
offsets topic, to spread coordinators over brokers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import structlog

from broker.cluster.view import TRANSACTION_TOPIC, offsets_partition
from broker.durability.acks import Durability, PendingAck
from broker.topics.errors import error_code
from broker.topics.service import NewTopic, TopicService
from broker.transactions.model import TransactionMetadata, TxnState
from protocol.error_codes import ErrorCode
from protocol.errors import DecodeError
from protocol.txn_log_records import (
    FLEXIBLE_VALUE_VERSION,
    VALUE_VERSION,
    TxnLogValue,
    encode_key,
    encode_value,
    read_entries,
    txn_log_batch,
)
from storage.errors import StorageError
from storage.partition_log import PartitionLog

log = structlog.get_logger("broker.transactions")

TOPIC_CONFIGS = {"cleanup.policy": "compact"}
WRITE_TIMEOUT_MS = 5_000  # Kafka's transaction.state.log request timeout
_READ_BYTES = 1 << 20


def partition_for(transactional_id: str, partitions: int) -> int:
    """The state log partition of a transactional id (Kafka's rule)."""
    return offsets_partition(transactional_id, partitions)


def to_value(meta: TransactionMetadata) -> TxnLogValue:
    """The log value of a transactional id's state."""
    by_topic: dict[str, list[int]] = {}
    for topic, index in sorted(meta.partitions):
        by_topic.setdefault(topic, []).append(index)
    return TxnLogValue(
        producer_id=meta.producer_id,
        producer_epoch=meta.producer_epoch,
        timeout_ms=meta.timeout_ms,
        status=int(meta.state),
        # Kafka writes null partitions in Empty
        partitions=None
        if meta.state is TxnState.EMPTY
        else tuple((t, tuple(ids)) for t, ids in by_topic.items()),
        last_update_ms=meta.last_update_ms,
        start_ms=meta.start_ms,
        groups=tuple(sorted(meta.groups)),
    )


def from_value(transactional_id: str, value: TxnLogValue) -> TransactionMetadata:
    """A transactional id's state from its log value.

    Raises:
        ValueError: an unknown state code.
    """
    return TransactionMetadata(
        transactional_id=transactional_id,
        producer_id=value.producer_id,
        producer_epoch=value.producer_epoch,
        timeout_ms=value.timeout_ms,
        state=TxnState(value.status),
        partitions=frozenset(
            (topic, index) for topic, ids in value.partitions or () for index in ids
        ),
        groups=frozenset(value.groups),
        start_ms=value.start_ms,
        last_update_ms=value.last_update_ms,
    )


def encode(meta: TransactionMetadata) -> tuple[bytes, bytes]:
    """The record (key, value) of a state: value version 0, or 1 when the
    transaction has consumer groups (kept in a tagged field)."""
    version = FLEXIBLE_VALUE_VERSION if meta.groups else VALUE_VERSION
    return encode_key(meta.transactional_id), encode_value(
        to_value(meta), version=version
    )


@dataclass(slots=True)
class Loaded:
    """What one state log partition holds: each id's last state."""

    txns: dict[str, TransactionMetadata] = field(default_factory=dict)
    records: int = 0
    skipped: int = 0


def _read_log(plog: PartitionLog, start: int, end: int) -> Iterator[bytes]:
    offset = start
    while offset < end:
        result = plog.read(offset, _READ_BYTES, upper_bound=end)
        if result.next_offset <= offset:
            return
        yield b"".join(result.buffers)
        offset = result.next_offset


def read_partition(plog: PartitionLog, end: int) -> Loaded:
    """Replay a state log partition up to ``end`` (blocking: a worker thread).

    Raises:
        StorageError: the log cannot be read.
        RecordBatchError: a batch is corrupt.
    """
    out = Loaded()
    for chunk in _read_log(plog, plog.log_start_offset, end):
        for entry in read_entries(chunk):
            if isinstance(entry, DecodeError):
                out.skipped += 1
                continue
            out.records += 1
            if entry.value is None:
                out.txns.pop(entry.transactional_id, None)
                continue
            try:
                out.txns[entry.transactional_id] = from_value(
                    entry.transactional_id, entry.value
                )
            except ValueError:
                out.skipped += 1
    return out


class TxnLog:
    """Appends states to ``__transaction_state`` and waits for them to be durable."""

    def __init__(
        self, topics: TopicService, durability: Durability, *, min_isr: bool = False
    ) -> None:
        """``min_isr`` (cluster mode): a write needs the topic's
        ``min.insync.replicas`` in the ISR (``transaction.state.log.min.isr``)."""
        self.topics = topics
        self.durability = durability
        self.min_isr = min_isr

    def partitions(self) -> int | None:
        """The topic's partition count (None: not created yet)."""
        meta = self.topics.find(TRANSACTION_TOPIC)
        return None if meta is None else meta.partition_count

    def partition_of(self, transactional_id: str) -> int | None:
        """The partition of ``transactional_id`` (None: no topic yet)."""
        count = self.partitions()
        return None if count is None else partition_for(transactional_id, count)

    def leader_epoch(self, partition: int) -> int:
        """The partition's leader epoch here: Kafka's coordinator epoch (-1: not
        the leader)."""
        meta = self.topics.find(TRANSACTION_TOPIC)
        if meta is None:
            return -1
        try:
            plog = self.topics.logs.partition(TRANSACTION_TOPIC, partition)
        except StorageError:
            return -1
        state = self.topics.state(meta, plog)
        return state.leader_epoch if state.is_local_leader else -1

    async def ensure_topic(self, partitions: int) -> None:
        """Create the topic if it does not exist (a single node's first
        transactional producer).

        Raises:
            StorageError: it could not be created.
        """
        if self.topics.find(TRANSACTION_TOPIC) is not None:
            return
        results = await self.topics.create_topics(
            [NewTopic(TRANSACTION_TOPIC, partitions, dict(TOPIC_CONFIGS))],
            reason="transactional producer",
        )
        for result in results:
            if isinstance(result, StorageError) and (
                self.topics.find(TRANSACTION_TOPIC) is None
            ):
                raise result

    async def write(self, meta: TransactionMetadata) -> ErrorCode:
        """Append ``meta`` and wait until it is durable (acks=all); NONE once it is,
        else the coordinator error Kafka answers (``TransactionStateManager
        .appendTransactionToLog``: NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE)."""
        key, value = encode(meta)
        return await self._write(meta.transactional_id, key, value)

    async def remove(self, transactional_id: str) -> ErrorCode:
        """Append the id's tombstone (an expired id) and wait until it is durable;
        as :meth:`write`."""
        return await self._write(transactional_id, encode_key(transactional_id), None)

    async def _write(
        self, transactional_id: str, key: bytes, value: bytes | None
    ) -> ErrorCode:
        topics = self.topics
        tmeta = topics.find(TRANSACTION_TOPIC)
        if tmeta is None:
            return ErrorCode.COORDINATOR_NOT_AVAILABLE
        partition = partition_for(transactional_id, tmeta.partition_count)
        try:
            plog = topics.logs.partition(TRANSACTION_TOPIC, partition)
            state = topics.state(tmeta, plog)
            if not state.is_local_leader:
                return ErrorCode.NOT_COORDINATOR
            need = tmeta.config.min_insync_replicas if self.min_isr else 1
            if len(state.isr) < need:
                # Kafka: NOT_ENOUGH_REPLICAS, answered COORDINATOR_NOT_AVAILABLE
                log.warning(
                    "txn_state_not_enough_replicas",
                    transactional_id=transactional_id,
                    isr=len(state.isr),
                    min_insync_replicas=need,
                )
                return ErrorCode.COORDINATOR_NOT_AVAILABLE
            batch = txn_log_batch([(key, value)], timestamp=_now_ms())
            result = plog.append(batch, leader_epoch=state.leader_epoch)
        except StorageError as e:
            log.error(
                "txn_state_write_failed",
                transactional_id=transactional_id,
                error=str(e),
            )
            return _append_error(error_code(e))
        durability = self.durability
        durability.after_append(plog, tmeta.config.write_caching)
        replicated: Callable[[], int | None] | None = None
        if len(state.isr) > 1:
            replicated = lambda: topics.replicated_high_watermark(tmeta, plog)  # noqa: E731
        elif not durability.needs_ack_wait(-1, tmeta.config.write_caching):
            replicated = lambda: plog.log_end_offset  # noqa: E731
        failed: list[ErrorCode] = []
        await durability.acks_all(
            [PendingAck(plog, result.last_offset + 1, (0, 0), replicated)],
            WRITE_TIMEOUT_MS,
            lambda _item, code: failed.append(code),
            error_code,
        )
        if failed:
            log.warning(
                "txn_state_not_durable",
                transactional_id=transactional_id,
                error=failed[0].name,
            )
            return _append_error(failed[0])
        if need > 1 and topics.isr_size(TRANSACTION_TOPIC, partition) < need:
            return ErrorCode.COORDINATOR_NOT_AVAILABLE  # ISR shrank meanwhile
        return ErrorCode.NONE


def _append_error(code: ErrorCode) -> ErrorCode:
    """An append's error as the transaction APIs answer it (Kafka's mapping)."""
    if code in (ErrorCode.NOT_LEADER_OR_FOLLOWER, ErrorCode.KAFKA_STORAGE_ERROR):
        return ErrorCode.NOT_COORDINATOR
    return ErrorCode.COORDINATOR_NOT_AVAILABLE


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
