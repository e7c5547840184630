"""Idempotent producer state: sequence checks, epochs, rebuild, id allocation."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.record_builder import RecordInput, build_batch
from storage.errors import StorageError
from storage.producer_state import (
    Append,
    Duplicate,
    InvalidEpoch,
    OutOfOrder,
    PartitionProducerState,
    ProducerIdAllocator,
    UnknownProducer,
    increment_sequence,
)

MAX = 2**31 - 1


def _append(
    state: PartitionProducerState,
    pid: int,
    epoch: int,
    seq: int,
    count: int,
    offset: int,
) -> int:
    assert state.check(pid, epoch, seq, count) == Append()
    state.record(pid, epoch, seq, count, offset, offset + count - 1)
    return offset + count


def test_new_producer_appends_and_next_sequence_follows() -> None:
    """A first batch appends; the next batch must continue the sequence."""
    state = PartitionProducerState()
    end = _append(state, 7, 0, 0, 3, 0)
    end = _append(state, 7, 0, 3, 2, end)
    assert end == 5
    assert state.check(7, 0, 6, 1) == OutOfOrder(
        expected_sequence=5, received_sequence=6
    )


@pytest.mark.parametrize("which", range(5))
def test_duplicate_of_any_of_last_five_batches_returns_original_offsets(
    which: int,
) -> None:
    """A retry of any of the last 5 batches is answered with its original offsets."""
    state = PartitionProducerState()
    offset, seq = 100, 0
    placed = []
    for _ in range(5):
        placed.append((seq, offset))
        offset = _append(state, 1, 2, seq, 2, offset)
        seq += 2
    dup_seq, dup_offset = placed[which]
    assert state.check(1, 2, dup_seq, 2) == Duplicate(
        base_offset=dup_offset, last_offset=dup_offset + 1
    )


def test_batch_older_than_the_last_five_is_out_of_order() -> None:
    """A retry of a batch evicted from the cache is not taken for a duplicate."""
    state = PartitionProducerState()
    offset = 0
    for i in range(6):
        offset = _append(state, 1, 0, i, 1, offset)
    assert isinstance(state.check(1, 0, 0, 1), OutOfOrder)
    assert state.check(1, 0, 1, 1) == Duplicate(base_offset=1, last_offset=1)


def test_gap_in_sequence_is_out_of_order() -> None:
    """Skipping a sequence number is OUT_OF_ORDER_SEQUENCE_NUMBER."""
    state = PartitionProducerState()
    _append(state, 3, 0, 0, 1, 0)
    assert state.check(3, 0, 2, 1) == OutOfOrder(
        expected_sequence=1, received_sequence=2
    )


def test_old_epoch_is_fenced() -> None:
    """A batch with an epoch below the producer's current one is INVALID_PRODUCER_EPOCH."""
    state = PartitionProducerState()
    _append(state, 3, 0, 0, 1, 0)
    _append(state, 3, 1, 0, 1, 1)
    assert state.check(3, 0, 1, 1) == InvalidEpoch(current_epoch=1, received_epoch=0)


def test_new_epoch_must_restart_at_sequence_zero() -> None:
    """A bumped epoch starts its sequence at 0; anything else is out of order."""
    state = PartitionProducerState()
    _append(state, 3, 0, 0, 5, 0)
    assert isinstance(state.check(3, 1, 5, 1), OutOfOrder)
    assert state.check(3, 1, 0, 1) == Append()


def test_unknown_producer_is_accepted_unless_strict() -> None:
    """An unseen producer may start anywhere (KIP-360) unless strict mode is on."""
    assert PartitionProducerState().check(9, 0, 42, 1) == Append()
    strict = PartitionProducerState(strict_unknown=True)
    assert strict.check(9, 0, 42, 1) == UnknownProducer()
    assert strict.check(9, 0, 0, 1) == Append()


def test_non_idempotent_batches_always_append() -> None:
    """Batches without a producer id are never checked."""
    state = PartitionProducerState()
    assert state.check(-1, -1, -1, 10) == Append()
    state.record(-1, -1, -1, 10, 0, 9)
    assert len(state) == 0


def test_sequence_wraps_at_int32_max() -> None:
    """After sequence 2**31-1 the next sequence is 0."""
    assert increment_sequence(MAX, 1) == 0
    assert increment_sequence(MAX - 1, 3) == 1
    state = PartitionProducerState()
    _append(state, 5, 0, MAX - 1, 2, 0)  # sequences MAX-1, MAX
    assert state.check(5, 0, 0, 1) == Append()
    assert state.check(5, 0, MAX - 1, 2) == Duplicate(base_offset=0, last_offset=1)
    state2 = PartitionProducerState()
    _append(state2, 5, 0, MAX, 3, 0)  # MAX, 0, 1
    assert state2.check(5, 0, 2, 1) == Append()


