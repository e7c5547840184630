"""Committed offsets kept in ``__consumer_offsets`` (cluster mode): Kafka's design.

The coordinator of group G is the leader of G's offsets partition
(``offsets_partition(G, n)``). Each OffsetCommit becomes one record batch of
offset-commit records (:mod:`protocol.offset_records`: Kafka's key v1 / value v3)
appended to that partition through the normal partition append path, so followers
replicate it like any partition; the commit is answered once the partition's high
watermark covers the batch (acks=all), and only then do the offsets become what
OffsetFetch reads. A commit that does not get there within
``offsets.commit.timeout.ms`` answers COORDINATOR_NOT_AVAILABLE, one whose
leadership moved meanwhile NOT_COORDINATOR (Kafka's
``GroupMetadataManager.storeOffsets`` mapping). DeleteGroups writes tombstones
(null values) for the group's offsets and its group metadata key.

Leadership drives ownership (``GroupMetadataManager.loadGroupsAndOffsets`` /
``removeGroupsForPartition``): when this broker becomes leader of an offsets
partition it reads that partition's log from its start to its log end in a worker
thread and rebuilds the committed offsets of the groups mapping to it (later
records win, tombstones delete); meanwhile the group APIs for those groups answer
COORDINATOR_LOAD_IN_PROGRESS. When it stops leading the partition it drops those
groups (the new leader owns them). Offsets of topics that no longer exist are not
loaded.

Maintenance (every ``offsets.retention.check.interval.ms``): expired offsets
(``offsets.retention.minutes``, Kafka's rules) get tombstones, and offsets whose
record is half the offsets topic's ``retention.ms`` old are appended again, so that
log retention (there is no log compaction) never deletes a live commit.

The in-memory map here is the read side; the local JSON-lines offset store of a
single node (:mod:`storage.offset_store`) is not used for these groups.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import anyio
import structlog

from broker.cluster.cache import MetadataCache
from broker.cluster.view import OFFSETS_TOPIC, offsets_partition
from broker.durability.acks import Durability, PendingAck
from broker.groups.offsets import offset_expired
from broker.topics.errors import error_code
from broker.topics.service import TopicService
from protocol.error_codes import ErrorCode
from protocol.errors import DecodeError
from protocol.offset_records import (
    OffsetCommitKey,
    OffsetCommitValue,
    OffsetsLogEntry,
    encode_group_key,
    encode_key,
    encode_value,
    offsets_batch,
    read_entries,
)
from protocol.records import RecordBatchError
from storage.errors import StorageError
from storage.offset_store import CommittedOffset
from storage.partition_log import PartitionLog

log = structlog.get_logger("broker.groups")

DEFAULT_COMMIT_TIMEOUT_MS = 5_000  # offsets.commit.timeout.ms
LOAD_READ_BYTES = 1 << 20
LOAD_RETRY_S = 2.0


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
    records: int = 0
    skipped: int = 0


def load_entries(
    entries: Iterable[OffsetsLogEntry | DecodeError],
    *,
    keep: Callable[[str], bool] = lambda group: True,
    into: LoadedOffsets | None = None,
) -> LoadedOffsets:
    """Replay offsets-partition records in log order: a later record of a key
    replaces an earlier one, a tombstone deletes it (Kafka's
    ``GroupMetadataManager.doLoadGroupsAndOffsets``). Group metadata records are
    ignored (membership is not persisted); groups ``keep`` refuses are left out."""
    out = LoadedOffsets() if into is None else into
    for entry in entries:
        if isinstance(entry, DecodeError):
            out.skipped += 1
            continue
        out.records += 1
        key = entry.key
        if not isinstance(key, OffsetCommitKey) or not keep(key.group):
            continue
        value = entry.value
        if value is None:
            group = out.groups.get(key.group)
            if group is not None:
                group.pop((key.topic, key.partition), None)
                if not group:
                    del out.groups[key.group]
            continue
        out.groups.setdefault(key.group, {})[(key.topic, key.partition)] = StoredOffset(
            entry.offset, entry.timestamp, committed_offset(key, value)
        )
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
    plog: PartitionLog, end: int, keep: Callable[[str], bool]
) -> LoadedOffsets:
    """Load an offsets partition's log up to ``end`` (blocking: a worker thread).

    Raises:
        StorageError: the log cannot be read.
        RecordBatchError: a batch is corrupt.
    """
    out = LoadedOffsets()
    for chunk in _read_log(plog, plog.log_start_offset, end):
        load_entries(read_entries(chunk), keep=keep, into=out)
    return out


def _commit_error(code: ErrorCode) -> ErrorCode:
    """An append's error as OffsetCommit answers it (``storeOffsets``)."""
    if code in (
        ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
        ErrorCode.NOT_ENOUGH_REPLICAS,
        ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
        ErrorCode.REQUEST_TIMED_OUT,
    ):
        return ErrorCode.COORDINATOR_NOT_AVAILABLE
    if code in (ErrorCode.NOT_LEADER_OR_FOLLOWER, ErrorCode.KAFKA_STORAGE_ERROR):
        return ErrorCode.NOT_COORDINATOR
    if code in (ErrorCode.MESSAGE_TOO_LARGE, ErrorCode.RECORD_LIST_TOO_LARGE):
        return ErrorCode.INVALID_COMMIT_OFFSET_SIZE
    return code


