"""Transactional offsets in the single-node group service, as the coordinator drives it.

TxnOffsetCommit writes pending offsets (fsynced before the answer); OffsetFetch
does not show them (``require_stable``: UNSTABLE_OFFSET_COMMIT); the transaction
coordinator's ``complete_txn_offsets`` commits or drops them; they survive a
restart of the service on the same data dir; the group fencing of KIP-447 applies.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

from broker.groups.model import JoinRequest, Protocol
from broker.groups.offsets import CommitPartition
from broker.groups.service import GroupService
from broker.groups.settings import GroupConfig
from protocol.error_codes import ErrorCode as E
from storage.offset_store import OffsetStore

pytestmark = pytest.mark.anyio
CFG = GroupConfig(min_session_timeout_ms=10)
T0 = ("t", 0)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@asynccontextmanager
async def _service(data_dir: Path) -> AsyncIterator[GroupService]:
    svc = GroupService(OffsetStore(data_dir), config=CFG)
    async with anyio.create_task_group() as tg:
        tg.start_soon(svc.run)
        try:
            yield svc
        finally:
            tg.cancel_scope.cancel()
    svc.store.close(clean=False)


def _part(offset: int, metadata: str = "") -> list[CommitPartition]:
    return [CommitPartition(topic="t", partition=0, offset=offset, metadata=metadata)]


async def _txn(
    svc: GroupService, offset: int, *, pid: int = 7, epoch: int = 0, group: str = "g"
) -> E:
    errors = await svc.txn_commit_offsets(
        group, pid, epoch, "", -1, None, _part(offset)
    )
    return errors[T0]


def _fetch(svc: GroupService, *, stable: bool = False) -> tuple[int, E]:
    (row,) = svc.fetch_offsets("g", [T0], require_stable=stable)
    return row.offset, row.error


async def test_commit_makes_pending_offsets_visible(tmp_path: Path) -> None:
    """A transactional offset is invisible until its commit, and unstable meanwhile."""
    async with _service(tmp_path) as svc:
        assert await _txn(svc, 10) == E.NONE
        assert svc.store.durable_seq >= svc.store.written_seq  # fsynced first
        assert _fetch(svc) == (-1, E.NONE)
        assert _fetch(svc, stable=True) == (-1, E.UNSTABLE_OFFSET_COMMIT)
        await svc.complete_txn_offsets(7, 0, ["g"], commit=True)
        assert _fetch(svc, stable=True) == (10, E.NONE)
        assert "g" in {g.group_id for g in svc.list_groups()}


async def test_abort_drops_pending_and_keeps_last_committed(tmp_path: Path) -> None:
    """An aborted transaction's offsets go; the plain commit before it stays."""
    async with _service(tmp_path) as svc:
        await svc.commit_offsets("g", "", -1, None, _part(3))
        assert await _txn(svc, 10) == E.NONE
        assert _fetch(svc) == (3, E.NONE)
        await svc.complete_txn_offsets(7, 0, ["g"], commit=False)
        assert _fetch(svc, stable=True) == (3, E.NONE)


async def test_plain_commit_while_pending_wins(tmp_path: Path) -> None:
    """A plain commit written after the transactional one is kept at commit."""
    async with _service(tmp_path) as svc:
        await _txn(svc, 10)
        await svc.commit_offsets("g", "", -1, None, _part(20))
        await svc.complete_txn_offsets(7, 0, ["g"], commit=True)
        assert _fetch(svc) == (20, E.NONE)


async def test_pending_offsets_survive_restart(tmp_path: Path) -> None:
    """Pending offsets are durable: after a restart they are still unstable, and
    the coordinator's commit then makes them visible."""
    async with _service(tmp_path) as svc:
        await svc.commit_offsets("g", "", -1, None, _part(3))
        assert await _txn(svc, 10, pid=8, epoch=2) == E.NONE
    async with _service(tmp_path) as svc:
        assert _fetch(svc) == (3, E.NONE)
        assert _fetch(svc, stable=True) == (-1, E.UNSTABLE_OFFSET_COMMIT)
        assert await _txn(svc, 11, pid=8, epoch=1) == E.INVALID_PRODUCER_EPOCH
        await svc.complete_txn_offsets(8, 2, ["g"], commit=True)
    async with _service(tmp_path) as svc:
        assert _fetch(svc, stable=True) == (10, E.NONE)


async def test_validation_errors(tmp_path: Path) -> None:
    """Unknown member, bad generation and fenced instance are refused (KIP-447);
    metadata too large and unknown groups as OffsetCommit does."""
    async with _service(tmp_path) as svc:
        join = await svc.join(
            JoinRequest(
                token=0,
                group_id="g",
                member_id="",
                client_id="c",
                session_timeout_ms=10_000,
                rebalance_timeout_ms=5_000,
                protocol_type="consumer",
                protocols=(Protocol(name="range", metadata=b"m"),),
                group_instance_id="i1",
            )
        )
        member = join.member_id
        assert join.error == E.NONE, join
        gen = join.generation_id

        async def commit(member_id: str, generation: int, instance: str | None) -> E:
            errors = await svc.txn_commit_offsets(
                "g", 7, 0, member_id, generation, instance, _part(1)
            )
            return errors[T0]

        assert await commit("nobody", gen, None) == E.UNKNOWN_MEMBER_ID
        assert await commit(member, gen + 1, None) == E.ILLEGAL_GENERATION
        assert await commit("other", gen, "i1") == E.FENCED_INSTANCE_ID
        assert await commit(member, gen, "i1") == E.NONE
        assert await commit("", -1, None) == E.NONE  # v0-2: no member given
        too_big = await svc.txn_commit_offsets(
            "g", 7, 0, "", -1, None, _part(1, "x" * 5000)
        )
        assert too_big[T0] == E.OFFSET_METADATA_TOO_LARGE
        empty = await svc.txn_commit_offsets("", 7, 0, "", -1, None, _part(1))
        assert empty[T0] == E.INVALID_GROUP_ID
        nobody = await svc.txn_commit_offsets("g", -1, -1, "", -1, None, _part(1))
        assert nobody[T0] == E.INVALID_REQUEST
