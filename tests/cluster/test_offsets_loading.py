"""The coordinator's side of replicated committed offsets, in one process over an
in-memory cluster: a commit is a Kafka offset-commit record in the group's
``__consumer_offsets`` partition, the groups go when leadership moves away and come
back from the log when it returns (later commits win, tombstones delete); and the
loader's replay rules on their own."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.cluster.view import OFFSETS_TOPIC, offsets_partition
from broker.context import BrokerContext
from broker.groups.offsets_log import load_entries
from protocol.error_codes import ErrorCode
from protocol.errors import DecodeError
from protocol.group_metadata_records import GroupMetadataValue, MemberMetadataValue
from protocol.messages.delete_groups import DeleteGroupsRequest, DeleteGroupsResponse
from protocol.messages.offset_commit import (
    OffsetCommitRequest,
    OffsetCommitRequestPartition,
    OffsetCommitRequestTopic,
    OffsetCommitResponse,
)
from protocol.messages.offset_fetch import (
    OffsetFetchRequest,
    OffsetFetchRequestTopic,
    OffsetFetchResponse,
)
from protocol.offset_records import (
    GroupMetadataKey,
    OffsetCommitKey,
    OffsetCommitValue,
    OffsetsLogEntry,
    TxnMarkerEntry,
    encode_key,
    encode_value,
    offsets_batch,
    read_entries,
)
from storage.errors import ProducerFenced
from storage.offset_store import CommittedOffset, OffsetStore
from tests.cluster.cluster_fake import (
    NODE,
    FakeCluster,
    call,
    cluster_config,
    groups_loaded,
    running,
    settled,
)

PARTITIONS = 4


def _key(group: str, partition: int = 0) -> OffsetCommitKey:
    return OffsetCommitKey(group=group, topic="t", partition=partition)


def _commit(at: int, group: str, offset: int, partition: int = 0) -> OffsetsLogEntry:
    return OffsetsLogEntry(
        offset=at,
        key=_key(group, partition),
        value=OffsetCommitValue(offset=offset, commit_timestamp=at),
        timestamp=1000 + at,
    )


def _membership(generation: int) -> GroupMetadataValue:
    return GroupMetadataValue(
        protocol_type="consumer",
        generation=generation,
        protocol="range",
        leader="m",
        current_state_timestamp=generation,
        members=(
            MemberMetadataValue(
                member_id="m",
                group_instance_id=None,
                client_id="c",
                client_host="/h",
                rebalance_timeout_ms=1,
                session_timeout_ms=1,
                subscription=b"s",
                assignment=b"a",
            ),
        ),
    )


def test_the_loader_keeps_each_groups_last_membership() -> None:
    """A group's last GroupMetadata record is its membership, a tombstone drops
    it, a record after the tombstone counts again; ``keep`` filters groups."""
    meta = GroupMetadataKey
    entries: list[OffsetsLogEntry | DecodeError] = [
        OffsetsLogEntry(offset=0, key=meta(group="a"), value=_membership(1)),
        OffsetsLogEntry(offset=1, key=meta(group="a"), value=_membership(2)),
        OffsetsLogEntry(offset=2, key=meta(group="b"), value=_membership(1)),
        OffsetsLogEntry(offset=3, key=meta(group="b"), value=None),
        OffsetsLogEntry(offset=4, key=meta(group="c"), value=None),
        OffsetsLogEntry(offset=5, key=meta(group="c"), value=_membership(7)),
        OffsetsLogEntry(offset=6, key=meta(group="other"), value=_membership(1)),
    ]
    loaded = load_entries(entries, keep=lambda g: g != "other")
    assert loaded.metadata == {"a": _membership(2), "c": _membership(7)}
    assert loaded.groups == {}


def test_the_loader_keeps_the_latest_commit_and_applies_tombstones() -> None:
    """A later record of a key wins, a tombstone deletes it (and an emptied group),
    a commit after a tombstone counts again; group metadata keys and undecodable
    records change nothing, the latter are counted; ``keep`` filters groups."""
    entries: list[OffsetsLogEntry | DecodeError] = [
        _commit(0, "a", 5),
        _commit(1, "a", 9),
        _commit(2, "a", 3, partition=1),
        _commit(3, "b", 1),
        OffsetsLogEntry(offset=4, key=_key("b"), value=None),
        OffsetsLogEntry(offset=5, key=GroupMetadataKey(group="a"), value=None),
        DecodeError("foreign record"),
        OffsetsLogEntry(offset=7, key=_key("a", 1), value=None),
        _commit(8, "a", 4, partition=1),
        _commit(9, "other", 1),
    ]
    loaded = load_entries(entries, keep=lambda g: g != "other")
    got = {
        g: {k: (s.at, s.written_ms, s.committed.offset) for k, s in o.items()}
        for g, o in loaded.groups.items()
    }
    assert got == {"a": {("t", 0): (1, 1001, 9), ("t", 1): (8, 1008, 4)}}
    assert (loaded.records, loaded.skipped) == (9, 1)


def _txn(at: int, group: str, offset: int, pid: int, epoch: int = 0) -> OffsetsLogEntry:
    return dataclasses.replace(
        _commit(at, group, offset), producer_id=pid, producer_epoch=epoch
    )


def test_the_loader_completes_transactional_offsets_by_their_markers() -> None:
    """A transactional record is pending until its producer's marker: COMMIT makes
    it committed unless a later plain commit exists, ABORT drops it, and one
    without a marker stays pending with its producer's epoch."""
    entries: list[OffsetsLogEntry | TxnMarkerEntry | DecodeError] = [
        _commit(0, "a", 1),
        _txn(1, "a", 10, pid=7),  # committed below: replaces the plain commit
        _txn(2, "b", 20, pid=8),
        _commit(3, "b", 30),  # written after pid 8's: wins at its commit
        _txn(4, "c", 40, pid=9),  # aborted
        TxnMarkerEntry(offset=5, producer_id=7, producer_epoch=0, commit=True),
        TxnMarkerEntry(offset=6, producer_id=8, producer_epoch=0, commit=True),
        TxnMarkerEntry(offset=7, producer_id=9, producer_epoch=0, commit=False),
        _txn(8, "a", 50, pid=7, epoch=1),  # no marker yet: pending
    ]
    loaded = load_entries(entries)
    got = {
        g: {k: s.committed.offset for k, s in o.items()}
        for g, o in loaded.groups.items()
    }
    assert got == {"a": {("t", 0): 10}, "b": {("t", 0): 30}}
    assert loaded.txn.pending_keys("a") == {("t", 0)}
    assert loaded.txn.groups() == {"a"}
    assert loaded.txn.fenced(7, 0)
    assert not loaded.txn.fenced(7, 1)


