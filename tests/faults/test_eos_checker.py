"""The exactly-once checker names lost, duplicated and unexpected output keys and
counts aborted extras."""

from __future__ import annotations

from tests.faults.eos_checker import check


def test_exact_output_is_ok_and_extras_are_counted() -> None:
    """Each input once in the committed output is ok; uncommitted extras count."""
    verdict = check(["a", "b"], ["b", "a"], ["a", "b", "a"])
    assert verdict.ok
    assert (verdict.committed, verdict.uncommitted, verdict.aborted_extras) == (2, 3, 1)


def test_lost_duplicated_and_unexpected_keys_are_named() -> None:
    """A missing key is lost, a key twice duplicated, a key never input unexpected."""
    verdict = check(["a", "b", "c"], ["a", "a", "z"], ["a", "a", "z"])
    assert not verdict.ok
    assert verdict.lost == ("b", "c")
    assert verdict.duplicated == {"a": 2}
    assert verdict.unexpected == ("z",)


def test_committed_key_missing_from_uncommitted_read_is_unexpected() -> None:
    """A committed record is a record: read_uncommitted must see it as often."""
    verdict = check(["a"], ["a"], [])
    assert verdict.unexpected == ("a",)
