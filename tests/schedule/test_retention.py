"""Retention planning over random snapshot schedules (storage.snapshot_retention)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from storage.snapshot_retention import (
    RetentionPolicy,
    SnapshotInfo,
    collect_snapshots,
    order_key,
    plan_retention,
    remove_snapshot,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Schedule:
    """Snapshots a scheduler would have made, and the policy applied to them."""

    snapshots: list[SnapshotInfo]
    policy: RetentionPolicy


@st.composite
def schedules(draw: st.DrawFn) -> Schedule:
    """Partitions with rounds of full/incremental snapshots (some pinned, some with
    ancestors already gone), and a keep_last / max_age policy."""
    snaps: list[SnapshotInfo] = []
    next_id = 1_700_000_000_000_000_000
    for p in range(draw(st.integers(1, 3))):
        previous: str | None = None
        t = 1_000.0
        for _ in range(draw(st.integers(0, 14))):
            t += draw(st.floats(0.5, 100.0))
            next_id += draw(st.integers(1, 10**9))
            sid = str(next_id)
            kind = draw(st.sampled_from(["full", "incr", "incr", "dangling"]))
            if kind == "full" or previous is None:
                ancestor = None
            elif kind == "dangling":
                ancestor = "gone-" + sid  # its ancestor was deleted long ago
            else:
                ancestor = draw(
                    st.sampled_from([previous, *(s.snapshot_id for s in snaps[-3:])])
                )
            snaps.append(
                SnapshotInfo(
                    snapshot_id=sid,
                    partition=("topic", p),
                    ancestor_id=ancestor,
                    created_at=t,
                    pinned=draw(st.booleans()) and draw(st.booleans()),
                )
            )
            previous = sid
    policy = RetentionPolicy(
        keep_last=draw(st.none() | st.integers(0, 6)),
        max_age=draw(st.none() | st.floats(0, 800)),
        now=draw(st.floats(1_000, 3_000)),
    )
    return Schedule(snapshots=draw(st.permutations(snaps)), policy=policy)


def _wanted(s: SnapshotInfo, sched: Schedule) -> bool:
    """Whether the policy keeps ``s`` for its own sake."""
    pol = sched.policy
    if pol.keep_last is None and pol.max_age is None:
        return True
    if s.pinned:
        return True
    managed = sorted(
        (o for o in sched.snapshots if o.partition == s.partition and not o.pinned),
        key=order_key,
    )
    newest = managed[len(managed) - pol.keep_last :] if pol.keep_last else []
    young = pol.max_age is not None and s.created_at > pol.now - pol.max_age
    return s in newest or young


@settings(max_examples=400, deadline=None)
@given(schedules())
def test_retention_never_deletes_an_ancestor_of_a_retained_snapshot(
    sched: Schedule,
) -> None:
    """Every ancestor of every kept snapshot (in its partition) is kept too."""
    plan = plan_retention(sched.snapshots, sched.policy)
    kept = {(s.partition, s.snapshot_id) for s in plan.keep}
    for s in plan.keep:
        if s.ancestor_id is None:
            continue
        exists = any(
            o.partition == s.partition and o.snapshot_id == s.ancestor_id
            for o in sched.snapshots
        )
        if exists:
            assert (s.partition, s.ancestor_id) in kept


@settings(max_examples=400, deadline=None)
@given(schedules())
def test_retention_honours_keep_last_and_max_age_and_deletes_the_rest(
    sched: Schedule,
) -> None:
    """Wanted snapshots are kept; a deleted one is neither wanted nor needed by a
    kept one; keep and delete partition the input."""
    plan = plan_retention(sched.snapshots, sched.policy)
    assert sorted(plan.keep + plan.delete, key=order_key) == sorted(
        sched.snapshots, key=order_key
    )
    assert not set(plan.keep) & set(plan.delete)
    for s in sched.snapshots:
        if _wanted(s, sched):
            assert s in plan.keep
    for s in plan.delete:
        assert not s.pinned
        assert not any(
            k.partition == s.partition and k.ancestor_id == s.snapshot_id
            for k in plan.keep
        )
    for s in plan.kept_as_ancestor:
        assert s in plan.keep
        assert not _wanted(s, sched)


def test_retention_keeps_a_full_snapshot_while_its_incrementals_are_retained() -> None:
    """keep_last=1 on a chain full <- i1 <- i2 keeps the whole chain; a newer full
    snapshot lets the old chain go."""
    chain = [
        SnapshotInfo(
            snapshot_id=str(i), partition="p", ancestor_id=anc, created_at=float(i)
        )
        for i, anc in ((1, None), (2, "1"), (3, "2"))
    ]
    plan = plan_retention(chain, RetentionPolicy(keep_last=1, now=10.0))
    assert [s.snapshot_id for s in plan.keep] == ["1", "2", "3"]
    assert [s.snapshot_id for s in plan.kept_as_ancestor] == ["1", "2"]
    newer = SnapshotInfo(snapshot_id="4", partition="p", ancestor_id=None, created_at=4)
    plan = plan_retention([*chain, newer], RetentionPolicy(keep_last=1, now=10.0))
    assert [s.snapshot_id for s in plan.keep] == ["4"]
    assert [s.snapshot_id for s in plan.delete] == ["1", "2", "3"]


def test_max_age_keeps_young_snapshots_and_ancestors_stay_per_partition() -> None:
    """Snapshots younger than max_age stay; an id reused in another partition is not
    treated as an ancestor."""
    snaps = [
        SnapshotInfo(snapshot_id="1", partition="a", ancestor_id=None, created_at=0),
        SnapshotInfo(snapshot_id="1", partition="b", ancestor_id=None, created_at=0),
        SnapshotInfo(snapshot_id="2", partition="b", ancestor_id="1", created_at=95),
    ]
    plan = plan_retention(snaps, RetentionPolicy(max_age=10, now=100.0))
    assert {(s.partition, s.snapshot_id) for s in plan.keep} == {("b", "1"), ("b", "2")}
    assert [(s.partition, s.snapshot_id) for s in plan.delete] == [("a", "1")]


def _write_snapshot(root: Path, topic: str, sid: str, ancestor: str | None) -> None:
    d = root / topic / sid
    d.mkdir(parents=True)
    (d / "00000000000000000000.log").write_bytes(b"")
    anc = ancestor or "0" * 36
    (d / "meta.json").write_text(
        '{"version": 1, "last_offset": 0, "last_term": 0, "compression": "none",'
        f' "size": 0, "ancestor_snapshot_id": "{anc}", "snapshot_id": "{sid}",'
        ' "partition": 1}'
    )


def test_collect_and_remove_snapshots_on_disk(tmp_path: Path) -> None:
    """collect_snapshots reads ids, partitions and ancestors from meta.json (skipping
    dot-directories); remove_snapshot makes a directory vanish whole."""
    root = tmp_path / "snapshots"
    _write_snapshot(root, "t", "1700000000000000001", None)
    _write_snapshot(root, "t", "1700000000000000002", "1700000000000000001")
    _write_snapshot(root, "t", ".1700000000000000003.tmp", None)
    found = collect_snapshots(str(root), str(tmp_path.resolve()))
    assert [(s.path, s.partition, s.ancestor_id) for s in found] == [
        ("t/1700000000000000001", ("t", 1), None),
        ("t/1700000000000000002", ("t", 1), "1700000000000000001"),
    ]
    assert found[0].created_at == 1700000000.0
    remove_snapshot(str(root), "t/1700000000000000001")
    remove_snapshot(str(root), "t/1700000000000000001")  # already gone: no error
    assert sorted(p.name for p in (root / "t").iterdir()) == [
        ".1700000000000000003.tmp",
        "1700000000000000002",
    ]