_GROUPS = ("a", "b")
_OPS = st.lists(
    st.one_of(
        st.tuples(
            st.just("plain"),
            st.sampled_from(_GROUPS),
            st.integers(0, 1),
            st.integers(0, 9),
        ),
        st.tuples(
            st.just("txn"),
            st.sampled_from((7, 8)),
            st.integers(0, 2),
            st.sampled_from(_GROUPS),
            st.integers(0, 1),
            st.integers(0, 9),
        ),
        st.tuples(
            st.just("end"), st.sampled_from((7, 8)), st.integers(0, 2), st.booleans()
        ),
        st.tuples(st.just("delete"), st.sampled_from(_GROUPS), st.integers(0, 1)),
        st.tuples(st.just("delete_group"), st.sampled_from(_GROUPS)),
    ),
    max_size=25,
)


@settings(max_examples=80, deadline=None)
@given(ops=_OPS)
def test_the_loader_agrees_with_the_single_node_store(
    ops: list[tuple[Any, ...]],
) -> None:
    """The same history of plain commits, transactional commits, markers and
    deletions gives the same committed and pending offsets whether replayed from an offsets
    partition's log (cluster) or kept by the single-node offset store."""
    entries: list[OffsetsLogEntry | TxnMarkerEntry | DecodeError] = []
    with tempfile.TemporaryDirectory() as tmp:
        store = OffsetStore(Path(tmp))
        for op in ops:
            at = len(entries)
            if op[0] == "plain":
                _, group, part, offset = op
                store.commit(
                    group, [CommittedOffset(topic="t", partition=part, offset=offset)]
                )
                entries.append(_commit(at, group, offset, partition=part))
            elif op[0] == "txn":
                _, pid, epoch, group, part, offset = op
                c = CommittedOffset(topic="t", partition=part, offset=offset)
                try:
                    store.txn_commit(group, pid, epoch, [c])
                except ProducerFenced:
                    continue  # the partition would refuse the batch too
                entry = _commit(at, group, offset, partition=part)
                entries.append(
                    dataclasses.replace(entry, producer_id=pid, producer_epoch=epoch)
                )
            elif op[0] == "delete":  # OffsetDelete: a tombstone of a committed key
                _, group, part = op
                if ("t", part) in store.fetch(group):
                    store.delete_offsets(group, [("t", part)])
                    entries.append(
                        OffsetsLogEntry(offset=at, key=_key(group, part), value=None)
                    )
            elif op[0] == "delete_group":  # committed and pending keys' tombstones
                _, group = op
                keys = sorted({*store.fetch(group), *store.pending(group)})
                store.delete_group(group)
                entries.extend(
                    OffsetsLogEntry(offset=at + i, key=_key(group, p), value=None)
                    for i, (_, p) in enumerate(keys)
                )
            else:
                _, pid, epoch, commit = op
                _seq, applied = store.complete_txn(pid, epoch, _GROUPS, commit)
                if applied is not None:
                    entries.append(
                        TxnMarkerEntry(
                            offset=at,
                            producer_id=pid,
                            producer_epoch=epoch,
                            commit=commit,
                        )
                    )
        loaded = load_entries(entries)
        for group in _GROUPS:
            from_log = {
                k: s.committed.offset for k, s in loaded.groups.get(group, {}).items()
            }
            assert from_log == {k: c.offset for k, c in store.fetch(group).items()}
            assert loaded.txn.pending_keys(group) == store.pending(group)
        store.close()


