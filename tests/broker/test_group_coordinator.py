"""The pure group coordinator, driven with a fake clock (no event loop)."""

from __future__ import annotations

from broker.groups.model import GroupState, LeavingMember, Protocol
from protocol.error_codes import ErrorCode as E
from tests.broker.groups_harness import RANGE, Harness


def _stable_pair(h: Harness) -> tuple[str, str, int]:
    """Two members in a Stable generation; returns (leader, follower, generation)."""
    a = h.full_join()
    ta = h.last_token
    ra = h.join_result(ta)
    assert ra is not None
    assert ra.error == E.NONE
    assert ra.generation_id == 1
    assert ra.leader_id == a
    h.apply([])
    sa = h.sync(a, 1, assignments={a: b"A"})
    assert h.sync_result(sa) is not None
    b = h.full_join()
    tb = h.last_token
    assert h.join_result(tb) is None  # waits for the leader to rejoin
    assert h.heartbeat(a, 1) == E.REBALANCE_IN_PROGRESS
    ta2 = h.join("g", a)
    ra2, rb = h.join_result(ta2), h.join_result(tb)
    assert ra2 is not None
    assert rb is not None
    assert ra2.generation_id == rb.generation_id == 2
    assert ra2.leader_id == a
    assert {m.member_id for m in ra2.members} == {a, b}
    assert rb.members == ()
    sb = h.sync(b, 2)
    assert h.sync_result(sb) is None  # follower waits for the leader
    sa2 = h.sync(a, 2, assignments={a: b"A2", b: b"B2"})
    assert h.sync_result(sa2) == h.sync_result(sa2)
    ra_sync, rb_sync = h.sync_result(sa2), h.sync_result(sb)
    assert ra_sync is not None
    assert rb_sync is not None
    assert ra_sync.assignment == b"A2"
    assert rb_sync.assignment == b"B2"
    assert rb_sync.protocol_name == "range"
    assert h.coord.groups["g"].state is GroupState.STABLE
    return a, b, 2


def test_v4_join_requires_member_id_then_completes_alone() -> None:
    """A v4+ join first gets MEMBER_ID_REQUIRED; the rejoin completes generation 1."""
    h = Harness()
    first = h.join_result(h.join())
    assert first is not None
    assert first.error == E.MEMBER_ID_REQUIRED
    assert first.member_id == "c-1"
    token = h.join("g", "c-1")
    result = h.join_result(token)
    assert result is not None
    assert result.error == E.NONE
    assert result.generation_id == 1
    assert result.protocol_name == "range"
    assert result.members[0].metadata == b"sub"


def test_old_join_version_gets_member_id_at_once() -> None:
    """A v0-v3 join is admitted with a generated member id right away."""
    h = Harness()
    result = h.join_result(h.join(v4=False))
    assert result is not None
    assert result.error == E.NONE
    assert result.member_id == "c-1"


def test_two_members_rebalance_and_assignments_are_relayed() -> None:
    """The leader's assignment reaches each follower; the group becomes Stable."""
    _stable_pair(Harness())


def test_heartbeat_errors() -> None:
    """Heartbeats report unknown members, stale generations and fenced instances."""
    h = Harness()
    a, _, gen = _stable_pair(h)
    assert h.heartbeat(a, gen) == E.NONE
    assert h.heartbeat(a, gen - 1) == E.ILLEGAL_GENERATION
    assert h.heartbeat("nobody", gen) == E.UNKNOWN_MEMBER_ID
    assert h.heartbeat(a, gen, group="other") == E.UNKNOWN_MEMBER_ID


def test_sync_with_wrong_generation_or_member() -> None:
    """SyncGroup checks the member and the generation."""
    h = Harness()
    a, _, gen = _stable_pair(h)
    bad = h.sync_result(h.sync(a, gen + 1))
    assert bad is not None
    assert bad.error == E.ILLEGAL_GENERATION
    unknown = h.sync_result(h.sync("x", gen))
    assert unknown is not None
    assert unknown.error == E.UNKNOWN_MEMBER_ID
    again = h.sync_result(h.sync(a, gen))
    assert again is not None
    assert again.assignment == b"A2"


