"""The lost/duplicate-write checker judged on generated histories: every valid
history is clean, and one injected loss, duplicate, divergent or vanished read,
reordering or unknown value is found and named."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.faults.checker import History, Reorder


@dataclass
class Run:
    """A generated valid history and the facts it was built from."""

    history: History
    logs: dict[int, list[str]] = field(default_factory=dict)  # partition -> values
    acked: list[str] = field(default_factory=list)  # in acknowledgement order


# one send: (producer, partition, outcome); outcomes: acked, failed but written,
# failed and never written
_SEND = st.tuples(
    st.integers(0, 2),
    st.integers(0, 2),
    st.sampled_from(["acked", "acked", "acked", "written", "dropped"]),
)


# generous with time: the machine may be busy with clusters of other tests
CHECKER = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@st.composite
def valid_runs(draw: st.DrawFn, min_acked: int = 0) -> Run:
    """A history as a correct cluster makes it: each partition's log is the order
    of its writes, acknowledgements follow that order, live readers see prefixes
    of the logs and the final read sees all of them."""
    sends = draw(st.lists(_SEND, max_size=60))
    if sum(1 for s in sends if s[2] == "acked") < min_acked:
        sends += [(0, 0, "acked")] * min_acked
    history = History()
    run = Run(history)
    offsets: dict[int, int] = {}
    seqs: dict[int, int] = {}
    for producer, partition, outcome in sends:
        seq = seqs[producer] = seqs.get(producer, -1) + 1
        value = f"p{producer}-{seq}"
        history.send(value, partition if draw(st.booleans()) else None)
        if outcome == "dropped":
            history.fail(value, "timed out")
            continue
        offset = offsets[partition] = offsets.get(partition, -1) + 1
        run.logs.setdefault(partition, []).append(value)
        if outcome == "acked":
            history.ack(value, partition, offset)
            run.acked.append(value)
        else:
            history.fail(value, "timed out")
    for partition, log in run.logs.items():
        for _ in range(draw(st.integers(0, 2))):  # live readers: prefixes, re-reads
            for offset in range(draw(st.integers(0, len(log)))):
                history.observe(partition, offset, log[offset])
        for offset, value in enumerate(log):
            history.observe(partition, offset, value, final=True)
    return run


@CHECKER
@given(valid_runs())
def test_a_valid_history_is_clean(run: Run) -> None:
    """A history a correct cluster could make has no fault, and its counts add up."""
    verdict = run.history.check()
    assert verdict.ok, str(verdict)
    assert verdict.acked == len(run.acked)
    assert verdict.final_read == sum(len(log) for log in run.logs.values())
    assert str(verdict).startswith("OK")
    assert not run.history.unread()


@CHECKER
@given(valid_runs(min_acked=1), st.data())
def test_an_acked_value_missing_from_the_final_read_is_lost(
    run: Run, data: st.DataObject
) -> None:
    """An acknowledged value the final read never saw is lost (and only that one)."""
    victim = data.draw(st.sampled_from(run.acked))
    history = History()
    _replay(run, history, skip_final={victim})
    verdict = history.check()
    assert verdict.lost == (victim,)
    assert not verdict.duplicated
    assert not verdict.inconsistent
    assert history.unread() == {victim}
    assert "lost 1" in str(verdict)


@CHECKER
@given(valid_runs(min_acked=1), st.data())
def test_a_value_read_at_two_offsets_is_duplicated(
    run: Run, data: st.DataObject
) -> None:
    """A value read again at an offset past its partition's end is a duplicate."""
    victim = data.draw(st.sampled_from(run.acked))
    partition = next(p for p, log in run.logs.items() if victim in log)
    end = len(run.logs[partition])
    run.history.observe(partition, end, victim, final=True)
    verdict = run.history.check()
    assert list(verdict.duplicated) == [victim]
    assert (partition, end) in verdict.duplicated[victim]
    assert not verdict.lost
    assert "duplicated 1" in str(verdict)


