"""Replica placement (Kafka's ``AdminUtils.assignReplicasToBrokers``): known
layouts, refusals with their Kafka error codes, and the spread properties."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.cluster.placement import (
    PlacementError,
    assign,
    grow_start_index,
    rack_alternated,
    validate,
)
from protocol.error_codes import ErrorCode


def _unracked(n: int) -> dict[int, str | None]:
    return dict.fromkeys(range(n))


def test_rack_unaware_layout_matches_kafkas_example() -> None:
    """Kafka's documented example: 5 brokers, 10 partitions, RF 3, start 0."""
    got = assign(_unracked(5), 10, 3, start_index=0)
    assert got == [
        (0, 1, 2),
        (1, 2, 3),
        (2, 3, 4),
        (3, 4, 0),
        (4, 0, 1),
        (0, 2, 3),
        (1, 3, 4),
        (2, 4, 0),
        (3, 0, 1),
        (4, 1, 2),
    ]


def test_rack_alternated_list_interleaves_racks() -> None:
    assert rack_alternated({0: "a", 1: "a", 2: "b", 3: "c", 4: "c"}) == [0, 2, 3, 1, 4]
    assert rack_alternated({5: "x", 3: "y", 1: "x"}) == [1, 3, 5]


def test_rack_aware_replicas_on_distinct_racks() -> None:
    brokers: dict[int, str | None] = {0: "a", 1: "a", 2: "b", 3: "c", 4: "c", 5: "b"}
    got = assign(brokers, 6, 3, start_index=0)
    assert got[0] == (0, 2, 3)
    for replicas in got:
        assert len({brokers[b] for b in replicas}) == 3


def test_brokers_with_ids_not_from_zero() -> None:
    got = assign({10: None, 20: None, 30: None}, 3, 2, start_index=0)
    assert got == [(10, 20), (20, 30), (30, 10)]


@pytest.mark.parametrize(
    ("partitions", "rf", "code"),
    [
        (0, 1, ErrorCode.INVALID_PARTITIONS),
        (-1, 1, ErrorCode.INVALID_PARTITIONS),
        (3, 0, ErrorCode.INVALID_REPLICATION_FACTOR),
        (3, 4, ErrorCode.INVALID_REPLICATION_FACTOR),
    ],
)
def test_refusals_carry_kafka_codes(partitions: int, rf: int, code: ErrorCode) -> None:
    with pytest.raises(PlacementError) as e:
        assign(_unracked(3), partitions, rf)
    assert e.value.code == code


def test_no_brokers_refuses_replication() -> None:
    with pytest.raises(PlacementError) as e:
        assign({}, 1, 1)
    assert e.value.code == ErrorCode.INVALID_REPLICATION_FACTOR


def test_mixed_racks_place_rack_unaware() -> None:
    got = assign({0: "a", 1: None, 2: "b"}, 3, 2, start_index=0)
    assert got == [(0, 1), (1, 2), (2, 0)]


@pytest.mark.parametrize(
    ("assignment", "fragment"),
    [
        ([], "empty"),
        ([[0, 1], []], "no replicas"),
        ([[0, 0]], "duplicate"),
        ([[0, 1], [1]], "Inconsistent"),
        ([[0, 9]], "not available"),
    ],
)
def test_manual_assignment_refusals(assignment: list[list[int]], fragment: str) -> None:
    with pytest.raises(PlacementError) as e:
        validate(assignment, {0, 1, 2})
    assert e.value.code == ErrorCode.INVALID_REPLICA_ASSIGNMENT
    assert fragment in e.value.message


def test_manual_assignment_keeps_the_topics_replication_factor() -> None:
    assert validate([[2, 1]], {0, 1, 2}, replication_factor=2) == [(2, 1)]
    with pytest.raises(PlacementError):
        validate([[2]], {0, 1, 2}, replication_factor=2)


def test_grow_continues_from_partition_zeros_first_replica() -> None:
    brokers = _unracked(4)
    existing = assign(brokers, 4, 2, start_index=1)
    start = grow_start_index(brokers, existing[0][0])
    assert start == 1
    grown = assign(brokers, 4, 2, start_index=start, start_partition=4)
    # Leaders keep rotating from where the existing partitions left off.
    assert [r[0] for r in existing + grown] == [1, 2, 3, 0, 1, 2, 3, 0]


@st.composite
def _cluster(draw: st.DrawFn) -> tuple[dict[int, str | None], int, int]:
    n = draw(st.integers(1, 9))
    ids = draw(st.lists(st.integers(0, 50), min_size=n, max_size=n, unique=True))
    racked = draw(st.booleans())
    racks = draw(st.lists(st.sampled_from("abcd"), min_size=n, max_size=n))
    brokers: dict[int, str | None] = {
        b: (r if racked else None) for b, r in zip(ids, racks, strict=True)
    }
    rf = draw(st.integers(1, n))
    partitions = draw(st.integers(1, 40))
    return brokers, partitions, rf


@settings(max_examples=300, deadline=None)
@given(_cluster(), st.integers(0, 2**32))
def test_every_partition_has_rf_distinct_live_brokers(
    cluster: tuple[dict[int, str | None], int, int], seed: int
) -> None:
    brokers, partitions, rf = cluster
    got = assign(brokers, partitions, rf, rng=random.Random(seed))
    assert len(got) == partitions
    for replicas in got:
        assert len(replicas) == rf
        assert len(set(replicas)) == rf
        assert set(replicas) <= set(brokers)


@settings(max_examples=300, deadline=None)
@given(_cluster(), st.integers(0, 2**32))
def test_rack_aware_spans_min_rf_racks(
    cluster: tuple[dict[int, str | None], int, int], seed: int
) -> None:
    brokers, partitions, rf = cluster
    got = assign(brokers, partitions, rf, rng=random.Random(seed))
    if any(r is None for r in brokers.values()):
        return
    n_racks = len(set(brokers.values()))
    for replicas in got:
        assert len({brokers[b] for b in replicas}) == min(rf, n_racks)


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(1, 8),
    rounds=st.integers(1, 4),
    data=st.data(),
)
def test_leaders_and_replicas_spread_evenly(
    n: int, rounds: int, data: st.DataObject
) -> None:
    """Partitions a multiple of the brokers: each broker leads the same number of
    partitions and holds the same number of replicas (within one)."""
    rf = data.draw(st.integers(1, n))
    start = data.draw(st.integers(0, n - 1))
    got = assign(_unracked(n), n * rounds, rf, start_index=start)
    leaders = Counter(r[0] for r in got)
    replicas = Counter(b for r in got for b in r)
    assert set(leaders) == set(range(n))
    assert max(leaders.values()) - min(leaders.values()) <= 1
    assert max(replicas.values()) - min(replicas.values()) <= 1


@settings(max_examples=100, deadline=None)
@given(_cluster(), st.integers(0, 20))
def test_deterministic_with_a_start_index(
    cluster: tuple[dict[int, str | None], int, int], start: int
) -> None:
    brokers, partitions, rf = cluster
    start %= len(brokers)
    first = assign(brokers, partitions, rf, start_index=start, rng=random.Random(1))
    again = assign(brokers, partitions, rf, start_index=start, rng=random.Random(2))
    assert first == again