def test_session_timeout_expires_member_and_rebalances() -> None:
    """A member that stops heartbeating is removed after its session timeout."""
    h = Harness()
    a, b, gen = _stable_pair(h)
    for _ in range(3):
        h.advance(3_000)
        assert h.heartbeat(a, gen) == E.NONE
    h.advance(2_000)
    # b never heartbeated: expired after 10 s; a learns of the rebalance.
    assert b not in h.coord.groups["g"].members
    assert h.heartbeat(a, gen) == E.REBALANCE_IN_PROGRESS
    t = h.join("g", a)
    result = h.join_result(t)
    assert result is not None
    assert result.generation_id == gen + 1
    assert [m.member_id for m in result.members] == [a]


def test_rebalance_timeout_drops_members_that_do_not_rejoin() -> None:
    """Members that do not rejoin within the rebalance timeout are left out."""
    h = Harness()
    a, b, gen = _stable_pair(h)
    c = h.full_join()
    tc = h.last_token
    ta = h.join("g", a)
    # b keeps heartbeating but never rejoins.
    for _ in range(11):
        h.advance(3_000)
        h.heartbeat(b, gen)
    rc, ra = h.join_result(tc), h.join_result(ta)
    assert rc is not None
    assert ra is not None
    assert ra.generation_id == rc.generation_id == gen + 1
    assert {m.member_id for m in ra.members} == {a, c}
    assert h.heartbeat(b, gen) == E.UNKNOWN_MEMBER_ID


def test_leave_group_batched_and_by_instance_id() -> None:
    """LeaveGroup removes named members, reporting unknown ones per member."""
    h = Harness()
    a, b, gen = _stable_pair(h)
    errors = h.leave(LeavingMember(member_id=b), LeavingMember(member_id="ghost"))
    assert errors == [E.NONE, E.UNKNOWN_MEMBER_ID]
    assert h.coord.groups["g"].state is GroupState.PREPARING_REBALANCE
    ra = h.join_result(h.join("g", a))
    assert ra is not None
    assert ra.generation_id == gen + 1
    assert h.leave(LeavingMember(member_id=a)) == [E.NONE]
    # the last member left: the rebalance completes at once to Empty
    assert h.coord.groups["g"].state is GroupState.EMPTY
    assert [g.state for g in h.coord.list_groups()] == [GroupState.EMPTY]


def test_last_member_leaving_makes_group_empty() -> None:
    """When the only member of a Stable group leaves, the group becomes Empty."""
    h = Harness()
    m = h.full_join()
    h.sync(m, 1, assignments={m: b"x"})
    assert h.leave(LeavingMember(member_id=m)) == [E.NONE]
    assert h.coord.groups["g"].state is GroupState.EMPTY
    assert h.coord.delete_group("g") == E.NONE
    assert "g" not in h.coord.groups


def test_delete_group_errors() -> None:
    """DeleteGroups refuses groups with members and unknown groups."""
    h = Harness()
    m = h.full_join()
    h.sync(m, 1, assignments={m: b"x"})
    assert h.coord.delete_group("g") == E.NON_EMPTY_GROUP
    assert h.coord.delete_group("missing") == E.GROUP_ID_NOT_FOUND


def test_static_member_rejoin_fences_old_id_without_rebalance() -> None:
    """A static member rejoining under a new id keeps its assignment; the old id is fenced."""
    h = Harness()
    leader = h.full_join()
    h.sync(leader, 1, assignments={leader: b"L"})
    t = h.join(instance="i-1", client="s")
    assert h.join_result(t) is None
    h.join("g", leader)
    first = h.join_result(t)
    assert first is not None
    static_id = first.member_id
    gen = first.generation_id
    h.sync(leader, gen, assignments={leader: b"L", static_id: b"S"})
    h.sync(static_id, gen, instance="i-1")
    # the static member restarts: new join with an empty member id
    t2 = h.join(instance="i-1", client="s")
    again = h.join_result(t2)
    assert again is not None
    assert again.error == E.NONE
    assert again.member_id != static_id
    assert again.generation_id == gen
    assert h.coord.groups["g"].state is GroupState.STABLE
    assert h.heartbeat(static_id, gen, instance="i-1") == E.FENCED_INSTANCE_ID
    s = h.sync_result(h.sync(again.member_id, gen, instance="i-1"))
    assert s is not None
    assert s.assignment == b"S"
    errors = h.leave(LeavingMember(member_id=static_id, group_instance_id="i-1"))
    assert errors == [E.FENCED_INSTANCE_ID]
    errors = h.leave(LeavingMember(member_id="", group_instance_id="i-1"))
    assert errors == [E.NONE]