@given(st.lists(st.integers(min_value=1, max_value=5), min_size=1, max_size=30))
def test_every_retry_of_a_recent_batch_is_a_duplicate(counts: list[int]) -> None:
    """Replaying any of the last five appended batches is always detected."""
    state = PartitionProducerState()
    seq = offset = 0
    batches = []
    for count in counts:
        batches.append((seq, count, offset))
        offset = _append(state, 11, 0, seq, count, offset)
        seq += count
    for seq0, count, off in batches[-5:]:
        assert state.check(11, 0, seq0, count) == Duplicate(
            base_offset=off, last_offset=off + count - 1
        )
    assert state.check(11, 0, seq, 1) == Append()


def _log(*batches: bytes) -> bytes:
    return b"".join(batches)


def test_rebuild_from_log_tail_restores_duplicates_and_epochs() -> None:
    """State replayed from batch headers detects the same duplicates as before."""
    recs = [RecordInput(value=b"x"), RecordInput(value=b"y")]
    log = _log(
        build_batch(
            recs, base_offset=0, producer_id=4, producer_epoch=0, base_sequence=0
        ),
        build_batch(recs, base_offset=2),  # not idempotent
        build_batch(
            recs, base_offset=4, producer_id=4, producer_epoch=0, base_sequence=2
        ),
        build_batch(
            recs, base_offset=6, producer_id=8, producer_epoch=3, base_sequence=0
        ),
    )
    torn = log + build_batch(recs, base_offset=8, producer_id=8, producer_epoch=3)[:30]
    state = PartitionProducerState()
    state.load_bytes(torn)
    assert state.producers() == {4: 0, 8: 3}
    assert state.check(4, 0, 2, 2) == Duplicate(base_offset=4, last_offset=5)
    assert state.check(4, 0, 4, 1) == Append()
    assert state.check(8, 2, 2, 1) == InvalidEpoch(current_epoch=3, received_epoch=2)
    assert state.check(8, 3, 0, 2) == Duplicate(base_offset=6, last_offset=7)


def test_control_batch_bumps_epoch_on_rebuild() -> None:
    """A control marker with a newer epoch fences the older epoch after rebuild."""
    state = PartitionProducerState()
    state.load_bytes(
        build_batch(
            [RecordInput(value=b"a")], producer_id=2, producer_epoch=0, base_sequence=0
        )
        + build_batch(
            [RecordInput(key=b"\x00\x00\x00\x00", value=b"\x00\x00\x00\x00\x00\x00")],
            base_offset=1,
            producer_id=2,
            producer_epoch=1,
            is_control=True,
            is_transactional=True,
        )
    )
    assert isinstance(state.check(2, 0, 1, 1), InvalidEpoch)


def test_truncate_forgets_batches_past_the_cut() -> None:
    """After a log truncation, batches at or beyond the cut are no longer duplicates."""
    state = PartitionProducerState()
    _append(state, 1, 0, 0, 1, 0)
    _append(state, 1, 0, 1, 1, 1)
    state.truncate_from(1)
    assert state.check(1, 0, 1, 1) == Append()


def test_allocator_never_reuses_ids_across_restarts(tmp_path: Path) -> None:
    """Ids keep increasing after reopening, even if a block was only partly used."""
    alloc = ProducerIdAllocator(tmp_path, block_size=10)
    first = [alloc.allocate() for _ in range(3)]
    assert first == [0, 1, 2]
    again = ProducerIdAllocator(tmp_path, block_size=10)
    assert again.allocate() == 10
    assert [again.allocate() for _ in range(10)][-1] == 20
    third = ProducerIdAllocator(tmp_path, block_size=10)
    assert third.allocate() == 30


def test_allocator_rejects_corrupt_file(tmp_path: Path) -> None:
    """A damaged id file is a StorageError, never a silent restart at 0."""
    (tmp_path / "producer_ids.json").write_text("{nope")
    with pytest.raises(StorageError):
        ProducerIdAllocator(tmp_path)


def test_allocator_leaves_no_temp_file(tmp_path: Path) -> None:
    """The id file is written atomically; no .tmp remains."""
    ProducerIdAllocator(tmp_path).allocate()
    assert sorted(os.listdir(tmp_path)) == ["producer_ids.json"]


def test_last_timestamp_follows_the_last_batch() -> None:
    """Each producer keeps its last batch's largest timestamp, appended or replayed
    from the log (DescribeProducers); -1 when none was given."""
    state = PartitionProducerState()
    state.record(1, 0, 0, 1, 0, 0, 1_000)
    state.record(1, 0, 1, 1, 1, 1, 2_000)
    state.record(2, 0, 0, 1, 2, 2)
    entries = state.entries()
    assert (entries[1].last_timestamp, entries[1].last_seq) == (2_000, 1)
    assert entries[2].last_timestamp == -1
    replayed = PartitionProducerState()
    replayed.load_bytes(
        build_batch(
            [
                RecordInput(value=b"a", timestamp=5_000),
                RecordInput(value=b"b", timestamp=7_000),
            ],
            base_offset=0,
            producer_id=3,
            producer_epoch=0,
            base_sequence=0,
        )
    )
    assert replayed.entries()[3].last_timestamp == 7_000
