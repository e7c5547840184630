"""Snapshots of partitions with transactions: cut where none is open, ``.txnindex``
carried, checked and restored as it is (storage level; both restore paths)."""

from __future__ import annotations

import json
import os
import struct
import tempfile
from pathlib import Path

import anyio
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from broker.cli.main import _register_commands, cli
from broker.snapshots.handover import _files as handover_files
from broker.snapshots.handover import receive_snapshot, upload_header
from protocol.record_builder import RecordInput, build_batch
from storage.log_cleaner import LogCleaner
from storage.partition_log import PartitionLog
from storage.snapshot import Snapshot, Status, inspect_snapshot
from storage.snapshot_meta import SnapshotInvalid, parse_meta
from tests.snapshots.test_snapshot_stage import stage
from tests.snapshots.test_snapshot_storage import (
    ingest,
    open_log,
    produce,
    snap,
    values_of,
)
from tests.snapshots.test_snapshot_upload import Body, Receiver
from tests.storage.test_cleaner_txns import (
    NOW,
    RETENTION,
    Op,
    build,
    compacted_txn_log,
    ops_strategy,
    read_committed,
)
from tests.storage.test_cleaner_txns import open_log as compacted_log

SEGMENT = 400


def txn(log: PartitionLog, pid: int, value: bytes, seq: int = 0) -> int:
    """A transactional one-record batch of ``pid``; its offset."""
    batch = build_batch(
        [RecordInput(key=b"k", value=value, timestamp=1000)],
        producer_id=pid,
        producer_epoch=0,
        base_sequence=seq,
        is_transactional=True,
    )
    return log.append(batch, leader_epoch=0).base_offset


def end_txn(log: PartitionLog, pid: int, *, commit: bool) -> int:
    return log.append_marker(pid, 0, commit, 1, leader_epoch=0).base_offset


def answers(log: PartitionLog, hw: int) -> dict[tuple[int, int], list[object]]:
    """Every aborted-transaction answer a read_committed fetch can get."""
    lso = log.last_stable_offset(hw)
    return {
        (start, upper): list(log.aborted_transactions(start, upper))
        for start in range(log.log_start_offset, lso + 1)
        for upper in range(start, lso + 1)
    }


def build_source(path: Path) -> PartitionLog:
    """Plain and transactional batches of three producers over several segments:
    commits, aborts, interleaved transactions; producer 9's stays open."""
    log = open_log(path, SEGMENT)
    produce(log, [b"p0", b"p1"])  # 0, 1
    txn(log, 7, b"a7")  # 2
    txn(log, 8, b"c8")  # 3
    txn(log, 7, b"a7b", 1)  # 4
    end_txn(log, 7, commit=False)  # 5: abort, 8 still open (lso 3)
    produce(log, [b"p6"])  # 6
    end_txn(log, 8, commit=True)  # 7
    for i in range(6):
        txn(log, 7, b"x" * 60, 2 + i)  # 8..13 (rolls segments)
    end_txn(log, 7, commit=False)  # 14
    txn(log, 8, b"c8b", 1)  # 15
    end_txn(log, 8, commit=True)  # 16
    txn(log, 9, b"open")  # 17: never closed
    produce(log, [b"p18"])  # 18
    return log


def test_create_cuts_at_the_last_stable_offset_and_lists_the_txn_indexes(
    root: Path,
) -> None:
    """With a transaction open, the snapshot ends at the last stable offset; its
    meta.json records the cut and every .txnindex with size and crc32c."""
    src = build_source(root / "src")
    assert src.last_stable_offset(src.log_end_offset) == 17
    s = snap(src, root, "100")
    assert s.last_offset == 16
    assert s.meta.last_stable_offset == 17
    assert s.meta.txn_indexes is not None
    listed = {i.file: i for i in s.meta.txn_indexes}
    assert len(listed) == 2  # the two aborts sit in two segments
    for name, idx in listed.items():
        data = Path(s.path, name).read_bytes()
        assert idx.size == len(data)
        assert name.endswith(".txnindex")
    raw = json.loads(Path(s.path, "meta.json").read_bytes())
    assert raw["last_stable_offset"] == 17
    assert {i["file"] for i in raw["txn_indexes"]} == set(listed)
    src.close()


def test_create_never_splits_a_transaction_whose_marker_is_past_the_lso(
    root: Path,
) -> None:
    """A transaction that started below the LSO but ends above it is left out whole:
    the cut moves back to where no transaction is open."""
    log = open_log(root / "src", SEGMENT)
    produce(log, [b"p0", b"p1"])  # 0, 1
    txn(log, 7, b"a")  # 2
    txn(log, 8, b"b")  # 3: stays open (LSO 3)
    end_txn(log, 7, commit=False)  # 4: abort above the LSO
    assert log.last_stable_offset(log.log_end_offset) == 3
    s = snap(log, root, "101")
    assert (s.last_offset, s.meta.last_stable_offset) == (1, 2)
    assert s.meta.txn_indexes == ()
    log.close()