def test_protocol_selection_by_vote() -> None:
    """The protocol most members prefer among those all support wins."""
    h = Harness()
    rr, rg, st = (
        Protocol(name=n, metadata=n.encode()) for n in ("roundrobin", "range", "sticky")
    )
    h.join(v4=False, protocols=(rr, rg, st), client="a")
    h.join(v4=False, protocols=(rg, rr), client="b")
    # a completed alone (gen 1), b triggers gen 2 once a rejoins
    ta = h.join("g", "a-1", protocols=(rg, rr, st))
    result = h.join_result(ta)
    assert result is not None
    assert result.protocol_name == "range"
    assert {m.metadata for m in result.members} == {b"range"}


def test_inconsistent_protocol_is_refused() -> None:
    """A member sharing no protocol (or type) with the group is refused."""
    h = Harness()
    h.full_join()
    other = h.join_result(h.join(protocols=(Protocol(name="x", metadata=b""),)))
    assert other is not None
    assert other.error == E.INCONSISTENT_GROUP_PROTOCOL
    kind = h.join_result(h.join(protocol_type="connect"))
    assert kind is not None
    assert kind.error == E.INCONSISTENT_GROUP_PROTOCOL


def test_invalid_session_timeout_and_group_id() -> None:
    """Out-of-range session timeouts and empty group ids are rejected."""
    h = Harness()
    bad = h.join_result(h.join(session_ms=10))
    assert bad is not None
    assert bad.error == E.INVALID_SESSION_TIMEOUT
    empty = h.join_result(h.join(group=""))
    assert empty is not None
    assert empty.error == E.INVALID_GROUP_ID


def test_unknown_member_id_on_join_to_unknown_group() -> None:
    """Joining with a member id the coordinator never issued is UNKNOWN_MEMBER_ID."""
    h = Harness()
    result = h.join_result(h.join("g", "stale-id"))
    assert result is not None
    assert result.error == E.UNKNOWN_MEMBER_ID


def test_twenty_members_join_at_once_converge_to_one_generation() -> None:
    """Concurrent v4 joiners all land in generation 1, with no errors."""
    h = Harness()
    firsts = [h.join_result(h.join(client=f"m{i}")) for i in range(20)]
    tokens = []
    for r in firsts:
        assert r is not None
        assert r.error == E.MEMBER_ID_REQUIRED
        tokens.append(h.join("g", r.member_id, client="x"))
    results = [h.join_result(t) for t in tokens]
    assert all(r is not None and r.error == E.NONE for r in results)
    assert {r.generation_id for r in results if r} == {1}
    leaders = [r for r in results if r and r.members]
    assert len(leaders) == 1
    assert len(leaders[0].members) == 20


def test_initial_rebalance_delay_waits_for_more_members() -> None:
    """With an initial delay, members joining within it share the first generation."""
    h = Harness(initial_rebalance_delay_ms=3_000)
    t1 = h.join(v4=False, client="a")
    h.advance(2_000)
    t2 = h.join(v4=False, client="b")
    h.advance(2_000)
    assert h.join_result(t1) is None
    h.advance(1_000)
    r1, r2 = h.join_result(t1), h.join_result(t2)
    assert r1 is not None
    assert r2 is not None
    assert r1.generation_id == r2.generation_id == 1


