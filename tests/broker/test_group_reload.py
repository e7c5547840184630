"""A group's membership stored by the group service and reloaded on open."""

from __future__ import annotations

from pathlib import Path

import anyio

from broker.groups.model import (
    GroupState,
    JoinRequest,
    LeavingMember,
    Protocol,
    SyncRequest,
)
from broker.groups.service import GroupService
from broker.groups.settings import GroupConfig
from protocol.error_codes import ErrorCode as E
from storage.offset_store import OffsetStore

CFG = GroupConfig(min_session_timeout_ms=10)


def _join(member_id: str, session_ms: int) -> JoinRequest:
    return JoinRequest(
        token=0,
        group_id="g",
        member_id=member_id,
        client_id="c",
        client_host="/127.0.0.1",
        session_timeout_ms=session_ms,
        rebalance_timeout_ms=5_000,
        protocol_type="consumer",
        protocols=(Protocol(name="range", metadata=b"sub"),),
    )


async def _form_group(svc: GroupService, sessions: list[int]) -> dict[str, bytes]:
    """Members with these session timeouts join and sync one generation; returns
    their assignments by member id."""
    ids = []
    for ms in sessions:  # KIP-394: a member id first, then the join with it
        first = await svc.join(_join("", ms))
        assert first.error == E.MEMBER_ID_REQUIRED
        ids.append((first.member_id, ms))
    joined = {}

    async def join(member_id: str, session_ms: int) -> None:
        result = await svc.join(_join(member_id, session_ms))
        assert result.error == E.NONE
        joined[result.member_id] = result

    async with anyio.create_task_group() as tg:
        for member_id, ms in ids:
            tg.start_soon(join, member_id, ms)
    leader = next(iter(joined.values())).leader_id
    given = {m: m.encode() for m in joined}

    async def sync(member_id: str) -> None:
        result = await svc.sync(
            SyncRequest(
                token=0,
                group_id="g",
                member_id=member_id,
                generation_id=joined[member_id].generation_id,
                assignments=tuple(given.items()) if member_id == leader else (),
            )
        )
        assert result.error == E.NONE
        assert result.assignment == given[member_id]

    async with anyio.create_task_group() as tg:
        for member_id in joined:
            tg.start_soon(sync, member_id)
    return given


def _restart(tmp_path: Path, now: list[int]) -> GroupService:
    """A new service over the store as a crash left it (nothing compacted)."""
    return GroupService(OffsetStore(tmp_path), config=CFG, clock=lambda: now[0])


def test_members_carry_on_after_reopen_and_a_silent_one_expires(
    tmp_path: Path,
) -> None:
    """After a reopen the group is Stable in the same generation with the same
    members and assignments (durable when SyncGroup answered); a member that
    heartbeats in time carries on, one that does not is expired and the group
    rebalances."""

    async def main() -> None:
        svc = GroupService(OffsetStore(tmp_path), config=CFG)
        async with anyio.create_task_group() as tg:
            tg.start_soon(svc.run)
            given = await _form_group(svc, [1_000, 60_000])
            before = svc.describe("g")
            tg.cancel_scope.cancel()
        assert svc.store.durable_seq == svc.store.written_seq
        # no close: the process was killed
        now = [5_000_000]
        again = _restart(tmp_path, now)
        after = again.describe("g")
        assert after.state is GroupState.STABLE
        assert after.generation_id == before.generation_id == 1
        assert after.leader_id == before.leader_id
        assert {m.member_id: m.assignment for m in after.members} == given
        sessions = {
            m.member_id: m for m in again.coordinator.groups["g"].members.values()
        }
        short = next(m for m, x in sessions.items() if x.session_timeout_ms == 1_000)
        long = next(m for m in sessions if m != short)
        now[0] += 500
        assert again.heartbeat("g", short, 1, None) == E.NONE
        assert again.heartbeat("g", long, 1, None) == E.NONE
        now[0] += 900  # short's session runs from its heartbeat
        assert again.heartbeat("g", short, 1, None) == E.NONE
        now[0] += 1_500  # short is silent past its session
        again._apply(again.coordinator.tick(now[0]))
        assert short not in again.coordinator.groups["g"].members
        assert again.heartbeat("g", long, 1, None) == E.REBALANCE_IN_PROGRESS

    anyio.run(main)


def test_emptied_group_reloads_empty_in_its_generation(tmp_path: Path) -> None:
    """A group whose members all left reloads Empty with its later generation."""

    async def main() -> None:
        svc = GroupService(OffsetStore(tmp_path), config=CFG)
        async with anyio.create_task_group() as tg:
            tg.start_soon(svc.run)
            given = await _form_group(svc, [10_000])
            (member,) = given
            assert svc.leave("g", [LeavingMember(member_id=member)]) == [E.NONE]
            tg.cancel_scope.cancel()
        again = _restart(tmp_path, [0])
        described = again.describe("g")
        assert described.state is GroupState.EMPTY
        assert described.generation_id == 2
        assert described.members == ()
        assert again.heartbeat("g", member, 1, None) == E.UNKNOWN_MEMBER_ID

    anyio.run(main)


def test_deleted_group_does_not_come_back(tmp_path: Path) -> None:
    """DeleteGroups forgets the stored membership: a reopen knows no such group."""

    async def main() -> None:
        svc = GroupService(OffsetStore(tmp_path), config=CFG)
        async with anyio.create_task_group() as tg:
            tg.start_soon(svc.run)
            (member,) = await _form_group(svc, [10_000])
            svc.leave("g", [LeavingMember(member_id=member)])
            assert await svc.delete_groups(["g"]) == {"g": E.NONE}
            tg.cancel_scope.cancel()
        again = _restart(tmp_path, [0])
        assert again.describe("g").state is GroupState.DEAD
        assert again.store.stored_groups() == []

    anyio.run(main)
