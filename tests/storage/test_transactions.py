"""Transactions in the partition log: open transactions, LSO, the aborted index.

A Hypothesis state machine drives a PartitionLog with transactional batches of
several producers, COMMIT/ABORT markers (``append_marker``), plain batches, rolls,
follower truncations, checkpoints, clean restarts and crashes that tear the
``.txnindex`` files, against a model that replays the batch list from scratch. The
rest checks the ``.txnindex`` bytes against Kafka's layout, marker fencing, and that
retention, DeleteRecords and resets delete the index with its segment.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from protocol.record_builder import ControlType, RecordInput, build_batch, iter_records
from protocol.records import iter_batches
from storage.config import TopicConfig
from storage.errors import (
    CoordinatorFenced,
    InvalidRecord,
    ProducerFenced,
)
from storage.fileops import FileOps
from storage.partition_log import PartitionLog
from storage.transactions import STATE_FILE
from storage.txn_index import ENTRY_SIZE, AbortedTxn, decode_entries, encode_entries

PIDS = (7, 8, 9)


def open_log(path: str, *, clean: bool, **overrides: str) -> PartitionLog:
    config = TopicConfig.from_overrides(
        {"segment.bytes": "600", "index.interval.bytes": "64", **overrides}
    )
    return PartitionLog.open(
        path, topic="t", partition=0, config=config, fileops=FileOps(), clean=clean
    )


def txn_batch(pid: int, epoch: int, seq: int, count: int = 1) -> bytes:
    return build_batch(
        [
            RecordInput(key=b"k", value=b"t%d" % i, timestamp=1_000)
            for i in range(count)
        ],
        producer_id=pid,
        producer_epoch=epoch,
        base_sequence=seq,
        is_transactional=True,
    )


def plain_batch(count: int = 1) -> bytes:
    return build_batch(
        [RecordInput(key=None, value=b"p%d" % i, timestamp=1_000) for i in range(count)]
    )


def index_files(path: str) -> dict[int, list[AbortedTxn]]:
    out = {}
    for name in sorted(os.listdir(path)):
        if name.endswith(".txnindex"):
            data = Path(path, name).read_bytes()
            entries, intact = decode_entries(data)
            assert intact, name
            out[int(name.split(".")[0])] = entries
    return out


# -- the .txnindex format -------------------------------------------------------------


def test_txnindex_entry_is_kafkas_34_byte_layout() -> None:
    """An entry is version int16 0, then producer id, first, last offset and LSO as
    big-endian int64s (Kafka ``AbortedTxn``)."""
    entry = AbortedTxn(
        producer_id=0x0102030405060708,
        first_offset=10,
        last_offset=20,
        last_stable_offset=21,
    )
    data = encode_entries([entry, entry])
    assert ENTRY_SIZE == 34
    assert data[:34] == bytes.fromhex(
        "00000102030405060708000000000000000a00000000000000140000000000000015"
    )
    assert data == data[:34] * 2
    assert decode_entries(data) == ([entry, entry], True)
    assert decode_entries(data + b"\x00" * 5) == ([entry, entry], False)


def test_abort_marker_writes_the_segments_txnindex(tmp_path: Path) -> None:
    """An ABORT marker adds (pid, first, marker offset, LSO) to the active segment's
    .txnindex; a COMMIT adds nothing; the LSO follows the open transactions."""
    log = open_log(str(tmp_path), clean=False)
    log.append(plain_batch(2), leader_epoch=0)  # 0..1
    log.append(txn_batch(7, 0, 0, 2), leader_epoch=0)  # 2..3
    log.append(txn_batch(8, 0, 0), leader_epoch=0)  # 4
    assert log.first_unstable_offset == 2
    assert log.last_stable_offset(5) == 2
    assert log.last_stable_offset(1) == 1
    abort = log.append_marker(7, 0, False, 3, leader_epoch=0)  # 5
    assert abort.base_offset == 5
    assert log.first_unstable_offset == 4
    commit = log.append_marker(8, 0, True, 3, leader_epoch=0)  # 6
    assert commit.base_offset == 6
    assert log.first_unstable_offset is None
    assert log.last_stable_offset(7) == 7
    expected = AbortedTxn(
        producer_id=7, first_offset=2, last_offset=5, last_stable_offset=4
    )
    assert log.aborted_transactions(0, 7) == [expected]
    assert log.aborted_transactions(6, 7) == []
    assert index_files(str(tmp_path)) == {0: [expected]}
    # the marker is Kafka's control batch: one record, key (0, type), value (0, epoch)
    data = b"".join(bytes(b) for b in log.read(5, 1 << 20).buffers)
    (_, header), *_ = iter_batches(data)
    assert header.is_control
    assert header.is_transactional
    assert (header.producer_id, header.producer_epoch) == (7, 0)
    (record,) = iter_records(data)
    assert record.key == struct.pack(">hh", 0, ControlType.ABORT)
    assert record.value == struct.pack(">hi", 0, 3)
    log.close()


def test_markers_are_fenced_like_kafkas(tmp_path: Path) -> None:
    """A marker with an older producer epoch or coordinator epoch is refused and
    nothing is written; clients may not write control batches at all."""
    log = open_log(str(tmp_path), clean=False)
    log.append(txn_batch(7, 2, 0), leader_epoch=0)
    with pytest.raises(ProducerFenced):
        log.append_marker(7, 1, True, 0, leader_epoch=0)
    log.append_marker(7, 2, True, 5, leader_epoch=0)
    with pytest.raises(CoordinatorFenced):
        log.append_marker(7, 2, True, 4, leader_epoch=0)
    end = log.log_end_offset
    marker = bytes(b"".join(bytes(b) for b in log.read(1, 1 << 20).buffers))
    with pytest.raises(InvalidRecord):
        log.append(marker, leader_epoch=0)
    assert log.log_end_offset == end == 2
    log.close()


def test_a_partition_without_transactions_keeps_no_state_file(tmp_path: Path) -> None:
    """Plain and idempotent data never create txn-state.json (nothing to replay)."""
    log = open_log(str(tmp_path), clean=False)
    log.append(plain_batch(3), leader_epoch=0)
    log.checkpoint()
    log.close()
    assert not (tmp_path / STATE_FILE).exists()
    log = open_log(str(tmp_path), clean=True)
    assert log.first_unstable_offset is None
    log.close()


def test_retention_delete_records_and_reset_delete_the_index(tmp_path: Path) -> None:
    """The .txnindex goes with its segment, whatever deletes the segment."""
    log = open_log(str(tmp_path), clean=False, **{"retention.bytes": "1"})
    log.append(txn_batch(7, 0, 0), leader_epoch=0)
    log.append_marker(7, 0, False, 0, leader_epoch=0)
    log.roll()
    log.append(txn_batch(7, 0, 1), leader_epoch=0)
    log.append_marker(7, 0, False, 0, leader_epoch=0)
    log.roll()
    log.append(plain_batch(), leader_epoch=0)
    assert sorted(index_files(str(tmp_path))) == [0, 2]
    log.apply_retention()
    assert sorted(index_files(str(tmp_path))) == []
    assert log.aborted_transactions(0, 10) == []
    log.close()

    log = open_log(str(tmp_path / "b"), clean=False)
    log.append(txn_batch(7, 0, 0), leader_epoch=0)
    log.append_marker(7, 0, False, 0, leader_epoch=0)
    log.roll()
    log.append(plain_batch(), leader_epoch=0)
    log.delete_records(2)
    assert index_files(str(tmp_path / "b")) == {}
    log.append(txn_batch(8, 0, 0), leader_epoch=0)
    log.append_marker(8, 0, False, 0, leader_epoch=0)
    assert len(index_files(str(tmp_path / "b"))) == 1
    log.truncate_to(0)  # everything goes: the log restarts empty
    assert index_files(str(tmp_path / "b")) == {}
    assert log.first_unstable_offset is None
    log.close()


def test_a_follower_copying_batches_verbatim_tracks_the_same_transactions(
    tmp_path: Path,
) -> None:
    """A follower's verbatim appends (its leader's batches, markers included) give
    it the leader's open transactions, LSO and .txnindex entries."""
    leader = open_log(str(tmp_path / "leader"), clean=False)
    leader.append(txn_batch(7, 0, 0, 2), leader_epoch=3)
    leader.append(txn_batch(8, 0, 0), leader_epoch=3)
    leader.append_marker(8, 0, False, 1, leader_epoch=3)
    leader.append(plain_batch(), leader_epoch=3)
    copied = b"".join(bytes(b) for b in leader.read(0, 1 << 20).buffers)
    follower = open_log(str(tmp_path / "follower"), clean=False)
    follower.append_verbatim(copied)
    assert follower.open_transactions() == leader.open_transactions() == {7: 0}
    assert follower.last_stable_offset(5) == 0
    aborted = leader.aborted_transactions(0, 5)
    assert aborted == [
        AbortedTxn(producer_id=8, first_offset=2, last_offset=3, last_stable_offset=0)
    ]
    assert follower.aborted_transactions(0, 5) == aborted
    assert index_files(str(tmp_path / "follower")) == {0: aborted}
    follower.close()
    leader.close()