async def _commit_offset(ctx: BrokerContext, group: str, offset: int) -> ErrorCode:
    resp = await call(
        ctx,
        8,
        8,
        OffsetCommitRequest(
            group_id=group,
            generation_id_or_member_epoch=-1,
            member_id="",
            topics=(
                OffsetCommitRequestTopic(
                    name="t",
                    partitions=(
                        OffsetCommitRequestPartition(
                            partition_index=0,
                            committed_offset=offset,
                            committed_metadata="m",
                        ),
                    ),
                ),
            ),
        ),
    )
    assert isinstance(resp, OffsetCommitResponse)
    return ErrorCode(resp.topics[0].partitions[0].error_code)


async def _fetch_offset(ctx: BrokerContext, group: str) -> tuple[ErrorCode, int]:
    resp = await call(
        ctx,
        9,
        7,
        OffsetFetchRequest(
            group_id=group,
            topics=(OffsetFetchRequestTopic(name="t", partition_indexes=(0,)),),
        ),
    )
    assert isinstance(resp, OffsetFetchResponse)
    return ErrorCode(resp.error_code), resp.topics[0].partitions[0].committed_offset


async def _away_and_back(ctx: BrokerContext, cluster: FakeCluster, p: int) -> None:
    cluster.move_leader(OFFSETS_TOPIC, p, 2)
    await settled(ctx, cluster)
    assert ctx.groups.replicated is not None
    assert ctx.groups.replicated.groups() == []
    assert await _fetch_offset(ctx, "g") == (ErrorCode.NOT_COORDINATOR, -1)
    cluster.move_leader(OFFSETS_TOPIC, p, NODE)
    await settled(ctx, cluster)
    await groups_loaded(ctx, "g")


@pytest.mark.anyio
async def test_commits_are_offsets_records_reloaded_after_leadership_returns(
    tmp_path: Path,
) -> None:
    """OffsetCommit appends Kafka offset-commit records to the group's offsets
    partition; after its leadership moves away (groups unloaded: NOT_COORDINATOR)
    and back, the latest commit is loaded from the log; DeleteGroups' tombstones
    keep the group's offsets deleted across the next move."""
    cluster = FakeCluster(NODE, brokers=(NODE, 2))
    async with running(cluster_config(tmp_path), cluster) as ctx:
        cluster.add_topic("t", [[NODE]])
        cluster.add_topic(OFFSETS_TOPIC, [[NODE]] * PARTITIONS, internal=True)
        p = offsets_partition("g", PARTITIONS)
        await settled(ctx, cluster)
        await groups_loaded(ctx, "g")

        assert await _commit_offset(ctx, "g", 5) == ErrorCode.NONE
        assert await _commit_offset(ctx, "g", 7) == ErrorCode.NONE
        assert await _fetch_offset(ctx, "g") == (ErrorCode.NONE, 7)
        plog = ctx.topics.logs.partition(OFFSETS_TOPIC, p)
        read = plog.read(0, 1 << 20)
        entries = list(read_entries(b"".join(read.buffers)))
        assert [
            (e.key, e.value.offset)
            for e in entries
            if isinstance(e, OffsetsLogEntry) and e.value
        ] == [
            (_key("g"), 5),
            (_key("g"), 7),
        ]

        await _away_and_back(ctx, cluster, p)
        assert await _fetch_offset(ctx, "g") == (ErrorCode.NONE, 7)

        deleted = await call(ctx, 42, 2, DeleteGroupsRequest(groups_names=("g",)))
        assert isinstance(deleted, DeleteGroupsResponse)
        assert deleted.results[0].error_code == ErrorCode.NONE
        assert await _fetch_offset(ctx, "g") == (ErrorCode.NONE, -1)
        await _away_and_back(ctx, cluster, p)
        assert await _fetch_offset(ctx, "g") == (ErrorCode.NONE, -1)


