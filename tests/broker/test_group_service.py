"""The async group service: waits resolved by the coordinator, timers, durable commits."""

from __future__ import annotations

from pathlib import Path

import anyio

from broker.config import resolve
from broker.durability.group_commit import GroupCommit, PartitionWaiters
from broker.groups.consumer_protocol import decode_consumer_assignment
from broker.groups.model import JoinRequest, LeavingMember, Protocol, SyncRequest
from broker.groups.offsets import CommitPartition
from broker.groups.service import GroupService
from broker.groups.settings import GroupConfig
from protocol.error_codes import ErrorCode as E
from storage.offset_store import OffsetStore

CFG = GroupConfig(min_session_timeout_ms=10)


def _join(
    member_id: str = "", session_ms: int = 10_000, client: str = "c"
) -> JoinRequest:
    return JoinRequest(
        token=0,
        group_id="g",
        member_id=member_id,
        client_id=client,
        session_timeout_ms=session_ms,
        rebalance_timeout_ms=5_000,
        protocol_type="consumer",
        protocols=(Protocol(name="range", metadata=b"m"),),
    )


async def _member(svc: GroupService, session_ms: int = 10_000) -> str:
    first = await svc.join(_join(session_ms=session_ms))
    assert first.error == E.MEMBER_ID_REQUIRED
    return first.member_id


def test_two_members_join_concurrently_and_sync(tmp_path: Path) -> None:
    """Concurrent joins share one generation; followers get the leader's assignment."""

    async def main() -> None:
        svc = GroupService(OffsetStore(tmp_path), config=CFG)
        async with anyio.create_task_group() as tg:
            tg.start_soon(svc.run)
            a, b = await _member(svc), await _member(svc)
            results = {}

            async def join(mid: str) -> None:
                results[mid] = await svc.join(_join(mid))

            async with anyio.create_task_group() as joins:
                joins.start_soon(join, a)
                joins.start_soon(join, b)
            assert {r.generation_id for r in results.values()} == {1}
            leader = results[a].leader_id
            follower = b if leader == a else a
            syncs = {}

            async def sync(
                mid: str, assignments: tuple[tuple[str, bytes], ...]
            ) -> None:
                syncs[mid] = await svc.sync(
                    SyncRequest(
                        token=0,
                        group_id="g",
                        member_id=mid,
                        generation_id=1,
                        assignments=assignments,
                    )
                )

            async with anyio.create_task_group() as s:
                s.start_soon(sync, follower, ())
                await anyio.sleep(0.01)
                s.start_soon(sync, leader, ((leader, b"L"), (follower, b"F")))
            assert syncs[follower].assignment == b"F"
            assert syncs[leader].assignment == b"L"
            assert svc.heartbeat("g", follower, 1, None) == E.NONE
            tg.cancel_scope.cancel()
        svc.store.close()

    anyio.run(main)


def test_session_expiry_by_the_timer_task(tmp_path: Path) -> None:
    """The single timer task expires a silent member without any request arriving."""

    async def main() -> None:
        svc = GroupService(OffsetStore(tmp_path), config=CFG)
        async with anyio.create_task_group() as tg:
            tg.start_soon(svc.run)
            m = await _member(svc, session_ms=100)
            joined = await svc.join(_join(m, session_ms=100))
            assert joined.error == E.NONE
            await anyio.sleep(0.5)  # 5 session timeouts; nobody heartbeats
            assert not svc.coordinator.groups["g"].members
            assert svc.describe("g").state.value == "Empty"
            tg.cancel_scope.cancel()
        svc.store.close()

    anyio.run(main)


def test_commit_is_durable_before_answer_and_fetch_reads_it(tmp_path: Path) -> None:
    """A simple commit returns after fsync and survives reopening the store."""

    async def main() -> None:
        store = OffsetStore(tmp_path)
        svc = GroupService(store, config=CFG, partition_exists=lambda t, p: t == "t")
        async with anyio.create_task_group() as tg:
            tg.start_soon(svc.run)
            errors = await svc.commit_offsets(
                "solo",
                "",
                -1,
                None,
                [
                    CommitPartition(topic="t", partition=0, offset=42, metadata="hi"),
                    CommitPartition(topic="nope", partition=0, offset=1),
                    CommitPartition(
                        topic="t", partition=1, offset=1, metadata="x" * 5000
                    ),
                ],
            )
            assert errors == {
                ("t", 0): E.NONE,
                ("nope", 0): E.UNKNOWN_TOPIC_OR_PARTITION,
                ("t", 1): E.OFFSET_METADATA_TOO_LARGE,
            }
            assert not store.needs_sync
            rows = svc.fetch_offsets("solo", [("t", 0), ("t", 9)])
            assert [(r.partition, r.offset, r.metadata) for r in rows] == [
                (0, 42, "hi"),
                (9, -1, ""),
            ]
            tg.cancel_scope.cancel()
        store.close(clean=False)
        again = OffsetStore(tmp_path)
        assert again.fetch("solo")[("t", 0)].offset == 42
        again.close()

    anyio.run(main)


