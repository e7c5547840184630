"""Hypothesis-driven mutation fuzzing of the request decoder, the snapshot readers
and the Produce producer-state path.

Each example takes a corpus seed, applies one to four random edits (bit flips,
boundary integers, truncation, insertion, duplication, deletion, splicing with
another seed) and runs the target: anything but the target's own error is a bug.
Bounded for CI (a few seconds); the ``slow`` variant runs the time-bounded fuzzer
(:mod:`tests.fuzz.run_fuzz`) for a minute per target.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz._fuzz import TARGETS, check, corpus, mutate
from tests.fuzz.run_fuzz import fuzz

_SEEDS = {name: [data for _, data in corpus(name)] for name in TARGETS}

CI = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)


def _run(target: str, index: int, other: int, seed: int) -> None:
    seeds = _SEEDS[target]
    data = mutate(
        random.Random(seed), seeds[index % len(seeds)], seeds[other % len(seeds)]
    )
    found = check(TARGETS[target], data)
    assert found is None, f"{target}: {found!r} on {data!r}"


@CI
@given(st.integers(0, 10_000), st.integers(0, 10_000), st.integers(0, 2**32))
def test_mutated_requests_raise_only_protocol_errors(
    index: int, other: int, seed: int
) -> None:
    """Mutated client frames decode or raise ProtocolError."""
    _run("request", index, other, seed)


@CI
@given(st.integers(0, 10_000), st.integers(0, 10_000), st.integers(0, 2**32))
def test_mutated_meta_json_raises_only_snapshot_errors(
    index: int, other: int, seed: int
) -> None:
    """Mutated meta.json parses or raises SnapshotError."""
    _run("meta", index, other, seed)


@CI
@given(st.integers(0, 10_000), st.integers(0, 10_000), st.integers(0, 2**32))
def test_mutated_segments_raise_only_snapshot_errors(
    index: int, other: int, seed: int
) -> None:
    """Mutated snapshot segment files read or raise SnapshotError."""
    _run("segment", index, other, seed)


@CI
@given(st.integers(0, 10_000), st.integers(0, 10_000), st.integers(0, 2**32))
def test_mutated_group_offsets_raise_only_snapshot_errors(
    index: int, other: int, seed: int
) -> None:
    """Mutated group-offsets.json parses (to entries within the rules) or raises
    SnapshotError."""
    _run("groups", index, other, seed)


@CI
@given(st.binary(max_size=300))
def test_arbitrary_group_offsets_bytes_raise_only_snapshot_errors(data: bytes) -> None:
    """Arbitrary bytes as group-offsets.json parse or raise SnapshotError."""
    assert check(TARGETS["groups"], data) is None


@CI
@given(st.integers(0, 10_000), st.integers(0, 10_000), st.integers(0, 2**32))
def test_mutated_produce_payloads_raise_only_storage_errors(
    index: int, other: int, seed: int
) -> None:
    """Mutated plain, idempotent and transactional payloads (lengths, CRCs, record
    counts, producer fields) append, get an error code, or raise StorageError."""
    _run("produce", index, other, seed)


@CI
@given(st.binary(max_size=300))
def test_arbitrary_meta_bytes_raise_only_snapshot_errors(data: bytes) -> None:
    """Arbitrary bytes as meta.json parse or raise SnapshotError."""
    assert check(TARGETS["meta"], data) is None


def test_time_bounded_fuzz_finds_nothing_in_ci() -> None:
    """Two seconds per target of corpus mutation raise no unexpected exception."""
    for target in TARGETS:
        stats = fuzz(target, seconds=2.0, seed=9)
        print(stats)
        assert stats["unexpected"] == 0, stats
        assert stats["executions"] > 100


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_time_bounded_fuzz_soak() -> None:
    """A minute per target of corpus mutation raises no unexpected exception."""
    for target in TARGETS:
        stats = fuzz(target, seconds=60.0, seed=15)
        print(stats)
        assert stats["unexpected"] == 0, stats