def test_create_with_only_an_open_transaction_is_empty(root: Path) -> None:
    """A partition whose first batch belongs to an open transaction has nothing to
    snapshot yet."""
    log = open_log(root / "src", SEGMENT)
    txn(log, 7, b"a")
    with pytest.raises(SnapshotInvalid) as err:
        snap(log, root, "102")
    assert err.value.reason == "empty"
    log.close()


def _restored(root: Path, s: Snapshot, how: str) -> PartitionLog:
    dst = open_log(root / f"dst-{how}", SEGMENT)
    if how == "append":
        assert ingest(dst, s, root) is Status.APPLIED
    else:
        staging, _ = stage(dst, s, root)
        dst.adopt(staging)
        dst.sync()
    return dst


@pytest.mark.parametrize("how", ["append", "adopt"])
def test_restore_answers_read_committed_as_the_source(root: Path, how: str) -> None:
    """A partition restored from the snapshot (appended, or staged and adopted) has
    the source's records, aborted-transaction answers and last stable offset, also
    after a clean or crashed restart; no transaction is open in it."""
    src = build_source(root / "src")
    s = snap(src, root, "103")
    cut = s.meta.last_stable_offset
    assert cut is not None
    dst = _restored(root, s, how)
    assert dst.open_transactions() == {}
    assert dst.last_stable_offset(dst.log_end_offset) == cut
    expected = answers(src, cut)
    assert answers(dst, cut) == expected
    assert values_of(dst) == [v for v in values_of(src) if v[0] < cut]
    for clean in (True, False):
        dst.close(clean=clean)
        dst = open_log(root / f"dst-{how}", SEGMENT)
        assert answers(dst, cut) == expected
        assert dst.open_transactions() == {}
    dst.close()
    src.close()


def test_incremental_snapshots_carry_their_own_aborts(root: Path) -> None:
    """A chain of snapshots cut at stable points restores the whole index."""
    src = open_log(root / "src", SEGMENT)
    produce(src, [b"p0"])
    txn(src, 7, b"a")
    end_txn(src, 7, commit=False)  # 2
    first = snap(src, root, "104")
    txn(src, 7, b"b", 1)  # 3
    produce(src, [b"p4"])
    end_txn(src, 7, commit=False)  # 5
    second = snap(src, root, "105", ancestor=first)
    assert second.base_offset == 3
    dst = open_log(root / "dst", SEGMENT)
    assert ingest(dst, first, root) is Status.APPLIED
    assert ingest(dst, second, root) is Status.APPLIED
    assert answers(dst, 6) == answers(src, 6)
    dst.close()
    src.close()


def test_a_damaged_txnindex_makes_the_snapshot_invalid(root: Path) -> None:
    """A .txnindex whose bytes differ from its crc32c, or whose entry names a
    marker outside its segment, is refused like a damaged segment."""
    src = build_source(root / "src")
    s = snap(src, root, "106")
    assert s.meta.txn_indexes
    idx = s.meta.txn_indexes[0]
    path = Path(s.path, idx.file)
    good = path.read_bytes()
    path.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    with pytest.raises(SnapshotInvalid) as err:
        inspect_snapshot(s.path, str(root.resolve()), settle_s=0)
    assert err.value.reason == "checksum-mismatch"
    # a well-formed entry whose marker lies outside the segment
    bad = struct.pack(">hqqqq", 0, 7, 0, 10**9, 10**9 + 1)
    path.write_bytes(bad)
    meta = json.loads(Path(s.path, "meta.json").read_bytes())
    for entry in meta["txn_indexes"]:
        if entry["file"] == idx.file:
            entry["size"] = len(bad)
            entry.pop("crc32c")
    Path(s.path, "meta.json").write_text(json.dumps(meta))
    with pytest.raises(SnapshotInvalid) as err:
        inspect_snapshot(s.path, str(root.resolve()), settle_s=0)
    assert err.value.reason == "bad-txn-index"
    src.close()


def test_a_snapshot_without_txn_fields_still_loads_and_restores(root: Path) -> None:
    """An older meta.json (no last_stable_offset, no txn_indexes) is accepted; its
    restore derives the aborts from the markers."""
    src = build_source(root / "src")
    s = snap(src, root, "107")
    meta = json.loads(Path(s.path, "meta.json").read_bytes())
    for idx in meta.pop("txn_indexes"):
        os.unlink(Path(s.path, idx["file"]))
    del meta["last_stable_offset"]
    Path(s.path, "meta.json").write_text(json.dumps(meta))
    old = inspect_snapshot(s.path, str(root.resolve()), settle_s=0)
    assert parse_meta(Path(s.path, "meta.json").read_bytes()).txn_indexes is None
    dst = open_log(root / "dst", SEGMENT)
    assert ingest(dst, old, root) is Status.APPLIED
    assert answers(dst, 17) == answers(src, 17)
    dst.close()
    src.close()


