"""Hypothesis: random join/sync/heartbeat/leave/tick sequences keep group invariants."""

from __future__ import annotations

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from broker.groups.model import JoinResult, LeavingMember, SyncResult
from protocol.error_codes import ErrorCode as E
from tests.broker.groups_harness import Harness

OPS = st.lists(
    st.one_of(
        st.tuples(st.just("new"), st.integers(0, 2), st.booleans()),
        st.tuples(
            st.sampled_from(
                ["rejoin", "rejoin", "sync", "sync", "sync", "heartbeat", "leave"]
            ),
            st.integers(0, 9),
            st.booleans(),
        ),
        st.tuples(st.just("tick"), st.integers(1, 40_000), st.booleans()),
    ),
    max_size=80,
)


def _check_group_invariants(h: Harness) -> None:
    group = h.coord.groups.get("g")
    if group is None:
        return
    assert not set(group.members) & set(group.pending), (
        "a member is both in and pending"
    )
    for instance, member_id in group.static.items():
        assert group.members[member_id].group_instance_id == instance
    if group.members:
        assert group.leader_id in group.members


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(OPS)
def test_random_sequences_keep_invariants(ops: list[tuple[str, int, bool]]) -> None:
    """Generations only grow, assignments reach only their generation's members, every wait ends."""
    h = Harness()
    known: list[tuple[str, str | None]] = []  # (member id, instance id)
    generation_of: dict[str, int] = {}
    leader_view: dict[str, tuple[int, list[str]]] = {}  # leader → (generation, members)
    members_of_generation: dict[int, set[str]] = {}
    sync_tokens: dict[int, tuple[str, int, str | None]] = {}
    join_tokens: set[int] = set()
    last_generation = 0
    seen = 0

    def absorb() -> None:
        nonlocal seen
        for token, result in h.reply_log[seen:]:
            if isinstance(result, JoinResult):
                assert token in join_tokens
                if result.member_id and all(result.member_id != k[0] for k in known):
                    instance = next(
                        (i for t, i in pending_instances if t == token), None
                    )
                    known.append((result.member_id, instance))
                if result.error == E.NONE:
                    g = result.generation_id
                    generation_of[result.member_id] = g
                    if result.members:
                        ids = [m.member_id for m in result.members]
                        leader_view[result.member_id] = (g, ids)
                        assert members_of_generation.setdefault(g, set(ids)) == set(ids)
            else:
                assert isinstance(result, SyncResult)
                member_id, g, instance = sync_tokens[token]
                if result.error == E.NONE and result.assignment:
                    # a static member keeps the assignment made for its earlier id
                    owners = {
                        m
                        for m, i in known
                        if m == member_id or (instance is not None and i == instance)
                    }
                    assert result.assignment in {f"{g}:{m}".encode() for m in owners}
                    assert owners & members_of_generation[g]
                    event("assignment relayed")
        seen = len(h.reply_log)

    pending_instances: list[tuple[int, str | None]] = []
    for op, arg, flag in ops:
        if op == "new":
            instance = None if arg == 0 else f"i{arg}"
            token = h.join(instance=instance, v4=flag)
            join_tokens.add(token)
            pending_instances.append((token, instance))
        elif op == "tick":
            h.advance(arg)
        elif known:
            member_id, instance = known[arg % len(known)]
            gen = generation_of.get(member_id, -1)
            if op == "rejoin":
                token = h.join("g", member_id, instance=instance)
                join_tokens.add(token)
                pending_instances.append((token, instance))
            elif op == "sync":
                assignments = None
                view = leader_view.get(member_id)
                if view is not None and view[0] == gen:
                    assignments = {m: f"{gen}:{m}".encode() for m in view[1]}
                token = h.sync(
                    member_id, gen, assignments=assignments, instance=instance
                )
                sync_tokens[token] = (member_id, gen, instance)
            elif op == "heartbeat":
                h.heartbeat(member_id, gen, instance=instance)
            else:
                h.leave(LeavingMember(member_id=member_id, group_instance_id=instance))
        absorb()
        _check_group_invariants(h)
        group = h.coord.groups.get("g")
        if group is not None:
            assert group.generation >= last_generation
            last_generation = group.generation
    # Liveness: once every timeout has passed, nobody is left waiting.
    for _ in range(10):
        h.advance(100_000)
    absorb()
    waiting = (join_tokens | set(sync_tokens)) - set(h.replies)
    assert not waiting, f"tokens never answered: {waiting}"
