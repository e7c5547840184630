"""The transaction coordinator's pure decisions against a simple model of Kafka's."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from broker.transactions import state_machine as sm
from broker.transactions.model import (
    TransactionMetadata,
    TxnState,
    can_transition,
)
from protocol.error_codes import ErrorCode

MAX_TIMEOUT = 900_000
PARTS = [("a", 0), ("a", 1), ("b", 0)]


def _init(
    meta: TransactionMetadata | None,
    *,
    expected: tuple[int, int] | None = None,
    fresh: int | None = 1000,
    now: int = 1,
    timeout: int = 60_000,
) -> sm.Outcome:
    return sm.init_producer_id(
        meta,
        transactional_id="t",
        timeout_ms=timeout,
        max_timeout_ms=MAX_TIMEOUT,
        expected=expected,
        fresh_id=fresh,
        now_ms=now,
    )


def _written(outcome: sm.Outcome) -> TransactionMetadata:
    assert isinstance(outcome, sm.Write | sm.Prepare), outcome
    return outcome.meta


def test_new_transactional_id_gets_epoch_zero() -> None:
    """A new transactional id gets the fresh producer id with epoch 0."""
    assert isinstance(_init(None, fresh=None), sm.NeedProducerId)
    meta = _written(_init(None, fresh=7))
    assert (meta.producer_id, meta.producer_epoch, meta.state) == (7, 0, TxnState.EMPTY)


@pytest.mark.parametrize("timeout", [0, -1, MAX_TIMEOUT + 1])
def test_timeout_out_of_range_is_refused(timeout: int) -> None:
    """A transaction timeout over transaction.max.timeout.ms is refused."""
    assert _init(None, timeout=timeout) == sm.Refuse(
        ErrorCode.INVALID_TRANSACTION_TIMEOUT
    )


def test_exhausted_epoch_rotates_the_producer_id() -> None:
    """An exhausted epoch gets a new producer id with epoch 0."""
    meta = replace(_written(_init(None, fresh=7)), producer_epoch=sm.EXHAUSTED_EPOCH)
    assert isinstance(_init(meta, fresh=None), sm.NeedProducerId)
    rotated = _written(_init(meta, fresh=8))
    assert (rotated.producer_id, rotated.producer_epoch) == (8, 0)
    assert rotated.last_producer_id == 7


def test_kip360_bump_and_its_retry() -> None:
    """A KIP-360 bump with the current epoch bumps; its retry answers the same."""
    meta = _written(_init(None, fresh=7))
    bumped = _written(_init(meta, expected=(7, 0)))
    assert (bumped.producer_epoch, bumped.last_producer_epoch) == (1, 0)
    assert _init(bumped, expected=(7, 0)) == sm.Done(bumped)
    assert _init(bumped, expected=(99, 0)) == sm.Refuse(ErrorCode.PRODUCER_FENCED)
    assert _init(bumped, expected=(7, 5)) == sm.Refuse(ErrorCode.PRODUCER_FENCED)


def test_init_during_ongoing_transaction_fences_and_aborts() -> None:
    """InitProducerId on an Ongoing transaction aborts it at a bumped epoch."""
    meta = _written(_init(None, fresh=7))
    ongoing = _written(
        sm.add_partitions(
            meta, producer_id=7, producer_epoch=0, partitions=PARTS[:1], now_ms=2
        )
    )
    outcome = _init(ongoing)
    assert isinstance(outcome, sm.Prepare)
    assert outcome.answer == ErrorCode.CONCURRENT_TRANSACTIONS
    assert outcome.meta.state is TxnState.PREPARE_ABORT
    assert outcome.meta.producer_epoch == 1
    assert sm.add_partitions(
        outcome.meta, producer_id=7, producer_epoch=0, partitions=PARTS, now_ms=3
    ) == sm.Refuse(ErrorCode.PRODUCER_FENCED)


def test_cluster_add_offsets_adds_the_groups_offsets_partition() -> None:
    """AddOffsetsToTxn in a cluster adds the group's ``__consumer_offsets``
    partition with the group, whose markers then go there; a repeat is answered
    without a write, a new partition (the offsets topic grew) is written."""
    meta = _written(_init(None, fresh=7))
    offsets = ("__consumer_offsets", 3)

    def add(m: TransactionMetadata, tp: tuple[str, int]) -> sm.Outcome:
        return sm.add_group(
            m, producer_id=7, producer_epoch=0, group_id="g", now_ms=2,
            offsets_partition=tp,
        )  # fmt: skip

    ongoing = _written(add(meta, offsets))
    assert (ongoing.groups, ongoing.partitions) == ({"g"}, {offsets})
    assert add(ongoing, offsets) == sm.Done(ongoing)
    grown = _written(add(ongoing, ("__consumer_offsets", 5)))
    assert grown.partitions == {offsets, ("__consumer_offsets", 5)}


def test_end_txn_answers_as_kafka_in_every_state() -> None:
    """EndTxn: a retry of a completed end is NONE, the opposite INVALID_TXN_STATE,
    a pending one CONCURRENT_TRANSACTIONS."""
    meta = _written(_init(None, fresh=7))
    end = {"producer_id": 7, "producer_epoch": 0, "now_ms": 5}
    assert sm.end_txn(meta, commit=True, **end) == sm.Refuse(
        ErrorCode.INVALID_TXN_STATE
    )
    ongoing = _written(
        sm.add_partitions(
            meta, producer_id=7, producer_epoch=0, partitions=PARTS, now_ms=2
        )
    )
    prepared = _written(sm.end_txn(ongoing, commit=True, **end))
    assert prepared.state is TxnState.PREPARE_COMMIT
    assert sm.end_txn(prepared, commit=True, **end) == sm.Refuse(
        ErrorCode.CONCURRENT_TRANSACTIONS
    )
    assert sm.end_txn(prepared, commit=False, **end) == sm.Refuse(
        ErrorCode.INVALID_TXN_STATE
    )
    done = sm.complete(prepared, 6)
    assert sm.end_txn(done, commit=True, **end) == sm.Done(done)
    assert sm.end_txn(done, commit=False, **end) == sm.Refuse(
        ErrorCode.INVALID_TXN_STATE
    )
    assert sm.end_txn(done, commit=True, producer_id=8, producer_epoch=0, now_ms=7) == (
        sm.Refuse(ErrorCode.INVALID_PRODUCER_ID_MAPPING)
    )


def test_fenced_code_follows_kip588_versions() -> None:
    """PRODUCER_FENCED from the KIP-588 version, INVALID_PRODUCER_EPOCH before."""
    assert sm.fenced_code(3, 4) == ErrorCode.INVALID_PRODUCER_EPOCH
    assert sm.fenced_code(4, 4) == ErrorCode.PRODUCER_FENCED


class CoordinatorMachine(RuleBasedStateMachine):
    """Drives one transactional id through random requests; a simple model says
    what Kafka answers, and every written state is a legal transition."""

    def __init__(self) -> None:
        super().__init__()
        self.meta: TransactionMetadata | None = None
        self.now = 1_000
        self.next_id = 100
        # the model: the epoch the live producer holds, and its transaction
        self.epoch = -1
        self.phase = "none"  # none | empty | ongoing | prepare | complete
        self.commit = False
        self.parts: set[tuple[str, int]] = set()
        self.groups: set[str] = set()

    def _apply(self, outcome: sm.Outcome) -> None:
        if isinstance(outcome, sm.Write | sm.Prepare):
            new = outcome.meta
            if self.meta is not None:
                old = self.meta.state
                ok = can_transition(old, new.state) or (
                    # Ongoing -> PrepareEpochFence -> PrepareAbort in one write
                    old is TxnState.ONGOING and new.state is TxnState.PREPARE_ABORT
                )
                assert ok, (old, new.state)
                if new.producer_id == self.meta.producer_id:
                    assert new.producer_epoch >= self.meta.producer_epoch
            self.meta = new

    def _fresh(self) -> int:
        self.next_id += 1
        return self.next_id

    @rule()
    def init(self) -> None:
        outcome = _init(self.meta, fresh=self._fresh(), now=self.now)
        if self.phase == "prepare":
            assert outcome == sm.Refuse(ErrorCode.CONCURRENT_TRANSACTIONS)
        elif self.phase == "ongoing":
            assert isinstance(outcome, sm.Prepare)
            assert outcome.answer == ErrorCode.CONCURRENT_TRANSACTIONS
            self.phase, self.commit = "prepare", False
            self.epoch = -2  # the old producer is fenced; nobody holds an epoch
        else:
            assert isinstance(outcome, sm.Write)
            assert outcome.meta.state is TxnState.EMPTY
            self.epoch = outcome.meta.producer_epoch
            self.phase = "empty"
            self.parts.clear()
            self.groups.clear()
        self._apply(outcome)

    @rule(part=st.sampled_from(PARTS), stale=st.booleans())
    def add_partition(self, part: tuple[str, int], stale: bool) -> None:
        pid = -1 if self.meta is None else self.meta.producer_id
        epoch = self.epoch - 1 if stale else self.epoch
        outcome = sm.add_partitions(
            self.meta, producer_id=pid, producer_epoch=epoch, partitions=[part],
            now_ms=self.now,
        )  # fmt: skip
        if self.meta is None:
            assert outcome == sm.Refuse(ErrorCode.INVALID_PRODUCER_ID_MAPPING)
        elif epoch != self.meta.producer_epoch:
            assert outcome == sm.Refuse(ErrorCode.PRODUCER_FENCED)
        elif self.phase == "prepare":
            assert outcome == sm.Refuse(ErrorCode.CONCURRENT_TRANSACTIONS)
        elif self.phase == "ongoing" and part in self.parts:
            assert isinstance(outcome, sm.Done)
        else:
            assert isinstance(outcome, sm.Write)
            if self.phase != "ongoing":
                self.parts.clear()
                self.groups.clear()
            self.phase = "ongoing"
            self.parts.add(part)
        self._apply(outcome)

    @rule(group=st.sampled_from(["g1", "g2"]))
    def add_group(self, group: str) -> None:
        pid = -1 if self.meta is None else self.meta.producer_id
        outcome = sm.add_group(
            self.meta, producer_id=pid, producer_epoch=self.epoch, group_id=group,
            now_ms=self.now,
        )  # fmt: skip
        if self.meta is None:
            assert outcome == sm.Refuse(ErrorCode.INVALID_PRODUCER_ID_MAPPING)
        elif self.epoch != self.meta.producer_epoch:
            assert outcome == sm.Refuse(ErrorCode.PRODUCER_FENCED)
        elif self.phase == "prepare":
            assert outcome == sm.Refuse(ErrorCode.CONCURRENT_TRANSACTIONS)
        elif isinstance(outcome, sm.Write):
            if self.phase != "ongoing":
                self.parts.clear()
                self.groups.clear()
            self.phase = "ongoing"
            self.groups.add(group)
        else:
            assert isinstance(outcome, sm.Done)
            assert group in self.groups
        self._apply(outcome)

    @rule(commit=st.booleans())
    def end(self, commit: bool) -> None:
        pid = -1 if self.meta is None else self.meta.producer_id
        outcome = sm.end_txn(
            self.meta, producer_id=pid, producer_epoch=self.epoch, commit=commit,
            now_ms=self.now,
        )  # fmt: skip
        if self.meta is None:
            assert outcome == sm.Refuse(ErrorCode.INVALID_PRODUCER_ID_MAPPING)
        elif self.epoch != self.meta.producer_epoch:
            assert outcome == sm.Refuse(ErrorCode.PRODUCER_FENCED)
        elif self.phase == "ongoing":
            assert isinstance(outcome, sm.Prepare)
            assert outcome.meta.partitions == frozenset(self.parts)
            self.phase, self.commit = "prepare", commit
        elif self.phase == "prepare" and commit == self.commit:
            assert outcome == sm.Refuse(ErrorCode.CONCURRENT_TRANSACTIONS)
        elif self.phase == "complete" and commit == self.commit:
            assert isinstance(outcome, sm.Done)
        else:
            assert outcome == sm.Refuse(ErrorCode.INVALID_TXN_STATE)
        self._apply(outcome)

    @precondition(lambda self: self.phase == "prepare")
    @rule()
    def markers_written(self) -> None:
        assert self.meta is not None
        done = sm.complete(self.meta, self.now)
        assert can_transition(self.meta.state, done.state)
        expected = TxnState.COMPLETE_COMMIT if self.commit else TxnState.COMPLETE_ABORT
        assert done.state is expected
        self.meta = done
        self.phase = "complete"
        self.parts.clear()
        self.groups.clear()

    @rule(ms=st.integers(0, 120_000))
    def time_passes(self, ms: int) -> None:
        self.now += ms
        if self.meta is None:
            return
        outcome = sm.expire(self.meta, self.now)
        if self.phase == "ongoing" and self.now - self.meta.start_ms > 60_000:
            assert outcome is not None
            assert outcome.meta.state is TxnState.PREPARE_ABORT
            self.phase, self.commit = "prepare", False
            self.epoch = -2  # fenced by the bump
            self._apply(outcome)
        else:
            assert outcome is None

    @invariant()
    def matches_model(self) -> None:
        if self.meta is None:
            return
        assert self.meta.partitions == frozenset(self.parts)
        assert self.meta.groups == frozenset(self.groups)
        if self.phase == "ongoing":
            assert self.meta.state is TxnState.ONGOING
        if self.phase in ("empty", "complete"):
            assert not self.meta.partitions


CoordinatorMachine.TestCase.settings = settings(
    max_examples=80, stateful_step_count=40, deadline=None
)
TestCoordinatorMachine = CoordinatorMachine.TestCase
