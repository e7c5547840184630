"""The transaction coordinator's service: the transactional ids this broker owns.

Kafka's ``TransactionCoordinator`` with its ``TransactionStateManager``: the state
of each transactional id whose ``__transaction_state`` partition this broker leads,
kept in memory and changed only once the new state is durable in that partition
(:class:`broker.transactions.txn_log.TxnLog`). The decisions are the pure functions
of :mod:`broker.transactions.state_machine`; this module drives them:

- a request of an id whose change is in flight (a write, or the markers of its
  ending transaction) answers CONCURRENT_TRANSACTIONS (Kafka's ``pendingState``);
- EndTxn writes PrepareCommit/PrepareAbort, answers, then writes the markers to
  every partition of the transaction (:class:`MarkerSender`, retried until each is
  written), completes the transaction's consumer-group offsets and writes
  CompleteCommit/CompleteAbort. A single node completes the offsets itself
  (``GroupService.complete_txn_offsets``); in a cluster, as in Kafka,
  AddOffsetsToTxn adds the group's ``__consumer_offsets`` partition to the
  transaction and the marker written there completes them at the group's
  coordinator (``GroupService.txn_marker_written``), wherever it is;
- a transaction open longer than its timeout is aborted at a bumped epoch, which
  fences its producer (KIP-588), every
  ``transaction.abort.timed.out.transaction.cleanup.interval.ms``; an id with no
  open transaction and no change for ``transactional.id.expiration.ms`` gets a
  tombstone and is forgotten, every
  ``transaction.remove.expired.transaction.cleanup.interval.ms``;
- at start-up (or when this broker becomes the partition's leader) the partition is
  read in a worker thread, and a transaction found prepared but not completed (the
  broker stopped between the two) gets its markers again and is completed;
  meanwhile its ids answer COORDINATOR_LOAD_IN_PROGRESS.

The read side (:meth:`TransactionCoordinator.describe`,
:meth:`TransactionCoordinator.list_transactions`) serves DescribeTransactions and
ListTransactions. KIP-890 verification (a transactional batch's partition must be
in its producer's ongoing transaction) is :meth:`TransactionCoordinator.verify`,
used by the Produce path on a single node.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Awaitable, Callable, Collection, Iterable

import anyio
import anyio.abc
import structlog

from broker.cluster.view import TRANSACTION_TOPIC
from broker.groups.service import GroupService
from broker.producers.service import BatchIdentity, ProducerService
from broker.transactions import state_machine as sm
from broker.transactions.config import CRASH_EXIT_STATUS, TxnConfig, take_crash_flag
from broker.transactions.markers import MarkerSender
from broker.transactions.model import TopicPartition, TransactionMetadata, TxnState
from broker.transactions.sweeps import Sweeps
from broker.transactions.txn_log import TxnLog, read_partition
from protocol.error_codes import ErrorCode
from protocol.records import RecordBatchError
from storage.errors import StorageError
from storage.partition_log import PartitionLog

log = structlog.get_logger("broker.transactions")

_RETRY_FIRST_S = 0.05
_RETRY_MAX_S = 2.0
# marker answers after which a partition needs no marker from us: it is written, the
# topic is gone, or the partition already holds a newer epoch or coordinator
_MARKER_SETTLED = frozenset(
    {
        ErrorCode.NONE,
        ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
        ErrorCode.INVALID_PRODUCER_EPOCH,
        ErrorCode.PRODUCER_FENCED,
        ErrorCode.TRANSACTION_COORDINATOR_FENCED,
    }
)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class TransactionCoordinator(Sweeps):
    """The transactional ids this broker coordinates and their current state."""

    def __init__(
        self,
        *,
        coordinates: Callable[[str], bool],
        txn_log: TxnLog | None = None,
        markers: MarkerSender | None = None,
        producers: ProducerService | None = None,
        groups: GroupService | None = None,
        config: TxnConfig | None = None,
        clustered: bool = False,
        offsets_partition: Callable[[str], TopicPartition | None] | None = None,
    ) -> None:
        # transactional id -> its state as last written to the log
        self._txns: dict[str, TransactionMetadata] = {}
        self._by_producer: dict[int, str] = {}  # producer id -> transactional id
        self._pending: set[str] = set()  # ids with a change in flight
        self._loaded: set[int] = set()  # state log partitions loaded here
        self._coordinates = coordinates
        self._log = txn_log
        self._markers = markers
        self._producers = producers
        self._groups = groups
        self.config = config or TxnConfig()
        self._tg: anyio.abc.TaskGroup | None = None
        self._ready_lock = anyio.Lock()
        # cluster mode: the state log partitions this broker leads (with the
        # generation of that leadership) and those waiting to be loaded
        self._clustered = clustered
        # cluster mode: a group's __consumer_offsets partition (None: no topic yet)
        self._offsets_partition = offsets_partition
        self._generations = itertools.count(1)
        self._led: dict[int, int] = {}
        self._to_load: dict[int, int] = {}
        self._wake = anyio.Event()

    # -- the read side -----------------------------------------------------------------

    def coordinates(self, transactional_id: str) -> bool:
        """Whether this broker is the coordinator of ``transactional_id`` (it leads
        the id's ``__transaction_state`` partition)."""
        return self._coordinates(transactional_id)

    def describe(self, transactional_id: str) -> TransactionMetadata | None:
        """The state of ``transactional_id`` (None: this broker knows no such id)."""
        return self._txns.get(transactional_id)

    def list_transactions(
        self,
        states: Collection[TxnState] = (),
        producer_ids: Collection[int] = (),
        min_duration_ms: int = -1,
        *,
        now_ms: int | None = None,
    ) -> list[TransactionMetadata]:
        """The transactions this broker coordinates, filtered as ListTransactions
        (KIP-664, KIP-994): an empty ``states``/``producer_ids`` keeps all; a
        ``min_duration_ms`` >= 0 keeps open transactions at least that old."""
        now = _now_ms() if now_ms is None else now_ms
        out = []
        for meta in self._txns.values():
            if states and meta.state not in states:
                continue
            if producer_ids and meta.producer_id not in producer_ids:
                continue
            if min_duration_ms >= 0 and (
                meta.start_ms < 0 or meta.duration_ms(now) < min_duration_ms
            ):
                continue
            out.append(meta)
        return out

    def verify(self, plog: PartitionLog, ident: BatchIdentity) -> bool:
        """KIP-890: whether a transactional batch's partition is in its producer's
        ongoing transaction. Producers this coordinator does not know (raw
        transactional batches closed with WriteTxnMarkers by a tool) pass."""
        txn_id = self._by_producer.get(ident.producer_id)
        if txn_id is None:
            return True
        meta = self._txns.get(txn_id)
        if meta is None or meta.producer_id != ident.producer_id:
            return False
        return (
            meta.state is TxnState.ONGOING
            and (plog.topic, plog.partition) in meta.partitions
        )

    # -- running -----------------------------------------------------------------------

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Load the state log partitions this broker leads (a single node: all),
        complete the transactions found prepared, then abort timed-out
        transactions periodically. Until cancelled."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            task_status.started()
            try:
                tg.start_soon(
                    self._every, self.config.abort_interval_ms, self.abort_timed_out
                )
                tg.start_soon(
                    self._every,
                    self.config.remove_expired_interval_ms,
                    self.remove_expired,
                )
                if self._clustered:
                    await self._loader()
                else:
                    await self._load_all()
                    await anyio.sleep_forever()  # completions run in ``tg``
            finally:
                self._tg = None
                if self._markers is not None:
                    with anyio.CancelScope(shield=True):
                        await self._markers.aclose()

    async def _every(
        self, interval_ms: int, sweep: Callable[[], Awaitable[int]]
    ) -> None:
        while True:
            await anyio.sleep(interval_ms / 1000)
            await sweep()

    async def _load_all(self) -> None:
        """A single node leads every partition: load them all."""
        txn_log = self._log
        if txn_log is None:
            return
        count = txn_log.partitions()
        for partition in range(count or 0):
            await self.load_partition(partition)

    def on_leadership(self, partition: int, leads: bool) -> None:
        """Cluster mode: this broker became (``leads``) or stopped being the leader
        of a state log partition: load it, or drop its transactional ids (the new
        leader owns them; Kafka's ``TransactionStateManager.loadTransactionsForTxn
        TopicPartition`` / ``removeTransactionsForTxnTopicPartition``)."""
        self._loaded.discard(partition)
        if leads:
            generation = self._led[partition] = next(self._generations)
            self._to_load[partition] = generation
            self._wake.set()
            return
        self._led.pop(partition, None)
        self._to_load.pop(partition, None)
        txn_log = self._log
        if txn_log is None:
            return
        gone = [t for t in self._txns if txn_log.partition_of(t) == partition]
        for txn_id in gone:
            meta = self._txns.pop(txn_id)
            if self._by_producer.get(meta.producer_id) == txn_id:
                del self._by_producer[meta.producer_id]
        if gone:
            log.info(
                "txn_state_unloaded", partition=partition, transactional_ids=len(gone)
            )

    async def _loader(self) -> None:
        while True:
            if not self._to_load:
                self._wake = anyio.Event()
                await self._wake.wait()
                continue
            partition, generation = next(iter(self._to_load.items()))
            if not await self.load_partition(partition, generation):
                await anyio.sleep(_RETRY_MAX_S)
                continue
            if self._to_load.get(partition) == generation:
                del self._to_load[partition]

    async def load_partition(
        self, partition: int, generation: int | None = None
    ) -> bool:
        """Read one state log partition (worker thread) and take over its ids;
        resume the completion of its prepared transactions. False: unreadable.
        ``generation``: the leadership it is loaded for (cluster mode; a load
        overtaken by a change of leadership takes nothing over)."""
        txn_log = self._log
        if txn_log is None:
            return False
        started = time.monotonic()
        try:
            plog = txn_log.topics.logs.partition(TRANSACTION_TOPIC, partition)
            loaded = await anyio.to_thread.run_sync(
                read_partition, plog, plog.log_end_offset
            )
        except (StorageError, RecordBatchError) as e:
            log.error("txn_state_load_failed", partition=partition, error=str(e))
            return False
        if generation is not None and self._led.get(partition) != generation:
            return True  # lost (or lost and regained) meanwhile: a later load counts
        for meta in loaded.txns.values():
            self._store(meta)
        self._loaded.add(partition)
        prepared = [m for m in loaded.txns.values() if m.state.is_prepare]
        log.info(
            "txn_state_loaded",
            partition=partition,
            records=loaded.records,
            skipped=loaded.skipped,
            transactional_ids=len(loaded.txns),
            prepared=len(prepared),
            ms=round((time.monotonic() - started) * 1000, 1),
        )
        for meta in prepared:
            # stopped between prepare and complete: send the markers again
            self._pending.add(meta.transactional_id)
            self._start_completion(meta)
        return True

    def _store(self, meta: TransactionMetadata) -> None:
        self._txns[meta.transactional_id] = meta
        self._by_producer[meta.producer_id] = meta.transactional_id

    # -- readiness ---------------------------------------------------------------------

    async def refusal(self, transactional_id: str) -> ErrorCode:
        """Why this broker cannot serve ``transactional_id`` now: NOT_COORDINATOR,
        COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE (the state log
        cannot be created); NONE when it can. On a single node the state log is
        created here on first need."""
        if not transactional_id:
            return ErrorCode.INVALID_REQUEST
        txn_log = self._log
        if txn_log is None:
            return ErrorCode.COORDINATOR_NOT_AVAILABLE
        if not self._coordinates(transactional_id):
            return ErrorCode.NOT_COORDINATOR
        partition = txn_log.partition_of(transactional_id)
        if partition is None and self._clustered:
            return ErrorCode.COORDINATOR_LOAD_IN_PROGRESS  # not here yet
        if partition is None:
            async with self._ready_lock:
                if txn_log.partition_of(transactional_id) is None:
                    try:
                        await txn_log.ensure_topic(self.config.log_partitions)
                    except StorageError as e:
                        log.error("txn_state_topic_failed", error=str(e))
                        return ErrorCode.COORDINATOR_NOT_AVAILABLE
                    # new and empty: nothing to load
                    self._loaded.update(range(txn_log.partitions() or 0))
            partition = txn_log.partition_of(transactional_id)
        if partition is None:
            return ErrorCode.COORDINATOR_NOT_AVAILABLE
        if partition not in self._loaded:
            return ErrorCode.COORDINATOR_LOAD_IN_PROGRESS
        return ErrorCode.NONE

    # -- requests ----------------------------------------------------------------------

    async def init_producer_id(
        self,
        transactional_id: str,
        timeout_ms: int,
        expected: tuple[int, int] | None,
    ) -> tuple[ErrorCode, int, int]:
        """InitProducerId with a transactional id: (error, producer id, epoch)."""
        if not 0 < timeout_ms <= self.config.max_timeout_ms:
            return ErrorCode.INVALID_TRANSACTION_TIMEOUT, -1, -1
        refused = await self.refusal(transactional_id)
        if refused != ErrorCode.NONE:
            return refused, -1, -1
        fresh: int | None = None
        while True:
            outcome = sm.init_producer_id(
                self._txns.get(transactional_id),
                transactional_id=transactional_id,
                timeout_ms=timeout_ms,
                max_timeout_ms=self.config.max_timeout_ms,
                expected=expected,
                fresh_id=fresh,
                now_ms=_now_ms(),
                pending=transactional_id in self._pending,
            )
            if not isinstance(outcome, sm.NeedProducerId):
                break
            fresh = await self._fresh_producer_id()
            if fresh is None:
                return ErrorCode.KAFKA_STORAGE_ERROR, -1, -1
        code, meta = await self._apply(transactional_id, outcome)
        if code != ErrorCode.NONE or meta is None:
            return code, -1, -1
        log.info(
            "txn_producer_initialised",
            transactional_id=transactional_id,
            producer_id=meta.producer_id,
            producer_epoch=meta.producer_epoch,
        )
        return ErrorCode.NONE, meta.producer_id, meta.producer_epoch

    async def _fresh_producer_id(self) -> int | None:
        producers = self._producers
        if producers is None:
            return None
        try:
            _, pid, _ = await anyio.to_thread.run_sync(producers.init_producer_id)
        except StorageError as e:
            log.error("producer_id_allocation_failed", error=str(e))
            return None
        return pid

    async def add_partitions(
        self,
        transactional_id: str,
        producer_id: int,
        producer_epoch: int,
        partitions: Iterable[TopicPartition],
    ) -> ErrorCode:
        """AddPartitionsToTxn: one error code for all the partitions."""
        refused = await self.refusal(transactional_id)
        if refused != ErrorCode.NONE:
            return refused
        outcome = sm.add_partitions(
            self._txns.get(transactional_id),
            producer_id=producer_id,
            producer_epoch=producer_epoch,
            partitions=partitions,
            now_ms=_now_ms(),
            pending=transactional_id in self._pending,
        )
        code, _ = await self._apply(transactional_id, outcome)
        return code

    async def add_offsets(
        self, transactional_id: str, producer_id: int, producer_epoch: int, group: str
    ) -> ErrorCode:
        """AddOffsetsToTxn: the group's offsets join the transaction."""
        refused = await self.refusal(transactional_id)
        if refused != ErrorCode.NONE:
            return refused
        offsets: TopicPartition | None = None
        if self._offsets_partition is not None:
            offsets = self._offsets_partition(group)
            if offsets is None:
                return ErrorCode.COORDINATOR_NOT_AVAILABLE  # no offsets topic yet
        outcome = sm.add_group(
            self._txns.get(transactional_id),
            producer_id=producer_id,
            producer_epoch=producer_epoch,
            group_id=group,
            now_ms=_now_ms(),
            pending=transactional_id in self._pending,
            offsets_partition=offsets,
        )
        code, _ = await self._apply(transactional_id, outcome)
        return code

    async def end_txn(
        self, transactional_id: str, producer_id: int, producer_epoch: int, commit: bool
    ) -> ErrorCode:
        """EndTxn: answered once PrepareCommit/PrepareAbort is durable; the
        markers and the completion follow in the background."""
        refused = await self.refusal(transactional_id)
        if refused != ErrorCode.NONE:
            return refused
        outcome = sm.end_txn(
            self._txns.get(transactional_id),
            producer_id=producer_id,
            producer_epoch=producer_epoch,
            commit=commit,
            now_ms=_now_ms(),
            pending=transactional_id in self._pending,
        )
        code, _ = await self._apply(transactional_id, outcome)
        return code

    async def _apply(
        self, transactional_id: str, outcome: sm.Outcome
    ) -> tuple[ErrorCode, TransactionMetadata | None]:
        """Carry out a decision: write what it writes, then answer."""
        if isinstance(outcome, sm.Refuse):
            return outcome.code, None
        if isinstance(outcome, sm.Done):
            return ErrorCode.NONE, outcome.meta
        if isinstance(outcome, sm.NeedProducerId):  # handled by the caller
            return ErrorCode.COORDINATOR_NOT_AVAILABLE, None
        assert self._log is not None  # refusal() checked
        meta = outcome.meta
        partition = self._log.partition_of(transactional_id)
        generation = None if partition is None else self._led.get(partition)
        self._pending.add(transactional_id)
        code = ErrorCode.COORDINATOR_NOT_AVAILABLE
        try:
            code = await self._log.write(meta)
            if code == ErrorCode.NONE and (
                partition is None
                or partition not in self._loaded
                or self._led.get(partition) != generation
            ):
                code = ErrorCode.NOT_COORDINATOR  # leadership moved meanwhile
        finally:
            if code != ErrorCode.NONE or isinstance(outcome, sm.Write):
                self._pending.discard(transactional_id)
        if code != ErrorCode.NONE:
            return code, None
        self._store(meta)
        if isinstance(outcome, sm.Prepare):
            log.info(
                "txn_prepared",
                transactional_id=transactional_id,
                producer_id=meta.producer_id,
                producer_epoch=meta.producer_epoch,
                state=meta.state.kafka_name,
                partitions=len(meta.partitions),
            )
            flag = self.config.crash_after_prepare
            if (
                flag is not None
                and meta.state is TxnState.PREPARE_COMMIT
                and take_crash_flag(flag)
            ):
                # the test hook (CRASH_AFTER_PREPARE_ENV): stop before any marker
                log.warning("txn_test_crash", transactional_id=transactional_id)
                os._exit(CRASH_EXIT_STATUS)
            self._start_completion(meta)
            return outcome.answer, meta
        return ErrorCode.NONE, meta

    # -- completion --------------------------------------------------------------------

    def _start_completion(self, meta: TransactionMetadata) -> None:
        tg = self._tg
        if tg is None:
            # not running (a context opened without the server): nothing sends it
            log.warning(
                "txn_completion_deferred", transactional_id=meta.transactional_id
            )
            return
        tg.start_soon(self._complete, meta)

    async def _complete(self, meta: TransactionMetadata) -> None:
        """Write the markers of a prepared transaction until every partition has
        one, complete its group offsets, then write its completion."""
        txn_id = meta.transactional_id
        commit = meta.state is TxnState.PREPARE_COMMIT
        txn_log, markers = self._log, self._markers
        assert txn_log is not None
        try:
            remaining = self._marker_partitions(meta)
            delay = _RETRY_FIRST_S
            while remaining and markers is not None:
                partition = txn_log.partition_of(txn_id)
                epoch = -1 if partition is None else txn_log.leader_epoch(partition)
                if epoch < 0:
                    log.info("txn_completion_abandoned", transactional_id=txn_id)
                    return  # no longer the coordinator: the new one completes it
                codes = await markers.write_all(
                    sorted(remaining),
                    producer_id=meta.producer_id,
                    producer_epoch=meta.producer_epoch,
                    commit=commit,
                    coordinator_epoch=epoch,
                )
                for tp, code in codes.items():
                    if code in _MARKER_SETTLED:
                        remaining.discard(tp)
                if remaining:
                    log.info(
                        "txn_markers_retry",
                        transactional_id=txn_id,
                        remaining=len(remaining),
                        errors=sorted({c.name for c in codes.values() if c}),
                    )
                    await anyio.sleep(delay)
                    delay = min(delay * 2, _RETRY_MAX_S)
            if meta.groups and self._groups is not None and not self._clustered:
                await self._groups.complete_txn_offsets(
                    meta.producer_id, meta.producer_epoch, meta.groups, commit
                )
            done = sm.complete(meta, _now_ms())
            delay = _RETRY_FIRST_S
            while True:
                code = await txn_log.write(done)
                if code == ErrorCode.NONE:
                    break
                if code == ErrorCode.NOT_COORDINATOR:
                    log.info("txn_completion_abandoned", transactional_id=txn_id)
                    return
                await anyio.sleep(delay)
                delay = min(delay * 2, _RETRY_MAX_S)
            if self._txns.get(txn_id) == meta:
                self._store(done)
            log.info(
                "txn_completed",
                transactional_id=txn_id,
                producer_id=meta.producer_id,
                state=done.state.kafka_name,
            )
        finally:
            self._pending.discard(txn_id)

    def _marker_partitions(self, meta: TransactionMetadata) -> set[TopicPartition]:
        """The partitions that get a marker: the transaction's, and in a cluster
        its groups' ``__consumer_offsets`` partitions (already among them when
        AddOffsetsToTxn added them; a state written without them gets them
        here)."""
        partitions = set(meta.partitions)
        find = self._offsets_partition
        if find is not None:
            for group in meta.groups:
                tp = find(group)
                if tp is not None:
                    partitions.add(tp)
        return partitions
