"""Reading ``__consumer_offsets`` back (cluster mode): what one partition's log holds.

:func:`read_partition` replays an offsets partition's records in log order into a
:class:`LoadedOffsets` (Kafka's ``GroupMetadataManager.doLoadGroupsAndOffsets``):
each group's committed offsets with the log offset of the record that set them,
each group's last stored membership (a GroupMetadata record), and the pending transactional offsets (:mod:`storage.txn_offsets`) whose marker is
not in the log yet. Used by :mod:`broker.groups.replicated` when this broker comes
to lead a partition, in a worker thread.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from protocol.errors import DecodeError
from protocol.group_metadata_records import GroupMetadataValue
from protocol.offset_records import (
    GroupMetadataKey,
    OffsetCommitKey,
    OffsetCommitValue,
    OffsetsLogEntry,
    TxnMarkerEntry,
    read_entries,
)
from storage.offset_store import CommittedOffset
from storage.partition_log import PartitionLog
from storage.txn_offsets import Pending, TxnOffsets, later

LOAD_READ_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class StoredOffset:
    """A committed offset and the record that holds it."""

    at: int  # the record's log offset: a later record of the same key wins
    written_ms: int  # the record's timestamp (when it was last appended)
    committed: CommittedOffset


# topic, partition -> the committed offset
GroupOffsets = dict[tuple[str, int], StoredOffset]


@dataclass(slots=True)
class LoadedOffsets:
    """What one offsets partition's log holds: each group's committed offsets
    (with the log offset of the record that set them) and undecodable records."""

    groups: dict[str, GroupOffsets] = field(default_factory=dict)
    txn: TxnOffsets[StoredOffset] = field(default_factory=TxnOffsets)
    # group -> its last GroupMetadata record (membership), tombstones applied
    metadata: dict[str, GroupMetadataValue] = field(default_factory=dict)
    records: int = 0
    skipped: int = 0


def materialize(
    offsets: dict[str, GroupOffsets],
    done: Iterable[tuple[str, tuple[str, int], Pending[StoredOffset]]],
) -> None:
    """Committed transactional offsets become committed unless a later record
    committed their partition (:func:`storage.txn_offsets.later`)."""
    for group_id, key, pending in done:
        current = offsets.get(group_id, {}).get(key)
        if later(pending.at, None if current is None else current.at):
            offsets.setdefault(group_id, {})[key] = pending.value


def load_entries(
    entries: Iterable[OffsetsLogEntry | TxnMarkerEntry | DecodeError],
    *,
    keep: Callable[[str], bool] = lambda group: True,
    into: LoadedOffsets | None = None,
) -> LoadedOffsets:
    """Replay offsets-partition records in log order: a later record of a key
    replaces an earlier one, a tombstone deletes it (Kafka's
    ``GroupMetadataManager.doLoadGroupsAndOffsets``); a transactional record is
    pending until its producer's marker commits or aborts it. A group metadata
    record replaces the group's stored membership (its tombstone drops it);
    groups ``keep`` refuses are left out."""
    out = LoadedOffsets() if into is None else into
    for entry in entries:
        if isinstance(entry, DecodeError):
            out.skipped += 1
            continue
        if isinstance(entry, TxnMarkerEntry):
            done = out.txn.complete(
                entry.producer_id, entry.producer_epoch, None, entry.commit
            )
            materialize(out.groups, done or ())
            continue
        out.records += 1
        key = entry.key
        if not keep(key.group):
            continue
        value = entry.value
        if isinstance(key, GroupMetadataKey):
            if isinstance(value, GroupMetadataValue):
                out.metadata[key.group] = value
            else:
                out.metadata.pop(key.group, None)
            continue
        if isinstance(value, GroupMetadataValue):
            out.skipped += 1  # a group value under an offset key: not ours
            continue
        tp = (key.topic, key.partition)
        pid = entry.producer_id
        if value is None:
            if pid >= 0:
                out.txn.remove(pid, key.group, tp)
                continue
            out.txn.drop(key.group, [tp])
            group = out.groups.get(key.group)
            if group is not None:
                group.pop(tp, None)
                if not group:
                    del out.groups[key.group]
            continue
        stored = StoredOffset(
            entry.offset, entry.timestamp, committed_offset(key, value)
        )
        if pid >= 0:
            out.txn.add(pid, entry.producer_epoch, key.group, tp, entry.offset, stored)
        else:
            out.groups.setdefault(key.group, {})[tp] = stored
    return out


def committed_offset(key: OffsetCommitKey, value: OffsetCommitValue) -> CommittedOffset:
    """The committed offset a record holds."""
    return CommittedOffset(
        topic=key.topic,
        partition=key.partition,
        offset=value.offset,
        leader_epoch=value.leader_epoch,
        metadata=value.metadata,
        commit_ms=value.commit_timestamp,
        expire_ms=value.expire_timestamp,
    )


def commit_value(c: CommittedOffset) -> OffsetCommitValue:
    """The record value of a committed offset."""
    return OffsetCommitValue(
        offset=c.offset,
        leader_epoch=c.leader_epoch,
        metadata=c.metadata,
        commit_timestamp=c.commit_ms,
        expire_timestamp=c.expire_ms,
    )


def _read_log(plog: PartitionLog, start: int, end: int) -> Iterator[bytes]:
    """Whole batches of ``plog`` from ``start`` up to ``end`` (blocking)."""
    offset = start
    while offset < end:
        result = plog.read(offset, LOAD_READ_BYTES, upper_bound=end)
        if result.next_offset <= offset:
            return
        yield b"".join(result.buffers)
        offset = result.next_offset


def read_partition(
    plog: PartitionLog,
    end: int,
    keep: Callable[[str], bool],
    *,
    start: int | None = None,
    into: LoadedOffsets | None = None,
) -> LoadedOffsets:
    """Load an offsets partition's log from ``start`` (default: its start) up to
    ``end`` (blocking: a worker thread), into ``into`` when given.

    Raises:
        StorageError: the log cannot be read.
        RecordBatchError: a batch is corrupt.
    """
    out = LoadedOffsets() if into is None else into
    first = plog.log_start_offset if start is None else start
    for chunk in _read_log(plog, first, end):
        load_entries(read_entries(chunk), keep=keep, into=out)
    return out