def test_adopted_segments_bring_their_transactions(tmp_path: Path) -> None:
    """Segments adopted from a staging log (snapshot ingest) are replayed: their
    open transaction holds the LSO, their abort is indexed, and both survive a
    restart."""
    log = open_log(str(tmp_path / "log"), clean=False)
    log.append(plain_batch(2), leader_epoch=0)
    staged = open_log(str(tmp_path / "stage"), clean=True)
    staged.reset_start(2)
    staged.append(txn_batch(7, 0, 0), leader_epoch=0)  # 2
    staged.append_marker(7, 0, False, 0, leader_epoch=0)  # 3
    staged.roll()
    staged.append(txn_batch(8, 0, 0), leader_epoch=0)  # 4, left open
    staged.close()
    assert log.adopt(str(tmp_path / "stage")) == 5
    expected = [
        AbortedTxn(producer_id=7, first_offset=2, last_offset=3, last_stable_offset=4)
    ]
    for _ in range(2):
        assert log.open_transactions() == {8: 4}
        assert log.last_stable_offset(5) == 4
        assert log.aborted_transactions(0, 5) == expected
        log.close()
        log = open_log(str(tmp_path / "log"), clean=True)
    log.close()


def test_an_abort_whose_marker_a_torn_tail_lost_is_forgotten(tmp_path: Path) -> None:
    """A crash that loses the ABORT marker from the log (but not its .txnindex
    entry) reopens the transaction and drops the entry."""
    log = open_log(str(tmp_path), clean=False)
    log.append(txn_batch(7, 0, 0), leader_epoch=0)
    log.close()  # txn-state.json now says: offset 1, transaction of 7 open at 0
    log = open_log(str(tmp_path), clean=True)
    log.append_marker(7, 0, False, 0, leader_epoch=0)
    assert len(index_files(str(tmp_path))[0]) == 1
    log.close(clean=False)
    segment = tmp_path / f"{0:020d}.log"
    size = len(txn_batch(7, 0, 0))
    os.truncate(segment, size + 10)  # the marker is torn
    log = open_log(str(tmp_path), clean=False)
    assert log.log_end_offset == 1
    assert log.open_transactions() == {7: 0}
    assert log.aborted_transactions(0, 2) == []
    assert index_files(str(tmp_path)) == {}
    log.close()


