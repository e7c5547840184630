"""A follower's log operations on what its leader says (pure or worker-thread).

Where to truncate given the leader's (epoch, end offset) for an epoch
(``AbstractFetcherThread.getOffsetTruncationState``, KIP-101/KIP-279), cutting a
Fetch answer to whole batches, and appending them verbatim; used by
:mod:`broker.replication.fetcher`. :class:`ProducerStates` is what the replica
fetcher and manager need of the idempotent producers' state that follows the
appends (:class:`broker.producers.service.ProducerService`, a layer above).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from protocol.records import BatchHeader, CorruptBatch, iter_batches, read_header
from storage.partition_log import PartitionLog


class ProducerStates(Protocol):
    """The idempotent producers' state per partition log, kept by its follower."""

    def tracks(self, plog: PartitionLog) -> bool:
        """Whether the partition's state is current."""
        ...

    def replicated(
        self, plog: PartitionLog, batches: Sequence[BatchHeader], *, fresh: bool
    ) -> None:
        """The leader's idempotent ``batches`` were appended (``fresh``: to an
        empty log)."""
        ...

    def begin_reload(self, plog: PartitionLog) -> None:
        """Refuse the partition's idempotent batches until a reload is done."""
        ...

    async def reload(self, plog: PartitionLog, *, begun: bool = False) -> None:
        """Rebuild the partition's state from its log (worker thread)."""
        ...


def truncation_offset(
    plog: PartitionLog, leader_epoch: int, leader_end: int
) -> int | None:
    """Where to cut the local log, given the leader's (epoch, end offset) for
    it (``AbstractFetcherThread.getOffsetTruncationState``); None: keep it."""
    end = plog.log_end_offset
    if leader_end < 0:
        return None  # the leader knows no such epoch: fetching will tell
    if leader_epoch < 0:
        return min(leader_end, end)
    epoch, local_end = plog.epoch_end_offset(leader_epoch)
    if epoch < 0:
        return min(leader_end, end)
    if epoch == leader_epoch:
        return min(leader_end, local_end)
    return min(local_end, end)


def whole_batches(records: object) -> bytes | memoryview:
    """A Fetch answer's records as one buffer, cut to whole batches (a leader may
    end a response with a partial batch: Kafka followers drop it)."""
    if records is None:
        return b""
    buf: bytes | memoryview
    if isinstance(records, tuple):
        buf = b"".join(records)
    elif isinstance(records, (bytes, bytearray, memoryview)):
        buf = memoryview(records)
    else:
        return b""
    end = 0
    try:
        for pos, header in iter_batches(buf):
            end = pos + header.size
    except CorruptBatch:
        pass  # append_verbatim refuses what is left; keep the whole batches before
    return buf[:end]


def next_offset_after(records: object) -> int | None:
    """The offset after the last whole batch of a Fetch answer's records (where
    the log will end once they are appended); None: no whole batch."""
    buf = whole_batches(records)
    if not buf:
        return None
    last = None
    for _, header in iter_batches(buf):
        last = header
    return None if last is None else last.next_offset


def append_from_leader(plog: PartitionLog, records: bytes | memoryview) -> int:
    """Append a leader's batches verbatim (worker thread); returns the log end."""
    if plog.log_end_offset == plog.log_start_offset:
        first = read_header(records)
        # The leader's log start is inside its first batch (DeleteRecords): an
        # empty follower starts at that batch (Kafka Partition.appendRecords...).
        if first.base_offset < plog.log_end_offset <= first.last_offset:
            plog.reset_start(first.base_offset)
    plog.append_verbatim(records)
    return plog.log_end_offset


def append_replicated(
    plog: PartitionLog, records: bytes | memoryview
) -> tuple[int, bool, list[BatchHeader]]:
    """Append a leader's batches (worker thread): the log end, whether the log was
    empty before, and the headers of the idempotent producers' batches."""
    fresh = plog.log_end_offset == plog.log_start_offset
    end = append_from_leader(plog, records)
    idempotent = [h for _, h in iter_batches(records) if h.producer_id >= 0]
    return end, fresh, idempotent
