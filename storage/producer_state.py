"""Idempotent producer state: producer-id allocation and per-partition sequence checks.

Owns two things (KIP-98, Kafka's ``ProducerStateManager`` / ``ProducerAppendInfo``):

* :class:`ProducerIdAllocator` hands out producer ids. Ids are reserved in blocks
  whose upper bound is persisted before any id of the block is handed out, so a
  crash never hands out an id twice (it only skips the rest of a block)::

      <data_dir>/producer_ids.json      {"version": 1, "next_block_start": 2000}

  written atomically (tmp file, fsync, rename, fsync directory).

* :class:`PartitionProducerState` remembers, per partition, each producer's epoch and
  the metadata of its last 5 batches ``(first_seq, last_seq, base_offset,
  last_offset)``. :meth:`PartitionProducerState.check` decides what to do with an
  incoming batch: :class:`Append`, :class:`Duplicate` (already in the log: answer
  with the original offsets, append nothing), :class:`OutOfOrder`,
  :class:`InvalidEpoch` or :class:`UnknownProducer`. Nothing is persisted per
  partition: the state is rebuilt on open from the batch headers of the log tail
  (:meth:`PartitionProducerState.load`), as Kafka rebuilds from its snapshots.

Sequence numbers are int32 and wrap from 2**31 - 1 to 0 (``DefaultRecordBatch
.incrementSequence``).
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

from protocol.records import Buffer, iter_batches
from storage.errors import StorageError, StorageIOError
from storage.fileops import DEFAULT_FILEOPS, FileOps

__all__ = [
    "MAX_CACHED_BATCHES",
    "NO_PRODUCER_EPOCH",
    "NO_PRODUCER_ID",
    "NO_SEQUENCE",
    "Append",
    "BatchMetadata",
    "CheckResult",
    "Duplicate",
    "InvalidEpoch",
    "OutOfOrder",
    "PartitionProducerState",
    "ProducerEntry",
    "ProducerIdAllocator",
    "UnknownProducer",
    "increment_sequence",
]

NO_PRODUCER_ID: Final = -1
NO_PRODUCER_EPOCH: Final = -1
NO_SEQUENCE: Final = -1
MAX_CACHED_BATCHES: Final = 5  # Kafka's ProducerStateEntry.NUM_BATCHES_TO_RETAIN
_INT32_MAX: Final = 2**31 - 1
_BLOCK_SIZE: Final = 1000
_ID_FILE: Final = "producer_ids.json"


def increment_sequence(sequence: int, increment: int) -> int:
    """``sequence + increment`` on the int32 ring Kafka's sequences live on."""
    if sequence > _INT32_MAX - increment:
        return increment - (_INT32_MAX - sequence) - 1
    return sequence + increment


def _in_sequence(last_seq: int, next_seq: int) -> bool:
    return next_seq == last_seq + 1 or (next_seq == 0 and last_seq == _INT32_MAX)


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchMetadata:
    """Where one producer batch landed: its sequence range and its offsets."""

    first_seq: int
    last_seq: int
    base_offset: int
    last_offset: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Append:
    """The batch is new and in sequence: append it, then :meth:`record` it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Duplicate:
    """The batch is already in the log; answer with these offsets, append nothing."""

    base_offset: int
    last_offset: int


@dataclass(frozen=True, slots=True, kw_only=True)
class OutOfOrder:
    """The batch's first sequence does not follow the producer's last one."""

    expected_sequence: int
    received_sequence: int


@dataclass(frozen=True, slots=True, kw_only=True)
class InvalidEpoch:
    """The batch carries an epoch older than the producer's current one (fenced)."""

    current_epoch: int
    received_epoch: int


@dataclass(frozen=True, slots=True, kw_only=True)
class UnknownProducer:
    """Strict mode only: an unseen producer sent a batch not starting at sequence 0."""


CheckResult = Append | Duplicate | OutOfOrder | InvalidEpoch | UnknownProducer