@pytest.mark.parametrize("how", ["append", "adopt"])
def test_restore_of_a_compacted_partition_keeps_its_index_as_it_is(
    root: Path, how: str
) -> None:
    """After compaction removed an aborted transaction's records, its index entry
    (first offset 1) is not what a replay of its marker would derive (3): the
    restored partition still answers as its source."""
    src = compacted_txn_log(root / "src")
    cleaner = LogCleaner()
    cleaner.clean(src, now_ms=NOW, force=True, upto=src.log_end_offset)
    cleaner.clean(src, now_ms=NOW + RETENTION + 1, force=True)
    assert [e.first_offset for e in src.aborted_transactions(0, 3)] == [1]
    s = snap(src, root, "108")
    assert s.meta.last_stable_offset == 9
    dst = _restored(root, s, how)
    assert answers(dst, 9) == answers(src, 9)
    assert read_committed(dst) == read_committed(src)
    dst.close()
    src.close()


@pytest.mark.parametrize(("to_offset", "last"), [(4, 1), (7, 7)])
def test_restore_to_an_offset_never_leaves_a_transaction_open(
    root: Path, to_offset: int, last: int
) -> None:
    """``snapshot restore --to-offset`` moves the cut back to where no transaction
    is open and keeps the index entries of the markers it keeps."""
    _register_commands()
    src = build_source(root / "src")
    s = snap(src, root, "109")
    data = root / "data"
    args = ["snapshot", "restore", "--from", s.path, "--data-dir", str(data)]
    args += ["--to-offset", str(to_offset)]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    [placed] = (data / "snapshots").glob("*/109")
    cut = inspect_snapshot(str(placed), str(placed.resolve()), settle_s=0)
    assert cut.last_offset == last
    assert cut.meta.last_stable_offset == last + 1
    dst = open_log(root / "dst", SEGMENT)
    assert ingest(dst, cut, root) is Status.APPLIED
    assert dst.open_transactions() == {}
    upper = last + 1
    for start in range(upper + 1):
        for end in range(start, upper + 1):
            assert dst.aborted_transactions(start, end) == src.aborted_transactions(
                start, end
            )
    dst.close()
    src.close()


def test_the_handover_to_a_leader_carries_the_txnindex(root: Path) -> None:
    """In a cluster a snapshot is streamed to the partition's leader: the files it
    sends include the .txnindex files, and the receiver accepts and verifies them."""
    src = build_source(root / "src")
    s = snap(src, root, "110")
    src.close()
    files = handover_files(s)
    names = [f.name for f in files]
    assert s.meta.txn_indexes
    assert {i.file for i in s.meta.txn_indexes} <= set(names)
    body = upload_header("t", "110", 2, files) + b"".join(
        Path(s.path, f.name).read_bytes() for f in files
    )
    (root / "data" / "snapshots").mkdir(parents=True)
    receiver = Receiver(str(root / "data" / "snapshots"), str(root.resolve()))
    answer = anyio.run(receive_snapshot, receiver, Body(body))
    assert answer == {"path": "t/110", "status": "received"}
    landed = root / "data" / "snapshots" / "t" / "110"
    got = inspect_snapshot(str(landed), str(root.resolve()), settle_s=0)
    assert got.meta.txn_indexes == s.meta.txn_indexes
    for name in names:
        assert Path(landed, name).read_bytes() == Path(s.path, name).read_bytes()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(ops=ops_strategy, rounds=st.integers(0, 2))
def test_any_restore_answers_as_its_source(ops: list[Op], rounds: int) -> None:
    """Random interleavings of plain and transactional batches, compacted 0 to 2
    times, snapshot and restore to a partition with the source's aborted-transaction
    answers and read_committed records below the cut, and no open transaction."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "snapshots").mkdir()
        src = compacted_log(root / "src")
        build(src, ops)
        for n in range(rounds):
            LogCleaner().clean(
                src, now_ms=NOW + n * 2 * RETENTION, force=True, upto=src.log_end_offset
            )
        stable = src.stable_end(src.log_start_offset, src.log_end_offset)
        assert stable <= src.last_stable_offset(src.log_end_offset)
        start = src.log_start_offset
        below = src.read(start, 1 << 20, upper_bound=stable).buffers
        if stable == start or not below:  # an open transaction first, or nothing
            with pytest.raises(SnapshotInvalid):
                snap(src, root, "111")
            src.close()
            return
        s = snap(src, root, "111")
        cut = s.meta.last_stable_offset
        assert cut is not None
        assert cut <= stable
        event(f"aborts in the snapshot: {bool(s.meta.txn_indexes)}")
        dst = open_log(root / "dst", SEGMENT)
        assert ingest(dst, s, root) is Status.APPLIED
        assert dst.open_transactions() == {}
        assert answers(dst, cut) == {
            k: src.aborted_transactions(*k) for k in answers(dst, cut)
        }
        assert read_committed(dst) == [r for r in read_committed(src) if r[0] < cut]
        dst.close()
        src.close()
