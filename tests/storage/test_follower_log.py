"""A follower's log: verbatim appends of a leader's batches, truncation, reset."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from protocol.records import iter_batches
from storage.config import TopicConfig
from storage.errors import OffsetMismatch, StorageIOError
from storage.fileops import FileOps
from storage.partition_log import PartitionLog

MakeBatch = Callable[..., bytes]


def open_log(path: Path, *, clean: bool = False, **configs: str) -> PartitionLog:
    config = TopicConfig.from_overrides(
        {k.replace("_", "."): v for k, v in configs.items()}
    )
    return PartitionLog.open(
        str(path), topic="t", partition=0, config=config, fileops=FileOps(), clean=clean
    )


def all_bytes(log: PartitionLog) -> bytes:
    """Every batch of the log, read segment by segment."""
    out = bytearray()
    offset = log.log_start_offset
    while offset < log.log_end_offset:
        result = log.read(offset, 1 << 30)
        out += b"".join(bytes(b) for b in result.buffers)
        offset = result.next_offset
    return bytes(out)


def leader_log(path: Path, make_batch: MakeBatch, epochs: list[int]) -> PartitionLog:
    """A leader whose batch i (3 records each) was written in ``epochs[i]``."""
    log = open_log(path, segment_bytes="300")
    for i, epoch in enumerate(epochs):
        log.append(make_batch(3, value=b"L%d-" % i), leader_epoch=epoch)
    return log


def test_follower_append_copies_leader_batches_byte_for_byte(
    tmp_path: Path, make_batch: MakeBatch
) -> None:
    """Batches appended verbatim keep offsets, leader epochs and CRCs, and each new
    epoch's start offset lands in the epoch cache."""
    leader = leader_log(tmp_path / "l", make_batch, [0, 0, 2, 2, 5])
    data = all_bytes(leader)
    follower = open_log(tmp_path / "f", segment_bytes="300")
    follower.append_verbatim(data)
    assert all_bytes(follower) == data
    assert follower.log_end_offset == leader.log_end_offset == 15
    for epoch in range(7):
        assert follower.epoch_end_offset(epoch) == leader.epoch_end_offset(epoch)
    assert follower.leader_epoch == 5
    leader.close()
    follower.close()


def test_follower_append_keeps_a_gap_and_refuses_an_overlap(
    tmp_path: Path, make_batch: MakeBatch
) -> None:
    """A batch past the log end offset is appended with the gap before it (a
    compacted leader's log has gaps, Kafka's followers keep them); one before the
    log end is refused whole."""
    leader = leader_log(tmp_path / "l", make_batch, [0, 0, 0])
    batches = [bytes(b) for b in (leader.read(o, 1).buffers[0] for o in (0, 3, 6))]
    follower = open_log(tmp_path / "f")
    follower.append_verbatim(batches[0])
    with pytest.raises(OffsetMismatch):
        follower.append_verbatim(batches[0])
    assert follower.log_end_offset == 3
    follower.append_verbatim(batches[2])  # offsets 3..5 were cleaned away
    assert follower.log_end_offset == 9
    assert follower.read(3, 1 << 20).first_offset == 6
    with pytest.raises(OffsetMismatch):
        follower.append_verbatim(batches[1])
    leader.close()
    follower.close()


def test_truncate_to_drops_the_tail_segments_and_epochs(
    tmp_path: Path, make_batch: MakeBatch
) -> None:
    """Truncation cuts at a batch start, deletes later segments and forgets the
    epochs that began past the cut; appends continue from the new end."""
    log = leader_log(tmp_path, make_batch, [0, 0, 1, 1, 2, 3, 3])
    assert len(log.segments()) > 2
    prefix = bytes(log.read(0, 1 << 20, upper_bound=9).buffers[0])
    assert log.truncate_to(9) == 9
    assert log.log_end_offset == 9
    assert all_bytes(log) == prefix
    assert log.leader_epoch == 1
    assert log.epoch_end_offset(1) == (1, 9)
    assert log.epoch_end_offset(2) == (-1, -1)
    assert log.durable_offset <= 9
    log.append(make_batch(2), leader_epoch=4)
    assert log.log_end_offset == 11
    assert log.epoch_end_offset(1) == (1, 9)
    log.close()
    reopened = open_log(tmp_path, clean=True, segment_bytes="300")
    assert reopened.log_end_offset == 11
    assert reopened.epoch_end_offset(1) == (1, 9)
    assert reopened.leader_epoch == 4
    reopened.close()


def test_truncate_inside_a_batch_cuts_the_whole_batch(
    tmp_path: Path, make_batch: MakeBatch
) -> None:
    """An offset inside a batch removes that batch (Kafka LogSegment.truncateTo)."""
    log = leader_log(tmp_path, make_batch, [0, 0, 0])
    assert log.truncate_to(4) == 3
    assert log.truncate_to(100) == 3  # past the end: nothing to do
    log.close()


def test_truncate_at_or_below_the_log_start_empties_the_log(
    tmp_path: Path, make_batch: MakeBatch
) -> None:
    """Truncating everything readable restarts an empty log at the offset."""
    log = leader_log(tmp_path, make_batch, [0, 0, 0, 0])
    log.delete_records(6)
    assert log.truncate_to(6) == 6
    assert (log.log_start_offset, log.log_end_offset) == (6, 6)
    assert log.leader_epoch == -1
    log.close()
    reopened = open_log(tmp_path)
    assert (reopened.log_start_offset, reopened.log_end_offset) == (6, 6)
    reopened.close()


