"""Idempotent producers on the broker side: InitProducerId and Produce's dedup check.

Wraps :mod:`storage.producer_state`: one :class:`ProducerIdAllocator` per data dir and,
per partition log, a :class:`PartitionProducerState` rebuilt from the log tail's batch
headers (as Kafka replays from its last producer snapshot). At start-up
:meth:`ProducerService.preload` rebuilds every existing partition's state in a worker
thread when the service opens (:meth:`ProducerService.open`), so the first
idempotent produce after a restart never scans up to 64 MiB on the event loop; a
partition created later (empty log) gets its state lazily on first use, for free. The Produce handler calls
:meth:`ProducerService.check` before appending and :meth:`ProducerService.record`
after; a :class:`Duplicate` is answered with the original offsets and not appended,
and a payload is fully validated before any answer but Append (a damaged batch is
never "a duplicate"). A transactional batch passes the same epoch and sequence
checks (the partition log then opens its transaction, storage/transactions.py);
the verification of KIP-890 (Kafka 3.6+: the partition must have been added to the
producer's ongoing transaction) is :attr:`ProducerService.verify_txn`, the
transaction coordinator's answer on a single node (:class:`NoTransaction`,
INVALID_TXN_STATE, when it says no).

Cluster mode: a follower appends its leader's batches verbatim, and its producer
state follows them (:meth:`ProducerService.replicated`, as Kafka updates the
``ProducerStateManager`` of every replica), so a broker that becomes leader knows
the producer ids and last sequences already: a producer retrying after a failover
is answered as a duplicate, and a gap is OUT_OF_ORDER_SEQUENCE_NUMBER. A follower
whose log is truncated rebuilds the state in a worker thread
(:meth:`ProducerService.reload`); so does a new leader whose state is not tracked,
and its idempotent batches are refused retriably (NOT_LEADER_OR_FOLLOWER,
:class:`Loading`) until it is loaded, never checked against a state being built.

Version notes: InitProducerId always hands out a fresh producer id with epoch 0
(Kafka's rule for producers without a transactional id, also for the KIP-360 bump
request); a transactional id is the transaction coordinator's
(``broker.transactions``), which takes its fresh ids from here. Transaction markers
bump a producer's epoch here through :meth:`ProducerService.marker_written`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import structlog

from protocol.error_codes import ErrorCode
from protocol.records import (
    BATCH_HEADER_SIZE,
    BatchHeader,
    Buffer,
    RecordBatchError,
    iter_batches,
    read_header,
)
from storage.errors import InvalidBatch, StorageError
from storage.log_manager import LogManager
from storage.partition_log import AppendResult
from storage.producer_state import (
    Append,
    CheckResult,
    Duplicate,
    InvalidEpoch,
    OutOfOrder,
    PartitionProducerState,
    ProducerIdAllocator,
    UnknownProducer,
    increment_sequence,
)

if TYPE_CHECKING:
    from storage.partition_log import PartitionLog

# The start-up line has always been the group services'.
log = structlog.get_logger("broker.groups")

# Cluster mode: a producer id is (node id << 40) | the broker's own counter, unique
# across the cluster without a round trip to etcd (Kafka claims blocks of ids
# from ZooKeeper instead, KIP-730). Node ids must stay below 2**23.
NODE_ID_SHIFT = 40
_TAIL_BYTES = 64 * 1024 * 1024  # how much of a log's end a rebuild scans at most
_READ_CHUNK = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class NoTransaction:
    """A transactional batch for a partition outside the producer's ongoing
    transaction (KIP-890 verification, :attr:`ProducerService.verify_txn`)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Loading:
    """The partition's producer state is being rebuilt (a new leader's): retry."""


Verdict = CheckResult | NoTransaction | Loading