class ReplicatedOffsets:
    """The committed offsets of the groups whose offsets partitions this broker
    leads; run :meth:`run` (the loader) in a task group."""

    def __init__(
        self,
        topics: TopicService,
        durability: Durability,
        cache: MetadataCache,
        *,
        commit_timeout_ms: int = DEFAULT_COMMIT_TIMEOUT_MS,
    ) -> None:
        self.topics = topics
        self.durability = durability
        self.cache = cache
        self.commit_timeout_ms = commit_timeout_ms
        self._generations = itertools.count(1)
        # offsets partition -> generation of this broker's leadership of it
        self._led: dict[int, int] = {}
        self._loaded: set[int] = set()
        self._to_load: dict[int, int] = {}
        self._wake = anyio.Event()
        self._offsets: dict[str, GroupOffsets] = {}

    # -- ownership ------------------------------------------------------------------

    def partition_of(self, group_id: str) -> int | None:
        """The offsets partition of ``group_id`` (None: no offsets topic yet)."""
        record = self.cache.topic(OFFSETS_TOPIC)
        if record is None or record.partitions <= 0:
            return None
        return offsets_partition(group_id, record.partitions)

    def refusal(self, group_id: str) -> ErrorCode:
        """Why the group APIs cannot serve ``group_id`` here: NOT_COORDINATOR
        (another broker, or none, leads its offsets partition),
        COORDINATOR_LOAD_IN_PROGRESS (its offsets are being loaded); else NONE."""
        if self.cache.group_coordinator(group_id) != self.cache.node_id:
            return ErrorCode.NOT_COORDINATOR
        if self.partition_of(group_id) not in self._loaded:
            return ErrorCode.COORDINATOR_LOAD_IN_PROGRESS
        return ErrorCode.NONE

    def on_leadership(self, partition: int, leads: bool) -> list[str]:
        """This broker became (``leads``) or stopped being the leader of an offsets
        partition: schedule its load, or drop its groups (returned)."""
        self._loaded.discard(partition)
        if leads:
            generation = self._led[partition] = next(self._generations)
            self._to_load[partition] = generation
            self._wake.set()
            return []
        self._led.pop(partition, None)
        self._to_load.pop(partition, None)
        gone = [g for g in self._offsets if self.partition_of(g) == partition]
        for group_id in gone:
            del self._offsets[group_id]
        if gone:
            log.info("offsets_unloaded", partition=partition, groups=len(gone))
        return gone

    def maps_to(self, group_id: str, partition: int) -> bool:
        """Whether ``group_id`` belongs to offsets partition ``partition``."""
        return self.partition_of(group_id) == partition

    async def run(self, on_loaded: Callable[[list[str]], None]) -> None:
        """Load the offsets partitions this broker comes to lead, one at a time;
        ``on_loaded`` gets each loaded partition's groups. Until cancelled."""
        while True:
            if not self._to_load:
                self._wake = anyio.Event()
                await self._wake.wait()
                continue
            partition, generation = next(iter(self._to_load.items()))
            groups = await self._load(partition, generation)
            if groups is None:
                await anyio.sleep(LOAD_RETRY_S)
                continue
            if self._to_load.get(partition) == generation:
                del self._to_load[partition]
            if groups:
                on_loaded(groups)

    async def _load(self, partition: int, generation: int) -> list[str] | None:
        """Load one partition; its groups, or None when it must be tried again."""
        started = time.monotonic()
        record = self.cache.topic(OFFSETS_TOPIC)
        if record is None:
            return None
        count = record.partitions
        try:
            plog = self.topics.logs.partition(OFFSETS_TOPIC, partition)
            end = plog.log_end_offset
            loaded = await anyio.to_thread.run_sync(
                read_partition,
                plog,
                end,
                lambda g: offsets_partition(g, count) == partition,
            )
        except (StorageError, RecordBatchError) as e:
            log.error("offsets_load_failed", partition=partition, error=str(e))
            return None
        if self._led.get(partition) != generation:
            return []  # lost (or lost and regained) meanwhile: a later load counts
        exists = self.topics.find
        for group_id, offsets in loaded.groups.items():
            kept = {k: v for k, v in offsets.items() if exists(k[0]) is not None}
            if kept:
                self._offsets[group_id] = kept
            else:
                self._offsets.pop(group_id, None)
        for group_id in [g for g in self._offsets if g not in loaded.groups]:
            if offsets_partition(group_id, count) == partition:
                del self._offsets[group_id]
        self._loaded.add(partition)
        log.info(
            "offsets_loaded",
            partition=partition,
            end_offset=end,
            records=loaded.records,
            skipped=loaded.skipped,
            groups=len(loaded.groups),
            ms=round((time.monotonic() - started) * 1000, 1),
        )
        return list(loaded.groups)

    # -- reads ------------------------------------------------------------------------

    def fetch(
        self, group_id: str, wanted: list[tuple[str, int]] | None = None
    ) -> dict[tuple[str, int], CommittedOffset]:
        """The group's committed offsets (only ``wanted`` ones when given)."""
        offsets = self._offsets.get(group_id, {})
        if wanted is None:
            return {k: s.committed for k, s in offsets.items()}
        return {k: offsets[k].committed for k in wanted if k in offsets}

    def groups(self) -> list[str]:
        """The groups with committed offsets loaded here."""
        return list(self._offsets)

    def drop_topic(self, topic: str) -> int:
        """Forget every group's offsets of a deleted topic (in memory; a later load
        leaves them out too); how many."""
        dropped = 0
        for group_id in list(self._offsets):
            offsets = self._offsets[group_id]
            for key in [k for k in offsets if k[0] == topic]:
                del offsets[key]
                dropped += 1
            if not offsets:
                del self._offsets[group_id]
        return dropped

    # -- maintenance ------------------------------------------------------------------

    async def maintain(
        self,
        *,
        now_ms: int,
        retention_ms: int,
        protected: Collection[str],
        empty_since: Mapping[str, int],
    ) -> None:
        """Expire offsets (``offsets.retention.minutes``; tombstones), and append
        again the offsets whose records are half the offsets topic's
        ``retention.ms`` old: log retention never deletes a live commit (this stands
        in for Kafka's log compaction, which keeps a key's latest record)."""
        meta = self.topics.find(OFFSETS_TOPIC)
        keep_ms = -1 if meta is None else meta.config.retention_ms
        expired = refreshed = 0
        for group_id in list(self._offsets):
            if self.refusal(group_id) != ErrorCode.NONE:
                continue
            if group_id not in protected:
                gone = [
                    k
                    for k, s in self._offsets.get(group_id, {}).items()
                    if offset_expired(
                        s.committed,
                        now_ms=now_ms,
                        retention_ms=retention_ms,
                        empty_since_ms=empty_since.get(group_id),
                    )
                ]
                if gone and await self.delete_offsets(group_id, gone) == ErrorCode.NONE:
                    expired += len(gone)
            if keep_ms < 0:
                continue
            old = [
                s.committed
                for s in self._offsets.get(group_id, {}).values()
                if now_ms - s.written_ms >= keep_ms // 2
            ]
            if old and await self.commit(group_id, old) == ErrorCode.NONE:
                refreshed += len(old)
        if expired:
            log.info("offsets_expired", count=expired)
        if refreshed:
            log.info("offsets_rewritten", count=refreshed)

    # -- writes -----------------------------------------------------------------------

    async def commit(self, group_id: str, accepted: list[CommittedOffset]) -> ErrorCode:
        """Append the offsets as one batch to the group's offsets partition and wait
        until the high watermark covers it; then they are what OffsetFetch reads."""
        records = [
            (encode_key(group_id, c.topic, c.partition), encode_value(commit_value(c)))
            for c in accepted
        ]

        def apply(base_offset: int, written_ms: int) -> None:
            offsets = self._offsets.setdefault(group_id, {})
            for i, c in enumerate(accepted):
                key = (c.topic, c.partition)
                at = base_offset + i
                current = offsets.get(key)
                if current is None or current.at < at:
                    offsets[key] = StoredOffset(at, written_ms, c)

        return await self._append(group_id, records, apply)

    async def delete_offsets(
        self, group_id: str, keys: Sequence[tuple[str, int]]
    ) -> ErrorCode:
        """Tombstones for some of the group's offsets (expiry)."""
        records = [(encode_key(group_id, t, p), None) for t, p in keys]

        def apply(base_offset: int, written_ms: int) -> None:
            current = self._offsets.get(group_id)
            if current is None:
                return
            for key in keys:
                stored = current.get(key)
                if stored is not None and stored.at < base_offset:
                    del current[key]
            if not current:
                del self._offsets[group_id]

        return await self._append(group_id, records, apply)

    async def delete_group(self, group_id: str) -> ErrorCode:
        """Tombstones for the group's offsets and its metadata key; once replicated
        the group's offsets are gone."""
        offsets = self._offsets.get(group_id, {})
        records: list[tuple[bytes, bytes | None]] = [
            (encode_key(group_id, t, p), None) for (t, p) in offsets
        ]
        records.append((encode_group_key(group_id), None))

        def apply(base_offset: int, written_ms: int) -> None:
            current = self._offsets.get(group_id)
            if current is None:
                return
            for key in [k for k, s in current.items() if s.at < base_offset]:
                del current[key]
            if not current:
                del self._offsets[group_id]

        return await self._append(group_id, records, apply)

    async def _append(
        self,
        group_id: str,
        records: Sequence[tuple[bytes, bytes | None]],
        apply: Callable[[int, int], None],
    ) -> ErrorCode:
        refused = self.refusal(group_id)
        if refused != ErrorCode.NONE:
            return refused
        partition = self.partition_of(group_id)
        assert partition is not None  # refusal() found it loaded
        generation = self._led.get(partition)
        topics = self.topics
        meta = topics.find(OFFSETS_TOPIC)
        if meta is None:
            return ErrorCode.COORDINATOR_NOT_AVAILABLE
        try:
            plog = topics.logs.partition(OFFSETS_TOPIC, partition)
            state = topics.state(meta, plog)
            if not state.is_local_leader:
                return ErrorCode.NOT_COORDINATOR
            written_ms = time.time_ns() // 1_000_000
            batch = offsets_batch(records, timestamp=written_ms)
            result = plog.append(batch, leader_epoch=state.leader_epoch)
        except StorageError as e:
            log.error("offset_commit_failed", group_id=group_id, error=str(e))
            return _commit_error(error_code(e))
        durability = self.durability
        durability.after_append(plog, meta.config.write_caching)
        replicated: Callable[[], int | None] | None = None
        if len(state.isr) > 1:
            replicated = lambda: topics.replicated_high_watermark(meta, plog)  # noqa: E731
        elif not durability.needs_ack_wait(-1, meta.config.write_caching):
            replicated = lambda: plog.log_end_offset  # noqa: E731
        failed: list[ErrorCode] = []
        await durability.acks_all(
            [PendingAck(plog, result.last_offset + 1, (0, 0), replicated)],
            self.commit_timeout_ms,
            lambda _item, code: failed.append(code),
            error_code,
        )
        if failed:
            log.warning(
                "offset_commit_not_replicated", group_id=group_id, error=failed[0].name
            )
            return _commit_error(failed[0])
        if self._led.get(partition) != generation or partition not in self._loaded:
            return ErrorCode.NOT_COORDINATOR
        apply(result.base_offset, written_ms)
        return ErrorCode.NONE