# -- the state machine ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Batch:
    base: int
    last: int
    pid: int  # -1: plain
    kind: str  # "data", "commit", "abort", "plain"
    epoch: int = 0


def replay(batches: list[Batch]) -> tuple[dict[int, int], list[AbortedTxn]]:
    """The model: open transactions and aborted ones, from the batch list."""
    opened: dict[int, int] = {}
    aborted: list[AbortedTxn] = []
    for b in batches:
        if b.kind == "data":
            opened.setdefault(b.pid, b.base)
        elif b.kind in ("commit", "abort"):
            first = opened.pop(b.pid, b.base)
            if b.kind == "abort":
                lso = min(opened.values()) if opened else b.base + 1
                aborted.append(
                    AbortedTxn(
                        producer_id=b.pid,
                        first_offset=first,
                        last_offset=b.base,
                        last_stable_offset=lso,
                    )
                )
    return opened, aborted


class TxnModel(RuleBasedStateMachine):
    """PartitionLog transactions against :func:`replay` of the model's batch list."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="ailurus-txn-")
        self.batches: list[Batch] = []
        self.end = 0
        self.epochs = dict.fromkeys(PIDS, 0)
        self.seqs = dict.fromkeys(PIDS, 0)
        self.log = open_log(self.dir, clean=False)

    def teardown(self) -> None:
        self.log.close(clean=False)
        shutil.rmtree(self.dir, ignore_errors=True)

    def _add(self, count: int, pid: int, kind: str) -> None:
        epoch = self.epochs.get(pid, -1)
        self.batches.append(Batch(self.end, self.end + count - 1, pid, kind, epoch))
        self.end += count

    @rule(pid=st.sampled_from(PIDS), count=st.integers(1, 3))
    def transactional(self, pid: int, count: int) -> None:
        result = self.log.append(
            txn_batch(pid, self.epochs[pid], self.seqs[pid], count), leader_epoch=0
        )
        assert result.base_offset == self.end
        self.seqs[pid] += count
        self._add(count, pid, "data")

    @rule(count=st.integers(1, 3))
    def plain(self, count: int) -> None:
        self.log.append(plain_batch(count), leader_epoch=0)
        self._add(count, -1, "plain")

    @rule(pid=st.sampled_from(PIDS), commit=st.booleans(), stale=st.booleans())
    def marker(self, pid: int, commit: bool, stale: bool) -> None:
        epoch = self.epochs[pid]
        known = max((b.epoch for b in self.batches if b.pid == pid), default=0)
        if stale and known > 0:
            with pytest.raises(ProducerFenced):
                self.log.append_marker(pid, known - 1, commit, 0, leader_epoch=0)
            return
        result = self.log.append_marker(pid, epoch, commit, 0, leader_epoch=0)
        assert result.base_offset == self.end
        self._add(1, pid, "commit" if commit else "abort")

    @rule(pid=st.sampled_from(PIDS))
    def bump_epoch(self, pid: int) -> None:
        self.epochs[pid] += 1
        self.seqs[pid] = 0

    @rule()
    def roll(self) -> None:
        self.log.roll()

    @rule()
    def checkpoint(self) -> None:
        self.log.sync()
        self.log.checkpoint()

    @precondition(lambda self: self.batches)
    @rule(data=st.data())
    def truncate(self, data: st.DataObject) -> None:
        """A follower's KIP-101 truncation at a batch boundary or inside a batch."""
        offset = data.draw(st.integers(0, self.end - 1))
        new_end = self.log.truncate_to(offset)
        kept = [b for b in self.batches if b.last < offset]
        cut = next(b for b in self.batches if b.last >= offset)
        self.batches = kept
        self.end = cut.base if kept else offset
        assert new_end == self.end

    @rule()
    def restart(self) -> None:
        self.log.close(clean=True)
        self.log = open_log(self.dir, clean=True)

    @rule(tear=st.booleans())
    def crash(self, tear: bool) -> None:
        """Crash: the log is synced (nothing of it lost) but the .txnindex entries
        from txn-state.json's offset on are lost or torn, but for those below the
        checkpoint's recovery point (fsynced before it was written); recovery
        rebuilds them."""
        self.log.sync()
        self.log.close(clean=False)
        state_path = os.path.join(self.dir, STATE_FILE)
        if os.path.exists(state_path):
            with open(state_path, "rb") as f:
                since = json.loads(f.read())["offset"]
            checkpoint = Path(self.dir, "checkpoint.json")
            if checkpoint.exists():
                since = max(
                    since, json.loads(checkpoint.read_bytes())["recovery_point"]
                )
            for base, entries in index_files(self.dir).items():
                kept = [e for e in entries if e.last_offset < since]
                path = os.path.join(self.dir, f"{base:020d}.txnindex")
                data = encode_entries(kept) + (b"\x00\x00\x01" if tear else b"")
                if data:
                    Path(path).write_bytes(data)
                else:
                    os.unlink(path)
        self.log = open_log(self.dir, clean=False)

    @invariant()
    def matches_model(self) -> None:
        opened, aborted = replay(self.batches)
        assert self.log.log_end_offset == self.end
        assert self.log.open_transactions() == opened
        first = min(opened.values()) if opened else None
        assert self.log.first_unstable_offset == first
        assert self.log.last_stable_offset(self.end) == (
            self.end if first is None else first
        )
        assert self.log.aborted_transactions(0, self.end + 1) == aborted
        on_disk = [e for entries in index_files(self.dir).values() for e in entries]
        assert on_disk == aborted

    @precondition(lambda self: self.end > 0)
    @rule(data=st.data())
    def fetch_range(self, data: st.DataObject) -> None:
        start = data.draw(st.integers(0, self.end))
        upper = data.draw(st.integers(start, self.end + 1))
        _, aborted = replay(self.batches)
        expected = [
            e for e in aborted if e.last_offset >= start and e.first_offset < upper
        ]
        assert self.log.aborted_transactions(start, upper) == expected


TxnModel.TestCase.settings = settings(
    max_examples=25,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestTxnModel = TxnModel.TestCase
