"""Where a follower truncates, and how a Fetch answer becomes whole batches."""

from __future__ import annotations

from pathlib import Path

from broker.replication.follower_log import (
    append_from_leader,
    truncation_offset,
    whole_batches,
)
from protocol.record_builder import RecordInput, build_batch
from storage.config import TopicConfig
from storage.fileops import FileOps
from storage.partition_log import PartitionLog


def _log(path: Path, epochs: list[int]) -> PartitionLog:
    plog = PartitionLog.open(
        str(path),
        topic="t",
        partition=0,
        config=TopicConfig.from_overrides({}),
        fileops=FileOps(),
        clean=False,
    )
    for epoch in epochs:  # one 2-record batch per entry
        plog.append(
            build_batch([RecordInput(value=b"a"), RecordInput(value=b"b")]),
            leader_epoch=epoch,
        )
    return plog


def test_truncation_offset_follows_kafkas_rules(tmp_path: Path) -> None:
    """Same epoch: the smaller end; an older local epoch: its own end (another round
    follows); the leader knows no epoch: keep the log; no local epoch: the leader's
    end."""
    plog = _log(tmp_path / "a", [0, 0, 2, 2, 4])  # epochs 0@0, 2@4, 4@8; end 10
    assert truncation_offset(plog, 2, 6) == 6
    assert truncation_offset(plog, 2, 9) == 8
    assert truncation_offset(plog, 3, 9) == 8  # local epoch 2 ends at 8
    assert truncation_offset(plog, 4, 20) == 10
    assert truncation_offset(plog, 1, -1) is None
    assert truncation_offset(plog, -1, 3) == 3
    empty = _log(tmp_path / "b", [])
    assert truncation_offset(empty, 5, 7) == 0
    plog.close()
    empty.close()


def test_whole_batches_drop_a_partial_tail(tmp_path: Path) -> None:
    """A trailing partial batch is cut off; split buffers are joined; None is empty."""
    one = build_batch([RecordInput(value=b"x")])
    two = build_batch([RecordInput(value=b"y")])
    assert bytes(whole_batches(one + two[:30])) == one
    assert bytes(whole_batches((one, two))) == one + two
    assert whole_batches(None) == b""


def test_an_empty_follower_starts_at_the_batch_holding_its_start(
    tmp_path: Path,
) -> None:
    """An empty log whose start falls inside the leader's first batch restarts at
    that batch's base offset and takes it whole."""
    leader = _log(tmp_path / "l", [0, 0])
    batch = bytes(leader.read(2, 1 << 20).buffers[0])
    follower = _log(tmp_path / "f", [])
    follower.reset_start(3)
    assert append_from_leader(follower, batch) == 4
    assert follower.log_start_offset == 2
    leader.close()
    follower.close()