def _records(ctx: BrokerContext, p: int) -> list[tuple[OffsetCommitKey, int | None]]:
    plog = ctx.topics.logs.partition(OFFSETS_TOPIC, p)
    read = plog.read(plog.log_start_offset, 1 << 20)
    return [
        (e.key, None if e.value is None else e.value.offset)
        for e in read_entries(b"".join(read.buffers))
        if isinstance(e, OffsetsLogEntry) and isinstance(e.key, OffsetCommitKey)
    ]


@pytest.mark.anyio
async def test_maintenance_rewrites_aging_commits_and_expires_with_tombstones(
    tmp_path: Path,
) -> None:
    """A commit whose record is half the offsets topic's retention.ms old is
    appended again (log retention never takes a live commit); an offset past
    offsets.retention.minutes gets a tombstone and is gone, also after a reload."""
    cluster = FakeCluster(NODE, brokers=(NODE, 2))
    async with running(cluster_config(tmp_path), cluster) as ctx:
        cluster.add_topic("t", [[NODE]])
        cluster.add_topic(
            OFFSETS_TOPIC,
            [[NODE]] * PARTITIONS,
            internal=True,
            configs={"retention.ms": "600000"},
        )
        p = offsets_partition("g", PARTITIONS)
        await settled(ctx, cluster)
        await groups_loaded(ctx, "g")
        assert await _commit_offset(ctx, "g", 5) == ErrorCode.NONE
        replicated = ctx.groups.replicated
        assert replicated is not None
        (committed,) = replicated.fetch("g").values()
        now = committed.commit_ms

        await replicated.maintain(
            now_ms=now + 301_000, retention_ms=10**9, protected=(), empty_since={}
        )
        assert _records(ctx, p) == [(_key("g"), 5), (_key("g"), 5)]
        assert replicated.fetch("g") == {("t", 0): committed}

        await replicated.maintain(
            now_ms=now + 1_000, retention_ms=1_000, protected={"g"}, empty_since={}
        )
        assert await _fetch_offset(ctx, "g") == (ErrorCode.NONE, 5)
        await replicated.maintain(
            now_ms=now + 1_000, retention_ms=1_000, protected=(), empty_since={}
        )
        assert _records(ctx, p)[-1] == (_key("g"), None)
        assert await _fetch_offset(ctx, "g") == (ErrorCode.NONE, -1)
        await _away_and_back(ctx, cluster, p)
        assert await _fetch_offset(ctx, "g") == (ErrorCode.NONE, -1)


@pytest.mark.anyio
async def test_leadership_lost_and_won_back_unseen_reloads_the_partition(
    tmp_path: Path,
) -> None:
    """When the cache next shows this broker leading an offsets partition at a
    later leader epoch (another broker led it in between), the partition is loaded
    again and a commit that leader wrote is what OffsetFetch answers."""
    cluster = FakeCluster(NODE, brokers=(NODE, 2))
    async with running(cluster_config(tmp_path), cluster) as ctx:
        cluster.add_topic("t", [[NODE]])
        cluster.add_topic(OFFSETS_TOPIC, [[NODE]] * PARTITIONS, internal=True)
        p = offsets_partition("g", PARTITIONS)
        await settled(ctx, cluster)
        await groups_loaded(ctx, "g")
        assert await _commit_offset(ctx, "g", 5) == ErrorCode.NONE

        # what broker 2 appended while it led (as replicated to this log)
        plog = ctx.topics.logs.partition(OFFSETS_TOPIC, p)
        plog.append(
            offsets_batch(
                [
                    (
                        encode_key("g", "t", 0),
                        encode_value(OffsetCommitValue(offset=9, commit_timestamp=1)),
                    )
                ]
            ),
            leader_epoch=1,
        )
        record = cluster.cache.partition(OFFSETS_TOPIC, p)
        assert record is not None
        cluster.set_partition(
            OFFSETS_TOPIC,
            p,
            dataclasses.replace(
                record,
                leader_epoch=record.leader_epoch + 2,
                partition_epoch=record.partition_epoch + 2,
            ),
        )
        await settled(ctx, cluster)
        await groups_loaded(ctx, "g")
        assert await _fetch_offset(ctx, "g") == (ErrorCode.NONE, 9)
