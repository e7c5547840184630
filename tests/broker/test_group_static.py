"""Static members (KIP-345) restarting under a new member id, leader included.

A static member that rejoins a Stable group with an empty member id replaces its
old id without a rebalance while the group's protocol stays: the generation and
every other member are untouched, the old id is fenced, and the member's SyncGroup
gets its stored assignment. A rejoining leader is answered as Kafka does: with
JoinGroup v9+ it is told it leads and to skip the assignment (KIP-814); an older
client is given its old id as the leader's, so it syncs as a follower.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from broker.groups.model import GroupState, Protocol
from protocol.error_codes import ErrorCode as E
from tests.broker.groups_harness import Harness


def _stable_static(h: Harness, n: int) -> tuple[list[str], int]:
    """n static members (instances i0..) in one Stable generation; member ids by
    instance, and the generation. Each assignment is b"<instance>"."""
    tokens = [h.join(instance=f"i{k}", client=f"c{k}") for k in range(n)]
    h.advance(1_000)  # the initial rebalance delay gathers them all
    results = [h.join_result(t) for t in tokens]
    assert all(r is not None and r.error == E.NONE for r in results)
    ids = [r.member_id for r in results if r is not None]
    gen = results[0].generation_id if results[0] else -1
    leader = h.coord.groups["g"].leader_id
    assert leader in ids
    h.sync(leader, gen, assignments={m: f"i{k}".encode() for k, m in enumerate(ids)})
    for k, m in enumerate(ids):
        if m != leader:
            h.sync(m, gen, instance=f"i{k}")
    assert h.coord.groups["g"].state is GroupState.STABLE
    return ids, gen


def _harness() -> Harness:
    return Harness(initial_rebalance_delay_ms=500)


def test_static_leader_restart_without_skip_support_syncs_as_follower() -> None:
    """A leader on JoinGroup < v9 rejoining with a new id is told its old id leads,
    with no members: no rebalance, and its sync gets its stored assignment."""
    h = _harness()
    ids, gen = _stable_static(h, 2)
    leader = h.coord.groups["g"].leader_id
    k = ids.index(leader or "")
    before = len(h.reply_log)
    r = h.join_result(h.join(instance=f"i{k}", client="again"))
    assert r is not None
    assert r.error == E.NONE
    assert r.member_id not in ids
    assert (r.generation_id, r.leader_id, r.members) == (gen, leader, ())
    assert not r.skip_assignment
    assert len(h.reply_log) == before + 1  # nobody else was told anything
    group = h.coord.groups["g"]
    assert group.state is GroupState.STABLE
    assert group.leader_id == r.member_id
    other = ids[1 - k]
    assert h.heartbeat(other, gen, instance=f"i{1 - k}") == E.NONE
    assert h.heartbeat(leader or "", gen, instance=f"i{k}") == E.FENCED_INSTANCE_ID
    s = h.sync_result(h.sync(r.member_id, gen, instance=f"i{k}"))
    assert s is not None
    assert (s.error, s.assignment) == (E.NONE, f"i{k}".encode())


def test_static_leader_restart_with_skip_support_leads_and_skips_assignment() -> None:
    """A leader on JoinGroup v9+ is told it leads, gets the members and
    skip_assignment; its SyncGroup changes nobody's assignment."""
    h = _harness()
    ids, gen = _stable_static(h, 3)
    leader = h.coord.groups["g"].leader_id
    k = ids.index(leader or "")
    r = h.join_result(h.join(instance=f"i{k}", client="again", skip=True))
    assert r is not None
    assert r.error == E.NONE
    assert r.skip_assignment
    assert (r.generation_id, r.leader_id) == (gen, r.member_id)
    current = {m if m != leader else r.member_id for m in ids}
    assert {m.member_id for m in r.members} == current
    s = h.sync_result(h.sync(r.member_id, gen, assignments={}, instance=f"i{k}"))
    assert s is not None
    assert (s.error, s.assignment) == (E.NONE, f"i{k}".encode())
    for j, m in enumerate(ids):
        if m != leader:
            again = h.sync_result(h.sync(m, gen, instance=f"i{j}"))
            assert again is not None
            assert again.assignment == f"i{j}".encode()
    assert h.coord.groups["g"].state is GroupState.STABLE


