"""FrameBudget caps the bytes of partly received frames across connections, without
deadlock: over the budget only the assembler closest to completing keeps reading."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from broker.net.frame_budget import FrameBudget

MIB = 1024 * 1024


class Member:
    """A connection as the budget sees it: bytes missing, and whether it reads."""

    def __init__(self, name: str, missing: int) -> None:
        self.name = name
        self.frame_missing = missing
        self.reading = True
        self.resumed = 0

    def report(self, budget: FrameBudget, held: int, *, large: bool = True) -> None:
        self.reading = budget.update(self, held, large=large)

    def budget_resumed(self) -> None:
        assert not self.reading, f"{self.name} resumed while reading"
        self.reading = True
        self.resumed += 1

    def __repr__(self) -> str:
        return self.name


def test_under_the_budget_nobody_pauses() -> None:
    """Holders whose sum stays within the limit keep reading."""
    budget = FrameBudget(4 * MIB)
    members = [Member(f"m{i}", 90 * MIB) for i in range(4)]
    for m in members:
        m.report(budget, MIB)
    assert all(m.reading for m in members)
    assert budget.used == 4 * MIB
    assert budget.paused == 0


def test_over_the_budget_only_the_closest_to_completion_reads() -> None:
    """Past the limit, large assemblers pause except the one with fewest bytes missing."""
    budget = FrameBudget(2 * MIB)
    hostile = [Member(f"h{i}", 99 * MIB) for i in range(3)]
    for h in hostile:
        h.report(budget, MIB)
    # h2 crossed the limit; h0 leads (a tie goes to the first started)
    assert [h.reading for h in hostile] == [True, True, False]
    legit = Member("legit", 7 * MIB)
    legit.report(budget, MIB)
    assert legit.reading  # fewer bytes missing: it goes first
    for h in hostile[:2]:
        h.report(budget, MIB)  # each reading one's next receive
    assert [h.reading for h in hostile] == [False, False, False]
    assert budget.paused == 3
    # the legitimate frame grows far past the whole budget and completes
    for held in (4 * MIB, 8 * MIB):
        legit.frame_missing -= 2 * MIB
        legit.report(budget, held)
        assert legit.reading
    legit.frame_missing = 0
    legit.report(budget, 0)
    # 3 MiB still held by the hostile ones (> 2 MiB): exactly one resumes
    assert sum(h.reading for h in hostile) == 1
    assert budget.used == 3 * MIB


def test_small_frames_never_pause() -> None:
    """A connection whose partial frame cannot grow keeps reading even when over."""
    budget = FrameBudget(MIB)
    big = Member("big", 50 * MIB)
    big.report(budget, 2 * MIB)
    small = Member("small", 10)
    small.report(budget, 30_000, large=False)
    assert small.reading
    other = Member("other", 60 * MIB)
    other.report(budget, 64 * 1024)
    assert not other.reading


def test_release_on_close_gives_back_the_share_and_resumes_the_paused() -> None:
    """A closing connection's bytes return to the budget; paused ones resume."""
    budget = FrameBudget(2 * MIB)
    first = Member("first", 10 * MIB)
    first.report(budget, 3 * MIB)
    second = Member("second", 20 * MIB)
    second.report(budget, MIB)
    assert first.reading
    assert not second.reading
    budget.release(first)
    assert budget.used == MIB
    assert second.reading
    assert second.resumed == 1
    budget.release(second)
    budget.release(second)  # idempotent
    assert budget.used == 0
    assert budget.holders == 0
    assert budget.paused == 0


def test_a_paused_member_becomes_the_lead_when_the_lead_leaves() -> None:
    """Still over the budget after the first completes, the next closest resumes."""
    budget = FrameBudget(MIB)
    a = Member("a", 5 * MIB)
    b = Member("b", 6 * MIB)
    c = Member("c", 7 * MIB)
    for m in (a, b, c):
        m.report(budget, MIB)
    assert (a.reading, b.reading, c.reading) == (True, False, False)
    a.frame_missing = 0
    a.report(budget, 0)
    assert (b.reading, c.reading) == (True, False)
    assert budget.used == 2 * MIB


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=5),  # member
            st.sampled_from(["grow", "complete", "close"]),
            st.integers(min_value=1, max_value=4 * MIB),
        ),
        max_size=60,
    ),
    limit=st.integers(min_value=1, max_value=8 * MIB),
)
def test_some_large_assembler_can_always_read(
    steps: list[tuple[int, str, int]], limit: int
) -> None:
    """Whatever the sequence of growth, completion and closes, the accounting is
    exact, and whenever large frames are held someone holding one may read."""
    budget = FrameBudget(limit)
    members = [Member(f"m{i}", 100 * MIB) for i in range(6)]
    held = [0] * 6
    for index, action, amount in steps:
        m = members[index]
        if action == "grow":
            if not m.reading:
                continue  # a paused connection receives nothing
            held[index] += amount
            m.frame_missing = max(0, m.frame_missing - amount)
            m.report(budget, held[index])
        elif action == "complete":
            if not m.reading:
                continue
            held[index] = 0
            m.frame_missing = 100 * MIB
            m.report(budget, 0)
        else:
            held[index] = 0
            m.frame_missing = 100 * MIB
            budget.release(m)
            m.reading = True
        assert budget.used == sum(held)
        holders = [mm for mm, h in zip(members, held, strict=True) if h]
        if holders:
            assert any(mm.reading for mm in holders)
        if budget.used <= limit:
            assert all(mm.reading for mm in members)