def test_truncation_survives_a_crash_right_after_it(
    tmp_path: Path, make_batch: MakeBatch
) -> None:
    """After truncation nothing past the cut comes back, even without a clean close
    or a sync."""
    log = leader_log(tmp_path, make_batch, [0, 1, 1, 2, 2, 2])
    log.sync()
    log.checkpoint()
    log.truncate_to(6)
    log.close(clean=False)
    reopened = open_log(tmp_path, segment_bytes="300")
    assert reopened.log_end_offset == 6
    assert reopened.leader_epoch == 1
    assert not any(name.endswith(".tmp") for name in os.listdir(tmp_path))
    reopened.close()


def test_recovery_after_a_crash_mid_truncation_keeps_a_valid_prefix(
    tmp_path: Path, make_batch: MakeBatch
) -> None:
    """A crash after the checkpoint but before the cut (the tail segments are
    deleted, the cut segment is not yet replaced) recovers a dense prefix of the
    old log that is at least the new end, with epochs re-derived from its
    batches."""
    log = leader_log(tmp_path, make_batch, [0, 1, 1, 2, 2, 2])
    original = all_bytes(log)
    log.sync()
    log.checkpoint()
    segments = log.segments()
    log.close(clean=False)
    # What the first steps of truncate_to(4) leave on disk: a checkpoint at the
    # cut, and the segments past the one holding offset 4 gone (newest first).
    (tmp_path / "checkpoint.json").write_text(
        '{"version": 1, "recovery_point": 3, "log_start_offset": 0}'
    )
    (tmp_path / "leader-epoch-checkpoint").write_text("0\n1\n0 0\n")
    holding = max(s for s in segments if s.base_offset <= 4)
    for seg in segments:
        if seg.base_offset > holding.base_offset:
            os.unlink(seg.path)
    reopened = open_log(tmp_path, segment_bytes="300")
    end = reopened.log_end_offset
    assert end >= 3
    assert all_bytes(reopened) == original[: len(all_bytes(reopened))]
    assert [h.base_offset for _, h in iter_batches(all_bytes(reopened))] == list(
        range(0, end, 3)
    )
    assert reopened.epoch_end_offset(0) == (0, 3)
    assert reopened.truncate_to(3) == 3
    reopened.close()


def test_reset_start_restarts_an_empty_follower_at_the_leader_start(
    tmp_path: Path, make_batch: MakeBatch
) -> None:
    """An empty follower restarts at its leader's log start and copies from there."""
    leader = leader_log(tmp_path / "l", make_batch, [0, 0, 1, 1])
    leader.delete_records(6)
    follower = open_log(tmp_path / "f")
    follower.reset_start(leader.log_start_offset)
    tail = all_bytes(leader)
    follower.append_verbatim(tail)
    assert (follower.log_start_offset, follower.log_end_offset) == (6, 12)
    assert all_bytes(follower) == tail
    assert follower.epoch_end_offset(0) == leader.epoch_end_offset(0) == (0, 6)
    leader.close()
    follower.close()


class _CrashAt(FileOps):
    """Fails the first file operation of a kind, the way a crash would stop it."""

    def __init__(self, op: str) -> None:
        self.op = op

    def replace(self, src: str, dst: str) -> None:
        if self.op == "swap" and src.endswith(".truncate.tmp"):
            raise OSError(5, "injected")
        super().replace(src, dst)

    def unlink(self, path: str) -> None:
        if self.op == "unlink" and path.endswith(".log"):
            raise OSError(5, "injected")
        super().unlink(path)


@pytest.mark.parametrize("op", ["unlink", "swap"])
def test_a_truncation_stopped_part_way_recovers_a_valid_prefix(
    tmp_path: Path, make_batch: MakeBatch, op: str
) -> None:
    """If truncation stops at any step, the log refuses writes, and reopening it
    gives a dense prefix of the old log no shorter than the cut, with no temp file
    left, which a second truncation then cuts."""
    config = TopicConfig.from_overrides({"segment.bytes": "300"})
    log = PartitionLog.open(
        str(tmp_path),
        topic="t",
        partition=0,
        config=config,
        fileops=_CrashAt(op),
        clean=False,
    )
    for i, epoch in enumerate([0, 1, 1, 2, 2, 2]):
        log.append(make_batch(3, value=b"%d-" % i), leader_epoch=epoch)
    original = all_bytes(log)
    log.sync()
    with pytest.raises(StorageIOError):
        log.truncate_to(4)
    assert log.failed is not None
    log.close(clean=False)
    reopened = open_log(tmp_path, segment_bytes="300")
    assert not any(name.endswith(".tmp") for name in os.listdir(tmp_path))
    kept = all_bytes(reopened)
    assert len(kept) > 0
    assert original.startswith(kept)
    assert reopened.log_end_offset >= 3
    assert reopened.truncate_to(4) == 3
    assert all_bytes(reopened) == original[: len(all_bytes(reopened))]
    assert reopened.leader_epoch == 0
    reopened.close()