def test_static_restart_with_new_metadata_but_same_protocol_keeps_generation() -> None:
    """New subscription metadata (a restarted client owns nothing yet) does not
    rebalance while the selected protocol stays (Kafka compares the protocol)."""
    h = _harness()
    _, gen = _stable_static(h, 2)
    r = h.join_result(
        h.join(instance="i1", protocols=(Protocol(name="range", metadata=b"new"),))
    )
    assert r is not None
    assert (r.error, r.generation_id) == (E.NONE, gen)
    assert h.coord.groups["g"].state is GroupState.STABLE


def test_static_restart_that_changes_the_protocol_rebalances() -> None:
    """A rejoin whose protocols change the group's selected protocol rebalances."""
    h = _harness()
    both = (Protocol(name="range", metadata=b""), Protocol(name="rr", metadata=b""))
    tokens = [h.join(instance=f"i{k}", protocols=both) for k in range(2)]
    h.advance(1_000)
    first = h.join_result(tokens[0])
    assert first is not None
    gen = first.generation_id
    leader = h.coord.groups["g"].leader_id or ""
    h.sync(leader, gen, assignments={})
    assert h.coord.groups["g"].protocol_name == "range"
    rr_first = (Protocol(name="rr", metadata=b""), Protocol(name="range", metadata=b""))
    h.join(instance="i0", protocols=rr_first)
    h.join(instance="i1", protocols=rr_first)
    assert h.coord.groups["g"].state is not GroupState.STABLE


@settings(max_examples=80, deadline=None)
@given(
    n=st.integers(1, 4),
    restarts=st.lists(
        st.tuples(st.integers(0, 3), st.booleans(), st.binary(max_size=4)),
        min_size=1,
        max_size=8,
    ),
)
def test_static_restarts_of_any_member_never_rebalance(
    n: int, restarts: list[tuple[int, bool, bytes]]
) -> None:
    """Any sequence of static restarts (leader or not, any JoinGroup version, new
    metadata) keeps the group Stable at its generation, answers only the restarted
    member, fences its old id and hands it its own assignment."""
    h = _harness()
    ids, gen = _stable_static(h, n)
    for index, skip, metadata in restarts:
        k = index % n
        group = h.coord.groups["g"]
        old, leader = ids[k], group.leader_id
        before = len(h.reply_log)
        r = h.join_result(
            h.join(
                instance=f"i{k}",
                skip=skip,
                protocols=(Protocol(name="range", metadata=metadata),),
            )
        )
        assert r is not None
        assert len(h.reply_log) == before + 1
        assert (r.error, r.generation_id) == (E.NONE, gen)
        ids[k] = r.member_id
        if old != leader:
            assert (r.leader_id, r.members, r.skip_assignment) == (leader, (), False)
        elif skip:
            assert r.leader_id == r.member_id
            assert r.skip_assignment
            assert {m.member_id for m in r.members} == set(ids)
        else:
            assert (r.leader_id, r.members, r.skip_assignment) == (old, (), False)
        assert group.state is GroupState.STABLE
        assert h.heartbeat(old, gen, instance=f"i{k}") == E.FENCED_INSTANCE_ID
        s = h.sync_result(h.sync(r.member_id, gen, instance=f"i{k}"))
        assert s is not None
        assert (s.error, s.assignment) == (E.NONE, f"i{k}".encode())
        for j, m in enumerate(ids):
            assert h.heartbeat(m, gen, instance=f"i{j}") == E.NONE
    assert h.coord.groups["g"].generation == gen