def test_leader_that_never_syncs_triggers_new_rebalance() -> None:
    """If the leader never sends SyncGroup, the group rebalances without it."""
    h = Harness()
    a, b, gen = _stable_pair(h)
    tb = h.join("g", b, protocols=(Protocol(name="range", metadata=b"new"),))
    ta = h.join("g", a)
    assert h.join_result(tb) is not None
    assert h.join_result(ta) is not None
    sb = h.sync(b, gen + 1)
    h.advance(30_001)
    rb = h.sync_result(sb)
    assert rb is not None
    assert rb.error == E.REBALANCE_IN_PROGRESS
    assert a not in h.coord.groups["g"].members


def test_offset_commit_validation() -> None:
    """Commits check generation and membership; simple commits need an empty group."""
    h = Harness()
    assert h.coord.validate_commit("solo", "", -1, None, 0) == E.NONE
    assert h.coord.groups["solo"].state is GroupState.EMPTY
    assert h.coord.validate_commit("nope", "m", 3, None, 0) == E.ILLEGAL_GENERATION
    a, _, gen = _stable_pair(h)
    assert h.coord.validate_commit("g", a, gen, None, h.now) == E.NONE
    assert h.coord.validate_commit("g", a, gen - 1, None, h.now) == E.ILLEGAL_GENERATION
    assert h.coord.validate_commit("g", "x", gen, None, h.now) == E.UNKNOWN_MEMBER_ID
    assert h.coord.validate_commit("g", "", -1, None, h.now) == E.UNKNOWN_MEMBER_ID


def test_describe_and_list() -> None:
    """DescribeGroups shows members with assignments once Stable; ListGroups filters by state."""
    h = Harness()
    a, b, _ = _stable_pair(h)
    d = h.coord.describe("g")
    assert d.state is GroupState.STABLE
    assert d.protocol_name == "range"
    assert {(m.member_id, m.assignment) for m in d.members} == {(a, b"A2"), (b, b"B2")}
    assert h.coord.describe("zzz").state is GroupState.DEAD
    assert [g.group_id for g in h.coord.list_groups(["Stable"])] == ["g"]
    assert h.coord.list_groups(["Empty"]) == []


def test_timers_do_not_accumulate() -> None:
    """Heartbeats and rebalances keep at most a few live timers per member."""
    h = Harness()
    a, b, gen = _stable_pair(h)
    for _ in range(200):
        h.advance(1_000)
        h.heartbeat(a, gen)
        h.heartbeat(b, gen)
    assert len(h.coord._timers) <= 6


def test_pending_member_that_never_rejoins_expires() -> None:
    """A MEMBER_ID_REQUIRED member that never comes back stops blocking the rebalance."""
    h = Harness()
    first = h.join_result(h.join(session_ms=5_000))
    assert first is not None
    t = h.join(v4=False, client="z")
    assert h.join_result(t) is None  # waits for the pending member
    h.advance(5_000)
    r = h.join_result(t)
    assert r is not None
    assert r.error == E.NONE
    assert RANGE[0].name == r.protocol_name


def test_unloaded_groups_go_and_their_waiting_members_get_not_coordinator() -> None:
    """Unloading a group (its offsets partition moved to another broker) answers a
    member's pending JoinGroup NOT_COORDINATOR, forgets the group and leaves the
    other groups alone."""
    h = Harness()
    a = h.full_join()
    assert h.join_result(h.last_token) is not None
    assert h.sync_result(h.sync(a, 1, assignments={a: b"A"})) is not None
    b = h.full_join()
    waiting = h.last_token
    assert h.join_result(waiting) is None  # waits for the leader to rejoin
    other = h.full_join("other")
    assert h.join_result(h.last_token) is not None
    h.apply(h.coord.unload(["g", "missing"]))
    result = h.join_result(waiting)
    assert result is not None
    assert (result.error, result.member_id) == (E.NOT_COORDINATOR, b)
    assert "g" not in h.coord.groups
    assert h.heartbeat(a, 1) == E.UNKNOWN_MEMBER_ID
    assert other in h.coord.groups["other"].members
