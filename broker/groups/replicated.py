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
(null values) for the group's offsets and its group metadata key. A group's
membership is a GroupMetadata record under that key (:meth:`ReplicatedOffsets
.store_group`, Kafka's ``storeGroup``), loaded with the offsets.

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

Transactional offsets (TxnOffsetCommit) are appended the same way as a
transactional batch of the producer, fenced first by the producer's epoch in that
partition (INVALID_PRODUCER_EPOCH); they stay pending (:mod:`storage.txn_offsets`)
until the transaction coordinator's COMMIT or ABORT marker is written to the
partition (WriteTxnMarkers calls :meth:`ReplicatedOffsets.complete_partition`
once it is replicated). Loading replays them: a transactional record without a
marker yet is pending again, one with a marker is committed or dropped by it.

The in-memory map here is the read side; the local JSON-lines offset store of a
single node (:mod:`storage.offset_store`) is not used for these groups.
"""

from __future__ import annotations

import functools
import itertools
import time
from collections.abc import Callable, Collection, Mapping, Sequence

import anyio
import structlog

from broker.cluster.cache import MetadataCache
from broker.cluster.view import OFFSETS_TOPIC, offsets_partition
from broker.durability.acks import Durability, PendingAck
from broker.groups.offsets import offset_expired
from broker.groups.offsets_log import (
    GroupOffsets,
    LoadedOffsets,
    StoredOffset,
    commit_value,
    materialize,
    read_partition,
)
from broker.topics.errors import error_code
from broker.topics.service import TopicService
from protocol.error_codes import ErrorCode
from protocol.group_metadata_records import GroupMetadataValue, encode_group_value
from protocol.offset_records import (
    encode_group_key,
    encode_key,
    encode_value,
    offsets_batch,
)
from protocol.records import RecordBatchError
from storage.errors import StorageError
from storage.offset_store import CommittedOffset
from storage.partition_log import PartitionLog
from storage.txn_offsets import TxnOffsets

log = structlog.get_logger("broker.groups")

DEFAULT_COMMIT_TIMEOUT_MS = 5_000  # offsets.commit.timeout.ms
LOAD_RETRY_S = 2.0


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
        # offsets partition -> its pending transactional offsets
        self._txn: dict[int, TxnOffsets[StoredOffset]] = {}

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
        self._txn.pop(partition, None)
        gone = [g for g in self._offsets if self.partition_of(g) == partition]
        for group_id in gone:
            del self._offsets[group_id]
        if gone:
            log.info("offsets_unloaded", partition=partition, groups=len(gone))
        return gone

    def maps_to(self, group_id: str, partition: int) -> bool:
        """Whether ``group_id`` belongs to offsets partition ``partition``."""
        return self.partition_of(group_id) == partition

    async def run(
        self, on_loaded: Callable[[list[str], dict[str, GroupMetadataValue]], None]
    ) -> None:
        """Load the offsets partitions this broker comes to lead, one at a time;
        ``on_loaded`` gets each loaded partition's groups and their stored
        memberships. Until cancelled."""
        while True:
            if not self._to_load:
                self._wake = anyio.Event()
                await self._wake.wait()
                continue
            partition, generation = next(iter(self._to_load.items()))
            loaded = await self._load(partition, generation)
            if loaded is None:
                await anyio.sleep(LOAD_RETRY_S)
                continue
            if self._to_load.get(partition) == generation:
                del self._to_load[partition]
            groups, metadata = loaded
            if groups or metadata:
                on_loaded(groups, metadata)

    async def _load(
        self, partition: int, generation: int
    ) -> tuple[list[str], dict[str, GroupMetadataValue]] | None:
        """Load one partition; its groups with offsets and the stored memberships,
        or None when it must be tried again."""
        started = time.monotonic()
        record = self.cache.topic(OFFSETS_TOPIC)
        if record is None:
            return None
        count = record.partitions
        loaded = LoadedOffsets()
        try:
            plog = self.topics.logs.partition(OFFSETS_TOPIC, partition)
            start, end = plog.log_start_offset, plog.log_end_offset
            # read until caught up: what is appended meanwhile (a transaction
            # marker) is in the loaded state, which is then installed at once
            while start < end:
                await anyio.to_thread.run_sync(
                    functools.partial(
                        read_partition,
                        plog,
                        end,
                        lambda g: offsets_partition(g, count) == partition,
                        start=start,
                        into=loaded,
                    )
                )
                start, end = end, plog.log_end_offset
        except (StorageError, RecordBatchError) as e:
            log.error("offsets_load_failed", partition=partition, error=str(e))
            return None
        if self._led.get(partition) != generation:
            return [], {}  # lost (or lost and regained) meanwhile: a later load counts
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
        for topic in {k[0] for _, _, _, k, _ in loaded.txn.items()}:
            if exists(topic) is None:
                loaded.txn.drop_topic(topic)
        self._txn[partition] = loaded.txn
        self._loaded.add(partition)
        log.info(
            "offsets_loaded",
            partition=partition,
            end_offset=end,
            records=loaded.records,
            skipped=loaded.skipped,
            groups=len(loaded.groups),
            memberships=len(loaded.metadata),
            pending_txn_offsets=len(loaded.txn),
            ms=round((time.monotonic() - started) * 1000, 1),
        )
        return sorted({*loaded.groups, *loaded.txn.groups()}), loaded.metadata

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

    def pending(self, group_id: str) -> set[tuple[str, int]]:
        """The group's partitions with a pending transactional offset."""
        txn = self._txn_of(group_id)
        return set() if txn is None else txn.pending_keys(group_id)

    def txn_groups(self) -> list[str]:
        """The groups with pending transactional offsets loaded here."""
        return [g for txn in self._txn.values() for g in txn.groups()]

    def txn_groups_of(self, partition: int, producer_id: int) -> set[str]:
        """The groups of an offsets partition where the producer has pending
        offsets (what its marker there completes)."""
        txn = self._txn.get(partition)
        return set() if txn is None else txn.producer_groups(producer_id)

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
        for txn in self._txn.values():
            txn.drop_topic(topic)
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
            # not while a transactional offset is pending there: the rewritten
            # record would be later than it and win when its transaction commits
            pending = self.pending(group_id)
            old = [
                s.committed
                for k, s in self._offsets.get(group_id, {}).items()
                if now_ms - s.written_ms >= keep_ms // 2 and k not in pending
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

    async def txn_commit(
        self,
        group_id: str,
        producer_id: int,
        producer_epoch: int,
        accepted: list[CommittedOffset],
    ) -> ErrorCode:
        """Append the offsets as one transactional batch of the producer to the
        group's offsets partition; once replicated they are pending until the
        producer's marker. INVALID_PRODUCER_EPOCH for an epoch older than the
        producer's in that partition."""
        records = [
            (encode_key(group_id, c.topic, c.partition), encode_value(commit_value(c)))
            for c in accepted
        ]

        def check(plog: PartitionLog) -> ErrorCode:
            txn = self._txn_of(group_id)
            known = plog.txn_producer_epoch(producer_id)
            if (txn is not None and txn.fenced(producer_id, producer_epoch)) or (
                known is not None and producer_epoch < known
            ):
                return ErrorCode.INVALID_PRODUCER_EPOCH
            return ErrorCode.NONE

        def apply(base_offset: int, written_ms: int) -> None:
            txn = self._txn_of(group_id)
            if txn is None:
                return
            for i, c in enumerate(accepted):
                at = base_offset + i
                stored = StoredOffset(at, written_ms, c)
                key = (c.topic, c.partition)
                txn.add(producer_id, producer_epoch, group_id, key, at, stored)

        return await self._append(
            group_id,
            records,
            apply,
            check=check,
            producer=(producer_id, producer_epoch),
        )

    def complete_partition(
        self,
        partition: int,
        producer_id: int,
        producer_epoch: int,
        commit: bool,
        groups: Collection[str] | None = None,
    ) -> int | None:
        """The producer's marker was written to an offsets partition (and
        replicated): its pending offsets there (of ``groups`` only, when given)
        are committed or dropped. How many became committed; None when the
        partition is not loaded here (its load reads the marker) or the marker is
        older than the pending offsets."""
        txn = self._txn.get(partition)
        if txn is None or partition not in self._loaded:
            return None
        done = txn.complete(producer_id, producer_epoch, groups, commit)
        if done is None:
            return None
        materialize(self._offsets, done)
        return len(done)

    def complete_txn(
        self,
        producer_id: int,
        producer_epoch: int,
        groups: Collection[str],
        commit: bool,
    ) -> None:
        """Complete the producer's pending offsets of ``groups`` (in memory)."""
        by_partition: dict[int, list[str]] = {}
        for group_id in groups:
            partition = self.partition_of(group_id)
            if partition is not None:
                by_partition.setdefault(partition, []).append(group_id)
        for partition, names in by_partition.items():
            self.complete_partition(
                partition, producer_id, producer_epoch, commit, names
            )

    async def delete_offsets(
        self, group_id: str, keys: Sequence[tuple[str, int]]
    ) -> ErrorCode:
        """Tombstones for some of the group's offsets (expiry)."""
        records = [(encode_key(group_id, t, p), None) for t, p in keys]

        def apply(base_offset: int, written_ms: int) -> None:
            self._drop_pending(group_id, keys)
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
        """Tombstones for the group's offsets (committed and pending, so that a
        later load does not bring pending ones back, as Kafka's
        ``OffsetMetadataManager.deleteAllOffsets``) and its metadata key; once
        replicated the group's offsets are gone."""
        keys = {*self._offsets.get(group_id, {}), *self.pending(group_id)}
        records: list[tuple[bytes, bytes | None]] = [
            (encode_key(group_id, t, p), None) for (t, p) in sorted(keys)
        ]
        records.append((encode_group_key(group_id), None))

        def apply(base_offset: int, written_ms: int) -> None:
            self._drop_pending(group_id, None)
            current = self._offsets.get(group_id)
            if current is None:
                return
            for key in [k for k, s in current.items() if s.at < base_offset]:
                del current[key]
            if not current:
                del self._offsets[group_id]

        return await self._append(group_id, records, apply)

    async def store_group(self, group_id: str, value: GroupMetadataValue) -> ErrorCode:
        """Append the group's membership (a GroupMetadata record); answered once
        replicated."""
        records = [(encode_group_key(group_id), encode_group_value(value))]
        return await self._append(group_id, records, lambda _at, _ms: None)

    def _drop_pending(
        self, group_id: str, keys: Collection[tuple[str, int]] | None
    ) -> None:
        txn = self._txn_of(group_id)
        if txn is not None:
            txn.drop(group_id, keys)

    def _txn_of(self, group_id: str) -> TxnOffsets[StoredOffset] | None:
        partition = self.partition_of(group_id)
        return None if partition is None else self._txn.get(partition)

    async def _append(
        self,
        group_id: str,
        records: Sequence[tuple[bytes, bytes | None]],
        apply: Callable[[int, int], None],
        *,
        check: Callable[[PartitionLog], ErrorCode] | None = None,
        producer: tuple[int, int] = (-1, -1),
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
            refused = ErrorCode.NONE if check is None else check(plog)
            if refused != ErrorCode.NONE:
                return refused
            written_ms = time.time_ns() // 1_000_000
            batch = offsets_batch(
                records,
                timestamp=written_ms,
                producer_id=producer[0],
                producer_epoch=producer[1],
            )
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
