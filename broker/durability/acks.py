"""Where acks=all waits: durability of appends, as the broker composes it.

Policy (documented choice): **the high watermark is the durable offset.** A consumer
only ever reads records that are on disk, so a record it has seen cannot vanish in a
crash (Redpanda's default behaviour, ``write_caching`` off), and a snapshot of a
partition never holds a record a crash could take back. The cost is one fsync of
latency between a produce and its visibility, which group commit
(:mod:`broker.durability.group_commit`) keeps small. acks=1 answers after the write
(page cache) and needs no fsync round to complete; the data is visible to consumers
after the next round, which starts at once. acks=all answers once the fsync covering
the partition's last offset has finished (:meth:`Durability.acks_all`), or
REQUEST_TIMED_OUT after the request's ``timeout_ms``; a failed fsync fails every
acks=all waiter of that partition with KAFKA_STORAGE_ERROR, and nothing is
acknowledged as durable after it. A topic with ``write.caching=true`` is visible at
once, acks=all does not wait for it, and its partitions are fsynced every
``flush.ms`` (:meth:`Durability.flush_job`).

:class:`Durability` owns the group commit (:class:`GroupCommit`, which fsyncs dirty
partitions in worker threads) and the waiters woken when a partition's high
watermark moves (:class:`PartitionWaiters`: Fetch long polls, acks=all produce).
An append calls :meth:`Durability.after_append`.

On a partition whose ISR holds followers (cluster mode), the high watermark is
also bounded by what every ISR follower has fetched (durable on its disk), and
acks=all waits for that high watermark, woken by the followers' fetches; an
answer whose partition's leadership moved away meanwhile is NOT_LEADER_OR_FOLLOWER,
and one whose ISR shrank below the topic's ``min.insync.replicas`` by the time the
high watermark covers it is NOT_ENOUGH_REPLICAS_AFTER_APPEND (the records stay in
the log, as in Kafka).
A partition led alone (RF=1, or its ISR shrank to the leader) takes exactly the
path above.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import anyio

from broker.durability.group_commit import GroupCommit, PartitionWaiters, SyncableLog
from broker.metrics import Metrics
from protocol.error_codes import ErrorCode
from storage.errors import StorageError
from storage.log_manager import LogManager
from storage.partition_log import PartitionLog

FLUSH_CHECK_S = 0.25


@dataclass(frozen=True, slots=True)
class PendingAck:
    """One acks=all answer waiting for its partition's fsync (and, on a partition
    with followers, for its high watermark)."""

    plog: SyncableLog
    target: int  # durable_offset (and the high watermark) must reach this
    key: tuple[int, int]  # which answer: (topic index, partition index)
    # A replicated partition's high watermark while this broker leads it (None:
    # no longer); None here: a partition without followers, fsync only.
    replicated: Callable[[], int | None] | None = None
    # Whether the ISR still holds min.insync.replicas members once the high
    # watermark covers the answer (None: min.insync.replicas is 1, always).
    enough_replicas: Callable[[], bool] | None = None


def _reached(item: PendingAck) -> ErrorCode | None:
    """The answer of a replicated write its high watermark covers: success, or
    NOT_ENOUGH_REPLICAS_AFTER_APPEND when the ISR shrank below min.insync.replicas
    meanwhile (Kafka's ``Partition.checkEnoughReplicasReachOffset``)."""
    enough = item.enough_replicas
    if enough is None or enough():
        return None
    return ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND


def _late(item: PendingAck) -> ErrorCode | None:
    """An answer not reached before the timeout: its error, None if its records
    got there anyway (durable, or replicated)."""
    if item.replicated is None:
        if item.plog.durable_offset >= item.target:
            return None
        return ErrorCode.REQUEST_TIMED_OUT
    hw = item.replicated()
    if hw is None:
        return ErrorCode.NOT_LEADER_OR_FOLLOWER
    return _reached(item) if hw >= item.target else ErrorCode.REQUEST_TIMED_OUT


class Durability:
    """The group commit and the partition waiters, and the rules that use them."""

    def __init__(self, metrics: Metrics) -> None:
        self.waiters = PartitionWaiters()
        self._metrics = metrics

        def on_round(n: int) -> None:
            metrics.fsyncs += 1

        self.commit = GroupCommit(self.waiters, on_round=on_round)
        self._last_flush: dict[int, float] = {}

    def after_append(self, plog: PartitionLog, write_caching: bool) -> None:
        """Schedule durability/visibility after an append."""
        if write_caching:
            self.waiters.notify(plog)
        else:
            self.commit.mark_dirty(plog)

    def fail_logs(self, logs: Sequence[SyncableLog], error: StorageError) -> None:
        """Partitions that went away (topic deleted): fail their acks=all waiters with
        ``error`` and wake every long poll."""
        for plog in logs:
            self.commit.fail_log(plog, error)
        self.waiters.notify_all()

    @staticmethod
    def needs_ack_wait(acks: int, write_caching: bool) -> bool:
        """Whether an answer with these acks waits for the fsync (acks=all, and the
        topic does not cache writes)."""
        return acks == -1 and not write_caching

    async def acks_all(
        self,
        pending: Sequence[PendingAck],
        timeout_ms: int,
        on_error: Callable[[PendingAck, ErrorCode], None],
        code_of: Callable[[StorageError], ErrorCode],
    ) -> None:
        """Wait until every pending answer's records are fsynced, for at most
        ``timeout_ms`` (0 or less: no limit).

        ``on_error`` gets each answer that fails: ``code_of`` the storage error
        (KAFKA_STORAGE_ERROR for a failed fsync) when the fsync failed or the topic
        went away, REQUEST_TIMED_OUT when it did not finish in time. Each failure is
        counted in the produce error metric.
        """
        metrics = self._metrics
        timeout = timeout_ms / 1000 if timeout_ms > 0 else None
        answered: set[int] = set()
        with anyio.move_on_after(timeout):
            for n, item in enumerate(pending):
                code: ErrorCode | None = None
                try:
                    if item.replicated is None:
                        await self.commit.wait_durable(item.plog, item.target)
                    else:
                        code = await self._wait_replicated(item, item.replicated)
                except StorageError as e:
                    code = code_of(e)
                answered.add(n)
                if code is not None:
                    on_error(item, code)
                    metrics.error("produce", code.name)
            return
        for n, item in enumerate(pending):
            if n in answered:
                continue
            late = _late(item)
            if late is not None:
                on_error(item, late)
                metrics.error("produce", late.name)

    async def _wait_replicated(
        self, item: PendingAck, high_watermark: Callable[[], int | None]
    ) -> ErrorCode | None:
        """Wait until a replicated partition's high watermark covers the answer
        (followers' fetches and the leader's fsync wake it), then
        NOT_ENOUGH_REPLICAS_AFTER_APPEND if the ISR is below min.insync.replicas by
        then; NOT_LEADER_OR_FOLLOWER once this broker no longer leads it (the
        producer retries at the new leader, whose idempotence check finds what was
        replicated)."""
        plog = item.plog
        while True:
            hw = high_watermark()
            if hw is None:
                return ErrorCode.NOT_LEADER_OR_FOLLOWER
            if hw >= item.target:
                return _reached(item)
            event = anyio.Event()
            self.waiters.register([plog], event)
            try:
                hw = high_watermark()  # moved between the check and registering?
                if hw is not None and hw < item.target:
                    if plog.durable_offset < item.target:
                        self.commit.mark_dirty(plog)
                    await event.wait()
            finally:
                self.waiters.unregister([plog], event)

    def schedule_periodic_flush(self, logs: LogManager) -> None:
        """Mark write-caching partitions dirty once their flush.ms has elapsed."""
        now = time.monotonic()
        for meta in logs.topics():
            cfg = meta.config
            if not cfg.write_caching:
                continue
            for idx in range(meta.partition_count):
                plog = logs.partition(meta.name, idx)
                if not plog.needs_sync:
                    continue
                last = self._last_flush.get(id(plog), 0.0)
                if now - last >= cfg.flush_ms / 1000:
                    self._last_flush[id(plog)] = now
                    self.commit.mark_dirty(plog)

    async def flush_job(self, logs: LogManager) -> None:
        """Fsync write-caching topics' partitions every flush.ms (others sync eagerly)."""
        while True:
            await anyio.sleep(FLUSH_CHECK_S)
            self.schedule_periodic_flush(logs)

    async def run(self) -> None:
        """Drive the group commit until cancelled."""
        await self.commit.run()
