"""The controller's per-partition decisions as pure functions: a record and the
live brokers in, the new record (or a refusal) out."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from broker.cluster import decisions
from broker.cluster.model import NO_LEADER, PartitionRecord, RequestError
from protocol.error_codes import ErrorCode

BROKERS = range(6)


@st.composite
def records(draw: st.DrawFn) -> PartitionRecord:
    replicas = draw(
        st.lists(st.sampled_from(BROKERS), min_size=1, max_size=4, unique=True)
    )
    isr = draw(st.lists(st.sampled_from(replicas), min_size=1, unique=True))
    leader = draw(st.sampled_from([*isr, NO_LEADER]))
    return PartitionRecord(
        replicas=tuple(replicas),
        leader=leader,
        leader_epoch=draw(st.integers(0, 5)),
        isr=tuple(isr),
        partition_epoch=draw(st.integers(0, 5)),
        controller_epoch=3,
    )


live_sets = st.frozensets(st.sampled_from(BROKERS))


def _epochs_move_on(old: PartitionRecord, new: PartitionRecord) -> None:
    assert new.partition_epoch == old.partition_epoch + 1
    assert new.controller_epoch == 7
    if new.leader != old.leader:
        assert new.leader_epoch == old.leader_epoch + 1
    else:
        assert new.leader_epoch == old.leader_epoch


@settings(max_examples=200, deadline=None)
@given(records(), live_sets, live_sets, st.booleans())
def test_liveness_leaders_are_live_in_sync_replicas(
    rec: PartitionRecord, live: frozenset[int], fenced: frozenset[int], unclean: bool
) -> None:
    new = decisions.for_liveness(rec, live, epoch=7, fenced=fenced, unclean=unclean)
    after = rec if new is None else new
    if new is not None:
        _epochs_move_on(rec, new)
    assert set(after.isr) <= set(after.replicas)
    assert after.isr
    if after.leader != NO_LEADER:
        assert after.leader in after.isr
        if new is not None:
            assert after.leader in live
    elif rec.leader != NO_LEADER:
        assert after.isr == rec.isr  # offline keeps the last ISR
    # No live, non-fenced, in-sync replica is left without a leader.
    if any(r in live and r not in fenced for r in rec.isr):
        assert after.leader != NO_LEADER


@settings(max_examples=150, deadline=None)
@given(records(), live_sets, st.sampled_from(BROKERS))
def test_shut_down_moves_leadership_to_another_live_isr_replica(
    rec: PartitionRecord, live: frozenset[int], broker: int
) -> None:
    new = decisions.shut_down(rec, broker, live, epoch=7, fenced={broker})
    if new is None:
        return
    _epochs_move_on(rec, new)
    assert new.leader != broker
    if new.leader != rec.leader:
        assert new.leader in live
    assert new.leader in new.isr
    assert broker not in new.isr


def test_preferred_election_outcomes() -> None:
    rec = PartitionRecord(replicas=(1, 2), leader=2, leader_epoch=4, isr=(2, 1))
    new = decisions.elect_preferred(rec, {1, 2}, epoch=7)
    assert isinstance(new, PartitionRecord)
    assert (new.leader, new.leader_epoch, new.isr) == (1, 5, (2, 1))
    refused = decisions.elect_preferred(rec, {2}, epoch=7)
    assert isinstance(refused, RequestError)
    assert refused.code == ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE
    refused = decisions.elect_preferred(new, {1, 2}, epoch=7)
    assert isinstance(refused, RequestError)
    assert refused.code == ErrorCode.ELECTION_NOT_NEEDED


def test_unclean_election_without_live_replicas_is_refused() -> None:
    rec = PartitionRecord(replicas=(1, 2), leader=NO_LEADER, leader_epoch=4, isr=(1,))
    refused = decisions.elect_unclean(rec, {3}, epoch=7)
    assert isinstance(refused, RequestError)
    assert refused.code == ErrorCode.ELIGIBLE_LEADERS_NOT_AVAILABLE
    new = decisions.elect_unclean(rec, {2, 3}, epoch=7)
    assert isinstance(new, PartitionRecord)
    assert (new.leader, new.isr, new.leader_epoch) == (2, (2,), 5)


@settings(max_examples=150, deadline=None)
@given(
    records(),
    st.lists(st.sampled_from(BROKERS), min_size=1, max_size=4, unique=True),
    st.lists(st.sampled_from(BROKERS), min_size=1, max_size=4, unique=True),
)
def test_reassignment_replaced_then_cancelled_returns_to_the_original_replicas(
    rec: PartitionRecord, first: list[int], second: list[int]
) -> None:
    live = set(BROKERS)
    moving = decisions.reassign(rec, first, live, epoch=7)
    assert isinstance(moving, PartitionRecord)
    if not moving.adding and not moving.removing:
        return  # completed at once
    assert list(decisions.target_of(moving)) == first
    replaced = decisions.reassign(moving, second, live, epoch=7)
    assert isinstance(replaced, PartitionRecord)
    if not replaced.adding and not replaced.removing:
        return
    assert list(decisions.target_of(replaced)) == second
    cancelled = decisions.reassign(replaced, [], live, epoch=7)
    assert isinstance(cancelled, PartitionRecord)
    assert sorted(cancelled.replicas) == sorted(rec.replicas)
    assert (cancelled.adding, cancelled.removing) == ((), ())
    assert set(cancelled.isr) <= set(cancelled.replicas)