class BatchLike(Protocol):
    """What :meth:`PartitionProducerState.load` needs of a batch header."""

    @property
    def producer_id(self) -> int: ...
    @property
    def producer_epoch(self) -> int: ...
    @property
    def base_sequence(self) -> int: ...
    @property
    def record_count(self) -> int: ...
    @property
    def base_offset(self) -> int: ...
    @property
    def last_offset(self) -> int: ...
    @property
    def is_control(self) -> bool: ...
    @property
    def max_timestamp(self) -> int: ...


class ProducerEntry:
    """One producer's state in one partition: epoch, its last batches and the
    largest timestamp of its last batch (-1 if unknown; DescribeProducers)."""

    __slots__ = ("batches", "epoch", "last_timestamp")

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch
        self.batches: deque[BatchMetadata] = deque(maxlen=MAX_CACHED_BATCHES)
        self.last_timestamp = -1

    @property
    def last_seq(self) -> int:
        """Last sequence written by this producer in this epoch, or -1."""
        return self.batches[-1].last_seq if self.batches else NO_SEQUENCE

    def find_duplicate(self, first_seq: int, last_seq: int) -> BatchMetadata | None:
        """The cached batch with exactly this sequence range, if any."""
        for meta in self.batches:
            if meta.first_seq == first_seq and meta.last_seq == last_seq:
                return meta
        return None


class PartitionProducerState:
    """Idempotence bookkeeping for one partition (not thread-safe: loop thread only).

    Args:
        strict_unknown: when True an unseen producer must start at sequence 0
            (pre-KIP-360 Kafka, ``UNKNOWN_PRODUCER_ID``); by default any first
            sequence is accepted, as Kafka ≥ 2.5 does for producers whose state
            retention or DeleteRecords removed.
    """

    __slots__ = ("_producers", "strict_unknown")

    def __init__(self, *, strict_unknown: bool = False) -> None:
        self._producers: dict[int, ProducerEntry] = {}
        self.strict_unknown = strict_unknown

    def __len__(self) -> int:
        return len(self._producers)

    def entry(self, producer_id: int) -> ProducerEntry | None:
        """The state kept for ``producer_id`` (None if never seen)."""
        return self._producers.get(producer_id)

    def check(
        self, producer_id: int, epoch: int, base_sequence: int, record_count: int
    ) -> CheckResult:
        """Decide what to do with a batch before appending it (nothing changes)."""
        if producer_id < 0:
            return Append()
        entry = self._producers.get(producer_id)
        if entry is None:
            if self.strict_unknown and base_sequence != 0:
                return UnknownProducer()
            return Append()
        if epoch < entry.epoch:
            return InvalidEpoch(current_epoch=entry.epoch, received_epoch=epoch)
        last_seq = increment_sequence(base_sequence, max(record_count, 1) - 1)
        if epoch == entry.epoch:
            dup = entry.find_duplicate(base_sequence, last_seq)
            if dup is not None:
                return Duplicate(
                    base_offset=dup.base_offset, last_offset=dup.last_offset
                )
            current = entry.last_seq
            if current != NO_SEQUENCE and not _in_sequence(current, base_sequence):
                return OutOfOrder(
                    expected_sequence=increment_sequence(current, 1),
                    received_sequence=base_sequence,
                )
            return Append()
        # A newer epoch restarts the sequence at 0 (the producer was re-initialised).
        if base_sequence != 0 and entry.epoch != NO_PRODUCER_EPOCH:
            return OutOfOrder(expected_sequence=0, received_sequence=base_sequence)
        return Append()

    def record(
        self,
        producer_id: int,
        epoch: int,
        base_sequence: int,
        record_count: int,
        base_offset: int,
        last_offset: int,
        timestamp: int = -1,
    ) -> None:
        """Remember a batch that was appended at ``base_offset..last_offset``
        (``timestamp``: its largest record timestamp, -1 if unknown)."""
        if producer_id < 0:
            return
        entry = self._producers.get(producer_id)
        if entry is None or epoch > entry.epoch:
            entry = ProducerEntry(epoch)
            self._producers[producer_id] = entry
        elif epoch < entry.epoch:
            return  # an old epoch's batch (log rebuild): the newer epoch wins
        entry.last_timestamp = timestamp
        if base_sequence < 0:
            return
        last_seq = increment_sequence(base_sequence, max(record_count, 1) - 1)
        entry.batches.append(
            BatchMetadata(
                first_seq=base_sequence,
                last_seq=last_seq,
                base_offset=base_offset,
                last_offset=last_offset,
            )
        )

    def load(self, batches: Iterable[BatchLike]) -> None:
        """Replay batch headers in log order (rebuild after a restart)."""
        for batch in batches:
            if batch.producer_id < 0:
                continue
            if batch.is_control:
                self.marker(batch.producer_id, batch.producer_epoch)
                continue
            # The span, not the record count: log compaction removes records but
            # keeps the batch's last offset, and the last sequence follows it
            # (``DefaultRecordBatch.lastSequence`` counts from lastOffsetDelta).
            self.record(
                batch.producer_id,
                batch.producer_epoch,
                batch.base_sequence,
                batch.last_offset - batch.base_offset + 1,
                batch.base_offset,
                batch.last_offset,
                batch.max_timestamp,
            )

    def marker(self, producer_id: int, epoch: int) -> None:
        """A transaction marker of ``producer_id`` was appended: markers bump the
        epoch but carry no sequences (KIP-98)."""
        entry = self._producers.get(producer_id)
        if entry is None or epoch > entry.epoch:
            self._producers[producer_id] = ProducerEntry(epoch)

    def load_bytes(self, buf: Buffer) -> None:
        """Replay the complete batches of a log slice (e.g. the last segment)."""
        self.load(header for _, header in iter_batches(buf))

    def truncate_from(self, offset: int) -> None:
        """Forget batches at or after ``offset`` (the log was truncated there)."""
        for pid in list(self._producers):
            entry = self._producers[pid]
            kept = [m for m in entry.batches if m.last_offset < offset]
            entry.batches.clear()
            entry.batches.extend(kept)

    def producers(self) -> dict[int, int]:
        """Producer id → current epoch (for admin views)."""
        return {pid: e.epoch for pid, e in self._producers.items()}

    def entries(self) -> dict[int, ProducerEntry]:
        """Producer id → its state (DescribeProducers; do not mutate)."""
        return dict(self._producers)