ERRORS: dict[type, ErrorCode] = {
    # the client refreshes its metadata and retries, as after a leader change
    Loading: ErrorCode.NOT_LEADER_OR_FOLLOWER,
    OutOfOrder: ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER,
    InvalidEpoch: ErrorCode.INVALID_PRODUCER_EPOCH,
    UnknownProducer: ErrorCode.UNKNOWN_PRODUCER_ID,
    # KIP-890: a transactional batch for a partition outside an ongoing transaction
    NoTransaction: ErrorCode.INVALID_TXN_STATE,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchIdentity:
    """The idempotence fields of the first batch of a produce payload."""

    producer_id: int
    producer_epoch: int
    base_sequence: int
    record_count: int
    transactional: bool = False
    # the largest record timestamp of the payload's batches (DescribeProducers)
    max_timestamp: int = field(default=-1, compare=False)


def batch_identity(records: Buffer) -> BatchIdentity | None:
    """The producer fields of an idempotent payload, None for plain producers.

    Clients send one batch per partition; should a payload hold several batches of
    the same producer with contiguous sequences, they count as one range. Only the
    headers are read (no CRC): the payload is verified in full before it is
    appended, and before any other answer (:meth:`ProducerService.check`).

    Raises:
        InvalidBatch: a later batch's length or magic cannot be a batch's. (A
            negative sequence is refused by the validation every answer waits
            for: INVALID_RECORD, Kafka's ``LogValidator``.)
    """
    if len(records) < BATCH_HEADER_SIZE:
        return None
    h = read_header(records)
    if h.producer_id < 0:
        return None
    count = h.record_count
    max_timestamp = h.max_timestamp
    try:
        if h.size < len(records):
            for _, more in iter_batches(records, h.size):
                if (more.producer_id, more.producer_epoch) != (
                    h.producer_id,
                    h.producer_epoch,
                ):
                    break
                if more.base_sequence != increment_sequence(h.base_sequence, count):
                    break
                count += more.record_count
                max_timestamp = max(max_timestamp, more.max_timestamp)
    except RecordBatchError as exc:
        raise InvalidBatch(str(exc)) from exc
    return BatchIdentity(
        producer_id=h.producer_id,
        producer_epoch=h.producer_epoch,
        base_sequence=h.base_sequence,
        record_count=count,
        transactional=h.is_transactional,
        max_timestamp=max_timestamp,
    )


class ProducerService:
    """Producer ids and per-partition idempotence state for one broker."""

    def __init__(
        self,
        allocator: ProducerIdAllocator,
        *,
        tail_bytes: int = _TAIL_BYTES,
        node_id: int | None = None,
    ) -> None:
        self.allocator = allocator
        # Cluster mode: every broker hands out ids, and a producer's partitions
        # move between leaders, so ids carry the node id in their high bits.
        self._id_base = 0 if node_id is None else node_id << NODE_ID_SHIFT
        self._tail_bytes = tail_bytes
        self._states: dict[int, tuple[PartitionLog, PartitionProducerState]] = {}
        # id(plog) -> rebuilds in progress (its idempotent batches wait: Loading)
        self._loading: dict[int, int] = {}
        # False before open() finished and after close(): idempotent batches are
        # then refused retriably (nothing to check a duplicate against).
        self.loaded = False
        # KIP-890: whether a transactional batch's partition is in its producer's
        # ongoing transaction (the transaction coordinator's answer); None: every
        # transactional batch that passes the idempotence checks is appended.
        self.verify_txn: Callable[[PartitionLog, BatchIdentity], bool] | None = None

    @classmethod
    async def open(
        cls, data_dir: Path, logs: LogManager, *, node_id: int | None = None
    ) -> ProducerService:
        """Open the producer-id allocator and rebuild every partition's idempotence
        state from its log tail, both in a worker thread (before any client can
        produce: a retried batch would otherwise be appended twice)."""
        allocator = await anyio.to_thread.run_sync(ProducerIdAllocator, data_dir)
        producers = cls(allocator, node_id=node_id)
        plogs = [p for t in logs.topics() for p in logs.partitions(t.name)]
        if plogs:
            started = time.perf_counter()
            loaded = await anyio.to_thread.run_sync(producers.preload, plogs)
            log.info(
                "producer_state_loaded",
                partitions=len(plogs),
                with_data=loaded,
                seconds=round(time.perf_counter() - started, 3),
            )
        producers.loaded = True
        return producers

    def close(self) -> None:
        """Stop checking: idempotent batches are refused until the state is loaded."""
        self.loaded = False
        self._states.clear()

    # -- InitProducerId ------------------------------------------------------------

    def init_producer_id(self) -> tuple[ErrorCode, int, int]:
        """(error, producer id, epoch) for an idempotent producer's InitProducerId.

        May fsync (once per block of ids): call it from a worker thread.
        """
        return ErrorCode.NONE, self._id_base | self.allocator.allocate(), 0

    # -- Produce -------------------------------------------------------------------

    def state(self, plog: PartitionLog) -> PartitionProducerState:
        """The partition's state, rebuilt from its log tail on first use."""
        entry = self._states.get(id(plog))
        if entry is not None and entry[0] is plog:
            return entry[1]
        state = PartitionProducerState()
        self._rebuild(plog, state)
        self._states[id(plog)] = (plog, state)
        return state

    def preload(self, plogs: Iterable[PartitionLog]) -> int:
        """Rebuild the state of each of ``plogs`` now; returns how many held data.

        Blocking file reads: call it from a worker thread, before the service is
        reachable by the Produce handler (it mutates the state table unlocked).
        """
        loaded = 0
        for plog in plogs:
            if id(plog) in self._states:
                continue
            state = PartitionProducerState()
            if plog.log_end_offset > plog.log_start_offset:
                loaded += 1
                self._rebuild(plog, state)
            self._states[id(plog)] = (plog, state)
        return loaded

    def tracks(self, plog: PartitionLog) -> bool:
        """Whether the partition's state is kept current (no rebuild on first use)."""
        entry = self._states.get(id(plog))
        return entry is not None and entry[0] is plog

    def replicated(
        self, plog: PartitionLog, batches: Sequence[BatchHeader], *, fresh: bool
    ) -> None:
        """A follower appended its leader's ``batches`` (the idempotent ones, in log
        order) to ``plog``; ``fresh``: the log was empty before them. The
        partition's state follows them; an untracked partition is tracked from
        here if the log holds nothing else (else a new leader rebuilds it)."""
        entry = self._states.get(id(plog))
        if entry is not None and entry[0] is plog:
            entry[1].load(batches)
        elif fresh:
            state = PartitionProducerState()
            state.load(batches)
            self._states[id(plog)] = (plog, state)

    def begin_reload(self, plog: PartitionLog) -> None:
        """From now on idempotent batches to ``plog`` answer :class:`Loading`, until
        the :meth:`reload` given ``begun=True`` has finished (a task started soon)."""
        key = id(plog)
        self._loading[key] = self._loading.get(key, 0) + 1

    async def reload(self, plog: PartitionLog, *, begun: bool = False) -> None:
        """Rebuild the partition's state from its log in a worker thread (the log
        was truncated, or this broker leads it and its state is not tracked);
        idempotent batches to it answer :class:`Loading` meanwhile. The only
        writer of the log that may run meanwhile is the caller (a replica
        fetcher, which waits for this)."""
        key = id(plog)
        if not begun:
            self.begin_reload(plog)
        self.forget(plog)
        try:
            state = PartitionProducerState()
            await anyio.to_thread.run_sync(self._rebuild, plog, state)
        finally:
            left = self._loading.pop(key) - 1
            if left:
                self._loading[key] = left
        # a rebuild that finished first is as current (nothing was appended since)
        if not self.tracks(plog):
            self._states[key] = (plog, state)

    def _rebuild(self, plog: PartitionLog, state: PartitionProducerState) -> None:
        start, end = plog.log_start_offset, plog.log_end_offset
        if end <= start:
            return
        size = max(plog.size_bytes, 1)
        if size > self._tail_bytes:
            # Offsets are roughly proportional to bytes: start near the last tail_bytes.
            start = max(start, end - (end - start) * self._tail_bytes // size)
        offset = start
        while offset < end:
            try:
                result = plog.read(offset, _READ_CHUNK)
            except StorageError:
                return
            if result.next_offset <= offset:
                return
            state.load(h for buf in result.buffers for _, h in iter_batches(buf))
            offset = result.next_offset

    def check(
        self, plog: PartitionLog, ident: BatchIdentity, records: Buffer
    ) -> Verdict:
        """What to do with an idempotent batch about to be appended to ``plog``.

        Any answer other than :class:`Append` is given only for a payload that
        passes the append's own validation (Kafka validates the batch before its
        producer state), so a damaged retry is never acknowledged as a duplicate
        and a damaged transactional batch is CORRUPT_MESSAGE like any other.

        Raises:
            InvalidBatch / MessageTooLarge / InvalidRecord: the payload fails
                validation (``PartitionLog.validate``).
        """
        verdict: Verdict
        verify = self.verify_txn
        if ident.transactional and verify is not None and not verify(plog, ident):
            verdict = NoTransaction()
        elif self._loading and id(plog) in self._loading:
            verdict = Loading()
        else:
            verdict = self.state(plog).check(
                ident.producer_id,
                ident.producer_epoch,
                ident.base_sequence,
                ident.record_count,
            )
        if not isinstance(verdict, Append):
            plog.validate(records)
        return verdict

    def record(
        self, plog: PartitionLog, ident: BatchIdentity, result: AppendResult
    ) -> None:
        """Remember an appended idempotent batch (after ``plog.append``)."""
        self.state(plog).record(
            ident.producer_id,
            ident.producer_epoch,
            ident.base_sequence,
            ident.record_count,
            result.base_offset,
            result.last_offset,
            result.log_append_time_ms
            if result.log_append_time_ms >= 0
            else ident.max_timestamp,
        )

    def marker_written(
        self, plog: PartitionLog, producer_id: int, producer_epoch: int
    ) -> None:
        """A transaction marker was appended to ``plog`` (it bumps the epoch)."""
        entry = self._states.get(id(plog))
        if entry is not None and entry[0] is plog:
            entry[1].marker(producer_id, producer_epoch)

    def forget(self, plog: PartitionLog) -> None:
        """Drop a partition's state (topic deleted, log truncated)."""
        self._states.pop(id(plog), None)


def append_checked(
    producers: ProducerService | None,
    plog: PartitionLog,
    records: Buffer,
    *,
    leader_epoch: int,
    now_ms: int | None = None,
) -> AppendResult | ErrorCode:
    """``plog.append`` with Kafka's idempotence rules (the Produce handler's call).

    ``producers`` is ``BrokerContext.producers`` (appends unchecked when it is None).
    A duplicate of one of the producer's last 5 batches is not appended and answers its original offsets; a sequence gap answers
    OUT_OF_ORDER_SEQUENCE_NUMBER, a fenced epoch INVALID_PRODUCER_EPOCH. Storage
    errors propagate as from ``plog.append``, and a damaged payload raises
    InvalidBatch before anything else is decided.
    """
    ident = None if producers is None else batch_identity(records)
    if ident is None or producers is None:
        return plog.append(records, leader_epoch=leader_epoch, now_ms=now_ms)
    verdict = producers.check(plog, ident, records)
    if isinstance(verdict, Duplicate):
        return AppendResult(
            base_offset=verdict.base_offset,
            last_offset=verdict.last_offset,
            log_append_time_ms=-1,
            log_start_offset=plog.log_start_offset,
        )
    code = error_for(verdict)
    if code is not None:
        return code
    result = plog.append(records, leader_epoch=leader_epoch, now_ms=now_ms)
    producers.record(plog, ident, result)
    return result


def error_for(result: Verdict) -> ErrorCode | None:
    """The Produce error code of a check result (None for Append and Duplicate)."""
    if isinstance(result, Append | Duplicate):
        return None
    return ERRORS[type(result)]