def test_commits_share_the_broker_group_commit(tmp_path: Path) -> None:
    """With the broker's GroupCommit, many concurrent commits need few fsync rounds."""

    async def main() -> None:
        rounds = []
        gc = GroupCommit(PartitionWaiters(), on_round=rounds.append)
        store = OffsetStore(tmp_path)
        svc = GroupService(store, config=CFG, durability=gc)
        async with anyio.create_task_group() as tg:
            tg.start_soon(gc.run)
            tg.start_soon(svc.run)

            async def commit(i: int) -> None:
                errs = await svc.commit_offsets(
                    f"g{i}",
                    "",
                    -1,
                    None,
                    [CommitPartition(topic="t", partition=0, offset=i)],
                )
                assert errs == {("t", 0): E.NONE}

            async with anyio.create_task_group() as many:
                for i in range(200):
                    many.start_soon(commit, i)
            assert len(rounds) < 50
            assert store.durable_seq == store.written_seq
            tg.cancel_scope.cancel()
        store.close()

    anyio.run(main)


def test_commit_generation_checks_and_delete_group(tmp_path: Path) -> None:
    """Group commits need the current generation; DeleteGroups drops offsets of Empty groups."""

    async def main() -> None:
        svc = GroupService(OffsetStore(tmp_path), config=CFG)
        async with anyio.create_task_group() as tg:
            tg.start_soon(svc.run)
            m = await _member(svc)
            gen = (await svc.join(_join(m))).generation_id
            await svc.sync(
                SyncRequest(token=0, group_id="g", member_id=m, generation_id=gen)
            )
            part = [CommitPartition(topic="t", partition=0, offset=5)]
            assert await svc.commit_offsets("g", m, gen + 1, None, part) == {
                ("t", 0): E.ILLEGAL_GENERATION
            }
            assert await svc.commit_offsets("g", m, gen, None, part) == {
                ("t", 0): E.NONE
            }
            assert await svc.delete_groups(["g"]) == {"g": E.NON_EMPTY_GROUP}
            assert svc.leave("g", [LeavingMember(member_id=m)]) == [E.NONE]
            assert await svc.delete_groups(["g", "zz"]) == {
                "g": E.NONE,
                "zz": E.GROUP_ID_NOT_FOUND,
            }
            assert svc.fetch_offsets("g", None) == []
            tg.cancel_scope.cancel()
        svc.store.close()

    anyio.run(main)


def test_restart_lists_groups_with_offsets_and_admin_view(tmp_path: Path) -> None:
    """Groups known only from committed offsets are listed Empty after a restart."""

    async def main() -> None:
        store = OffsetStore(tmp_path)
        store.commit("old", [])
        from storage.offset_store import CommittedOffset

        store.commit("old", [CommittedOffset(topic="t", partition=0, offset=3)])
        store.close()
        svc = GroupService(OffsetStore(tmp_path), config=CFG)
        assert [(g.group_id, g.state.value) for g in svc.list_groups()] == [
            ("old", "Empty")
        ]
        view = svc.admin_group("old", lambda t, p: 10)
        assert view is not None
        assert view["offsets"] == [
            {
                "topic": "t",
                "partition": 0,
                "offset": 3,
                "metadata": "",
                "log_end_offset": 10,
                "lag": 7,
            }
        ]
        assert svc.admin_group("missing", lambda t, p: None) is None
        svc.on_topic_deleted("t")
        await svc.maintain()
        assert svc.list_groups() == []
        svc.store.close()

    anyio.run(main)


def test_decode_consumer_assignment() -> None:
    """The admin view decodes the consumer protocol's assignment bytes."""
    data = (
        b"\x00\x00"
        + b"\x00\x00\x00\x01"
        + b"\x00\x01t"
        + b"\x00\x00\x00\x02"
        + b"\x00\x00\x00\x00\x00\x00\x00\x03"
        + b"\x00\x00\x00\x00"
    )
    assert decode_consumer_assignment(data) == {"t": [0, 3]}
    assert decode_consumer_assignment(b"\x01") is None


def test_group_config_from_broker_settings() -> None:
    """Group settings of the broker config reach GroupConfig; unset ones keep defaults."""
    config = resolve(
        flags={},
        sets={
            "group.initial.rebalance.delay.ms": "3000",
            "offsets.retention.minutes": "2",
        },
    )
    cfg = GroupConfig.from_config(config)
    assert cfg.initial_rebalance_delay_ms == 3000
    assert cfg.offsets_retention_ms == 120_000
    assert GroupConfig.from_config(resolve(flags={}, sets={})) == GroupConfig()
