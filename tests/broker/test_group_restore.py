"""Committed offsets restored from a snapshot, through GroupService's typed API."""

from __future__ import annotations

from pathlib import Path

import anyio

from broker.groups.service import GroupService
from broker.snapshots.apply import restore_group_offsets
from storage.offset_store import CommittedOffset, OffsetStore
from storage.snapshot_groups import GroupOffset


def _offset(group: str, offset: int, commit_ms: int) -> GroupOffset:
    return GroupOffset(
        group=group, offset=offset, leader_epoch=-1, metadata="m", commit_ms=commit_ms
    )


def test_restore_commits_only_where_no_newer_commit_and_makes_the_group_known(
    tmp_path: Path,
) -> None:
    """A group without commits gets the snapshot's offset and becomes a listed group;
    a group whose own commit is newer keeps it; the restore is durable."""

    async def main() -> None:
        svc = GroupService(OffsetStore(tmp_path))
        newer = CommittedOffset(
            topic="t",
            partition=0,
            offset=40,
            leader_epoch=-1,
            metadata="",
            commit_ms=2_000,
        )
        svc.offsets.commit("kept", [newer])
        restored = await restore_group_offsets(
            svc, "t", 0, [_offset("fresh", 7, 1_000), _offset("kept", 3, 1_000)]
        )
        assert restored == 1
        assert svc.offsets.fetch("fresh", [("t", 0)])[("t", 0)].offset == 7
        assert svc.offsets.fetch("kept", [("t", 0)])[("t", 0)].offset == 40
        assert "fresh" in {g.group_id for g in svc.list_groups()}
        svc.store.close()
        reopened = OffsetStore(tmp_path)
        assert reopened.fetch("fresh", [("t", 0)])[("t", 0)].offset == 7
        reopened.close()

    anyio.run(main)


def test_ensure_group_creates_an_empty_group_once(tmp_path: Path) -> None:
    """ensure_group makes a new group known (Empty) and leaves an existing one alone."""
    svc = GroupService(OffsetStore(tmp_path))
    svc.ensure_group("g", now_ms=0)
    assert svc.describe("g").state.value == "Empty"
    group = svc.coordinator.groups["g"]
    svc.ensure_group("g", now_ms=1)
    assert svc.coordinator.groups["g"] is group
    svc.store.close()