class ProducerIdAllocator:
    """Durable producer-id allocation; ids are never reused across restarts.

    Thread-safe. ``allocate`` fsyncs only when a new block of ids is reserved.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        block_size: int = _BLOCK_SIZE,
        fileops: FileOps = DEFAULT_FILEOPS,
    ) -> None:
        self._ops = fileops
        self._dir = Path(data_dir)
        self._path = self._dir / _ID_FILE
        self._block_size = block_size
        self._lock = threading.Lock()
        self._next = self._read()
        self._block_end = self._next  # nothing reserved yet in this process

    def _read(self) -> int:
        try:
            text = self._path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return 0
        try:
            data = json.loads(text)
            value = data["next_block_start"]
        except (ValueError, KeyError, TypeError):
            # A torn write cannot happen (atomic rename); a hand-edited file can.
            raise StorageError(f"corrupt producer id file {self._path}") from None
        if not isinstance(value, int) or value < 0:
            raise StorageError(f"corrupt producer id file {self._path}")
        return value

    def _persist(self, next_block_start: int) -> None:
        payload = json.dumps({"version": 1, "next_block_start": next_block_start})
        try:
            self._ops.makedirs(str(self._dir))
            self._ops.write_file_atomic(str(self._path), (payload + "\n").encode())
        except OSError as exc:
            raise StorageIOError(
                f"cannot persist producer ids: {exc}", errno=exc.errno
            ) from exc

    def allocate(self) -> int:
        """A fresh producer id."""
        with self._lock:
            if self._next >= self._block_end:
                end = self._next + self._block_size
                self._persist(end)
                self._block_end = end
            pid = self._next
            self._next += 1
            return pid

    @property
    def next_id(self) -> int:
        """The id the next :meth:`allocate` returns."""
        return self._next
