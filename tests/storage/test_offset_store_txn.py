"""Transactional offsets in the offset store: pending until their transaction ends.

A Hypothesis state machine drives an :class:`OffsetStore` with plain commits,
transactional commits of several producers, COMMIT/ABORT completions, epoch bumps,
OffsetDelete, DeleteGroups, compaction and reopening (clean and after a crash),
against a model that keeps every record and decides what is visible the way Kafka
states it: the committed offset of a partition is the *last written* record among
its plain commits and its transactional records whose transaction committed, since
its last deletion; a record whose transaction is still open is pending.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from storage.errors import ProducerFenced
from storage.offset_store import CommittedOffset, OffsetStore

GROUPS = ("g", "h")
KEYS = (("t", 0), ("t", 1), ("u", 0))
PIDS = (7, 8)


def _off(key: tuple[str, int], offset: int) -> CommittedOffset:
    return CommittedOffset(topic=key[0], partition=key[1], offset=offset)


def test_txn_offsets_are_invisible_until_commit(tmp_path: Path) -> None:
    """A transactional offset is pending (not fetched) until its COMMIT; an ABORT
    drops it and leaves the plain commit."""
    store = OffsetStore(tmp_path)
    store.commit("g", [_off(("t", 0), 3)])
    store.txn_commit("g", 7, 0, [_off(("t", 0), 10)])
    assert store.fetch("g") == {("t", 0): _off(("t", 0), 3)}
    assert store.pending("g") == {("t", 0)}
    assert store.complete_txn(7, 0, ["g"], commit=False)[1] == 0
    assert store.fetch("g") == {("t", 0): _off(("t", 0), 3)}
    assert store.pending("g") == set()
    store.txn_commit("g", 7, 0, [_off(("t", 0), 11)])
    assert store.complete_txn(7, 0, ["g"], commit=True)[1] == 1
    assert store.fetch("g") == {("t", 0): _off(("t", 0), 11)}
    store.close()


def test_plain_commit_made_while_pending_wins_over_the_txn(tmp_path: Path) -> None:
    """A plain commit written after a transactional one stays when the transaction
    commits (the last record written wins)."""
    store = OffsetStore(tmp_path)
    store.txn_commit("g", 7, 0, [_off(("t", 0), 10)])
    store.commit("g", [_off(("t", 0), 20)])
    assert store.complete_txn(7, 0, ["g"], commit=True)[1] == 0
    assert store.fetch("g") == {("t", 0): _off(("t", 0), 20)}
    store.close()


def test_older_epoch_is_fenced_and_stale_completion_ignored(tmp_path: Path) -> None:
    """A transactional commit with an older epoch is refused; a completion older
    than the pending offsets changes nothing."""
    store = OffsetStore(tmp_path)
    store.txn_commit("g", 7, 2, [_off(("t", 0), 10)])
    with pytest.raises(ProducerFenced):
        store.txn_commit("g", 7, 1, [_off(("t", 0), 11)])
    assert store.complete_txn(7, 1, ["g"], commit=True)[1] is None
    assert store.pending("g") == {("t", 0)}
    store.complete_txn(7, 3, ["g"], commit=False)
    with pytest.raises(ProducerFenced):
        store.txn_commit("g", 7, 2, [_off(("t", 0), 12)])
    store.close()


def test_pending_offsets_and_epochs_survive_crash_and_compaction(
    tmp_path: Path,
) -> None:
    """Pending offsets are rebuilt from the log after a crash and after a clean
    (compacting) close, and then complete as before; the epoch still fences."""
    store = OffsetStore(tmp_path)
    store.txn_commit("g", 7, 0, [_off(("t", 0), 10)])
    store.complete_txn(7, 1, ["g"], commit=False)
    store.txn_commit("g", 8, 0, [_off(("t", 1), 5)])
    store.sync()
    store.close(clean=False)
    again = OffsetStore(tmp_path)
    assert again.pending("g") == {("t", 1)}
    again.close(clean=True)
    assert '"op":"txn_offset"' in again.path.read_text()
    third = OffsetStore(tmp_path)
    assert third.pending("g") == {("t", 1)}
    with pytest.raises(ProducerFenced):
        third.txn_commit("g", 7, 0, [_off(("t", 0), 1)])
    third.complete_txn(8, 0, ["g"], commit=True)
    assert third.fetch("g") == {("t", 1): _off(("t", 1), 5)}
    third.close()


@dataclass
class _Record:
    pos: int
    group: str
    key: tuple[str, int]
    offset: int
    pid: int | None = None  # None: a plain commit
    epoch: int = 0
    state: str = "committed"  # pending, committed, aborted, dropped


class OffsetStoreTxnMachine(RuleBasedStateMachine):
    """The offset store against the record-keeping model above."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="txnoffsets-"))
        self.store = OffsetStore(self.dir)
        self.records: list[_Record] = []
        self.known: dict[int, int] = {}  # producer id -> newest epoch accepted
        self.next = 0

    def teardown(self) -> None:
        self.store.close(clean=False)
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- the model ---------------------------------------------------------------
    def _live(self, group: str, key: tuple[str, int]) -> list[_Record]:
        return [r for r in self.records if (r.group, r.key) == (group, key)]

    def visible(self, group: str) -> dict[tuple[str, int], int]:
        out = {}
        for key in KEYS:
            done = [r for r in self._live(group, key) if r.state == "committed"]
            if done:
                out[key] = max(done, key=lambda r: r.pos).offset
        return out

    def pending(self, group: str) -> set[tuple[str, int]]:
        return {
            r.key for r in self.records if r.group == group and r.state == "pending"
        }

    def _pending_of(self, pid: int) -> list[_Record]:
        return [r for r in self.records if r.pid == pid and r.state == "pending"]

    # -- rules -------------------------------------------------------------------
    @rule(
        group=st.sampled_from(GROUPS),
        key=st.sampled_from(KEYS),
        offset=st.integers(0, 99),
    )
    def plain_commit(self, group: str, key: tuple[str, int], offset: int) -> None:
        self.store.commit(group, [_off(key, offset)])
        self.next += 1
        self.records.append(_Record(self.next, group, key, offset))

    @rule(
        pid=st.sampled_from(PIDS),
        epoch=st.integers(0, 3),
        group=st.sampled_from(GROUPS),
        keys=st.lists(st.sampled_from(KEYS), min_size=1, max_size=2, unique=True),
        offset=st.integers(0, 99),
    )
    def txn_commit(
        self, pid: int, epoch: int, group: str, keys: list[tuple[str, int]], offset: int
    ) -> None:
        entries = [_off(k, offset + i) for i, k in enumerate(keys)]
        if epoch < self.known.get(pid, -1):
            with pytest.raises(ProducerFenced):
                self.store.txn_commit(group, pid, epoch, entries)
            return
        self.store.txn_commit(group, pid, epoch, entries)
        for r in self._pending_of(pid):
            if r.epoch < epoch:
                r.state = "dropped"  # the older epoch's transaction is over
        self.known[pid] = epoch
        for i, k in enumerate(keys):
            self.next += 1
            self.records.append(
                _Record(self.next, group, k, offset + i, pid, epoch, "pending")
            )
            for r in self._pending_of(pid)[:-1]:
                if (r.group, r.key) == (group, k):
                    r.state = "dropped"  # replaced within the transaction

    @rule(
        pid=st.sampled_from(PIDS),
        epoch=st.integers(0, 3),
        groups=st.lists(st.sampled_from(GROUPS), max_size=2, unique=True),
        commit=st.booleans(),
    )
    def complete(self, pid: int, epoch: int, groups: list[str], commit: bool) -> None:
        _seq, applied = self.store.complete_txn(pid, epoch, groups, commit)
        pending = self._pending_of(pid)
        if pending and epoch < pending[0].epoch:
            assert applied is None
            return
        assert applied is not None
        self.known[pid] = max(self.known.get(pid, -1), epoch)
        for r in pending:
            if r.group in groups:
                r.state = "committed" if commit else "aborted"

    @rule(group=st.sampled_from(GROUPS), key=st.sampled_from(KEYS))
    def delete_offset(self, group: str, key: tuple[str, int]) -> None:
        self.store.delete_offsets(group, [key])
        if key in self.visible(group):
            for r in self._live(group, key):
                r.state = "dropped"

    @rule(group=st.sampled_from(GROUPS))
    def delete_group(self, group: str) -> None:
        self.store.delete_group(group)
        for r in self.records:
            if r.group == group:
                r.state = "dropped"

    @rule()
    def compact(self) -> None:
        self.store.compact()

    @rule(clean=st.booleans())
    def reopen(self, clean: bool) -> None:
        self.store.sync()
        self.store.close(clean=clean)
        self.store = OffsetStore(self.dir)

    # -- invariants ----------------------------------------------------------------
    @invariant()
    def fetch_shows_committed_only(self) -> None:
        for group in GROUPS:
            got = {k: c.offset for k, c in self.store.fetch(group).items()}
            assert got == self.visible(group)
            assert self.store.pending(group) == self.pending(group)


OffsetStoreTxnMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=30, deadline=None
)
TestOffsetStoreTxn = OffsetStoreTxnMachine.TestCase