@CHECKER
@given(valid_runs(min_acked=1), st.data())
def test_a_read_of_a_record_later_replaced_is_an_inconsistent_offset(
    run: Run, data: st.DataObject
) -> None:
    """A live reader that saw another value at a position the final read holds
    (a record later truncated) is caught at that position."""
    victim = data.draw(st.sampled_from(run.acked))
    partition, offset = run.history.acked()[victim]
    run.history.send("ghost-0", partition)
    run.history.fail("ghost-0", "not enough replicas")
    run.history.observe(partition, offset, "ghost-0")
    verdict = run.history.check()
    assert dict(verdict.inconsistent) == {
        (partition, offset): tuple(sorted([victim, "ghost-0"]))
    }
    assert verdict.vanished == ("ghost-0",)
    assert not verdict.unexpected
    assert not verdict.ok


@CHECKER
@given(valid_runs())
def test_a_read_record_missing_from_the_final_read_vanished(run: Run) -> None:
    """A live reader that saw a record past a partition's final end (later
    truncated, nothing written in its place) is caught, though it was never
    acknowledged."""
    run.history.send("ghost-0", 0)
    run.history.fail("ghost-0", "timed out")
    run.history.observe(0, len(run.logs.get(0, [])), "ghost-0")
    verdict = run.history.check()
    assert verdict.vanished == ("ghost-0",)
    assert not verdict.lost
    assert not verdict.inconsistent
    assert verdict.failed_but_read >= 1
    assert "vanished 1" in str(verdict)


@CHECKER
@given(valid_runs(), st.data())
def test_acks_of_one_producer_against_offset_order_are_reordered(
    run: Run, data: st.DataObject
) -> None:
    """Two acknowledgements of one producer for one partition, the later one at
    the lower offset, are a reordering."""
    history = History()
    history.send("x-0", 7)
    history.send("x-1", 7)
    history.ack("x-1", 7, 1)
    history.ack("x-0", 7, 0)
    for offset, value in enumerate(["x-0", "x-1"]):
        history.observe(7, offset, value, final=True)
    _replay(run, history)
    verdict = history.check()
    assert verdict.reordered == (Reorder("x", 7, "x-1", 1, "x-0", 0),)
    assert not verdict.lost
    assert "reordered 1" in str(verdict)


@CHECKER
@given(valid_runs())
def test_a_value_nobody_sent_is_unexpected(run: Run) -> None:
    """A read of a value no producer sent is reported as unexpected."""
    run.history.observe(99, 0, "stranger-0")
    verdict = run.history.check()
    assert verdict.unexpected == ("stranger-0",)
    assert not verdict.ok


def test_a_value_sent_twice_is_refused() -> None:
    """Values identify records, so sending one twice is the caller's error."""
    history = History()
    history.send("a-0")
    with pytest.raises(ValueError, match="a-0"):
        history.send("a-0")


def test_threads_record_into_one_history() -> None:
    """Producers' callbacks and readers on many threads record every operation."""
    history = History()

    def work(n: int) -> None:
        for i in range(200):
            value = f"t{n}-{i}"
            history.send(value, n)
            history.ack(value, n, i)
            history.observe(n, i, value, final=True)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    verdict = history.check()
    assert verdict.ok, str(verdict)
    assert (verdict.sent, verdict.acked, verdict.final_read) == (800, 800, 800)


def _replay(
    run: Run, into: History, skip_final: frozenset[str] | set[str] = frozenset()
) -> None:
    """Record ``run``'s facts again into ``into``, leaving ``skip_final`` out of
    the final read."""
    acked = run.history.acked()
    for partition, log in run.logs.items():
        for value in log:
            into.send(value, partition)
    for value in run.acked:
        into.ack(value, *acked[value])
    for partition, log in run.logs.items():
        for offset, value in enumerate(log):
            if value not in skip_final:
                into.observe(partition, offset, value, final=True)
