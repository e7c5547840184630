"""Recovery after unclean stops: torn tails, corrupt batches, damaged indexes, leftovers."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from protocol.records import iter_batches, verify_batch
from storage.config import TopicConfig
from storage.fileops import FileOps
from storage.log_manager import LogManager
from storage.partition_log import PartitionLog

MakeBatch = Callable[..., bytes]


def open_log(path: Path, *, clean: bool = False, **configs: str) -> PartitionLog:
    return _open(path, clean, configs)


def _open(path: Path, clean: bool, configs: dict[str, str]) -> PartitionLog:
    config = TopicConfig.from_overrides(
        {k.replace("_", "."): v for k, v in configs.items()}
    )
    return PartitionLog.open(
        str(path), topic="t", partition=0, config=config, fileops=FileOps(), clean=clean
    )


def write_log(
    path: Path, make_batch: MakeBatch, count: int, **configs: str
) -> list[int]:
    """Append ``count`` 2-record batches, crash (unclean close); return batch ends."""
    log = _open(path, False, configs)
    for _ in range(count):
        log.append(make_batch(2), leader_epoch=1)
    ends = [s.size for s in log.segments()]
    log.close(clean=False)
    return ends


def read_all(log: PartitionLog) -> bytes:
    out = b""
    offset = log.log_start_offset
    while offset < log.log_end_offset:
        result = log.read(offset, 1 << 20)
        out += b"".join(bytes(b) for b in result.buffers)
        offset = result.next_offset
    return out


def test_torn_write_at_every_byte_of_last_batch_is_cut(
    tmp_path: Path, make_batch: MakeBatch
) -> None:
    """Whatever prefix of the last batch reached disk, recovery keeps exactly the
    batches before it and serves nothing torn."""
    base = tmp_path / "base"
    write_log(base, make_batch, 3)
    data = (base / "00000000000000000000.log").read_bytes()
    last_pos = [p for p, _ in iter_batches(data)][-1]
    for cut in range(last_pos, len(data)):
        part = tmp_path / f"cut{cut}"
        part.mkdir()
        (part / "00000000000000000000.log").write_bytes(data[:cut])
        log = open_log(part)
        assert log.log_end_offset == 4
        assert read_all(log) == data[:last_pos]
        assert os.path.getsize(part / "00000000000000000000.log") == last_pos
        report = log.recovery
        assert report is not None
        assert report.truncated == (cut > last_pos)
        log.append(make_batch(1), leader_epoch=1)
        assert log.log_end_offset == 5
        log.close()


def test_corrupt_crc_in_middle_of_active_segment_truncates_there(
    tmp_path: Path, make_batch: MakeBatch
) -> None:
    """A flipped byte mid-segment cuts the log before the damaged batch."""
    write_log(tmp_path, make_batch, 10)
    path = tmp_path / "00000000000000000000.log"
    data = bytearray(path.read_bytes())
    positions = [p for p, _ in iter_batches(bytes(data))]
    data[positions[5] + 70] ^= 0x55
    path.write_bytes(bytes(data))
    log = open_log(tmp_path)
    assert log.log_end_offset == 10
    assert log.recovery is not None
    assert log.recovery.truncated
    assert "crc" in (log.recovery.segments[-1].reason or "")
    for pos, _ in iter_batches(read_all(log)):
        verify_batch(read_all(log), pos)
    log.close()


def test_clean_close_trusts_tail_but_unclean_rescans(
    tmp_path: Path, make_batch: MakeBatch
) -> None:
    """After a clean close the tail is trusted; garbage after an unclean stop is cut."""
    log = open_log(tmp_path)
    for _ in range(4):
        log.append(make_batch(2), leader_epoch=0)
    log.close(clean=True)
    log = open_log(tmp_path, clean=True)
    assert log.recovery is not None
    assert not log.recovery.segments[-1].scanned
    log.close(clean=True)
    with open(tmp_path / "00000000000000000000.log", "ab") as f:
        f.write(b"\x00" * 100)
    log = open_log(tmp_path, clean=False)
    assert log.log_end_offset == 8
    assert log.recovery is not None
    assert log.recovery.segments[-1].truncated_bytes == 100
    log.close()


@pytest.mark.parametrize("damage", ["delete", "garbage", "truncate", "wrong", "empty"])
def test_damaged_index_files_are_rebuilt(
    tmp_path: Path, make_batch: MakeBatch, damage: str
) -> None:
    """Missing or corrupt .index/.timeindex files of closed segments are rebuilt."""
    log = open_log(tmp_path, segment_bytes="600", index_interval_bytes="100")
    for i in range(20):
        log.append(make_batch(2, ts=1000 * i), leader_epoch=0)
    expected = read_all(log)
    log.close(clean=True)
    index = tmp_path / "00000000000000000000.index"
    tindex = tmp_path / "00000000000000000000.timeindex"
    assert index.stat().st_size > 0
    if damage == "delete":
        index.unlink()
        tindex.unlink()
    elif damage == "garbage":
        index.write_bytes(b"\xff" * 24)
    elif damage == "empty":  # power loss before the index pages were written back
        index.write_bytes(b"")
        tindex.write_bytes(b"")
    elif damage == "truncate":
        index.write_bytes(index.read_bytes()[:5])
    else:
        raw = bytearray(index.read_bytes())
        raw[3] += 1  # first entry points at the wrong offset
        index.write_bytes(bytes(raw[:8]))
    log = open_log(
        tmp_path, clean=True, segment_bytes="600", index_interval_bytes="100"
    )
    assert log.recovery is not None
    assert log.recovery.segments[0].index_rebuilt
    assert read_all(log) == expected
    for offset in range(40):
        result = log.read(offset, 1)
        assert result.first_offset <= offset < result.next_offset
    assert log.offset_for_timestamp(5000) == (10, 5000)
    log.close(clean=True)
    assert index.stat().st_size > 0


def test_stray_temp_files_are_removed(tmp_path: Path, make_batch: MakeBatch) -> None:
    """Leftover .tmp / .deleted files and orphan indexes are removed on open."""
    write_log(tmp_path, make_batch, 2)
    (tmp_path / "checkpoint.json.tmp").write_bytes(b"{")
    (tmp_path / "00000000000000000099.index").write_bytes(b"")
    (tmp_path / "00000000000000000000.log.deleted").write_bytes(b"x")
    log = open_log(tmp_path)
    assert log.recovery is not None
    assert set(log.recovery.removed_files) == {
        "checkpoint.json.tmp",
        "00000000000000000099.index",
        "00000000000000000000.log.deleted",
    }
    assert log.log_end_offset == 4
    log.close()


def test_non_contiguous_later_segment_is_dropped(
    tmp_path: Path, make_batch: MakeBatch
) -> None:
    """If a cut leaves a gap before the next segment, later segments are dropped."""
    write_log(tmp_path, make_batch, 20, segment_bytes="300")
    names = sorted(n for n in os.listdir(tmp_path) if n.endswith(".log"))
    assert len(names) >= 3
    first = tmp_path / names[0]
    first.write_bytes(first.read_bytes()[:-10])
    (tmp_path / "checkpoint.json").write_text(
        json.dumps({"version": 1, "recovery_point": 0, "log_start_offset": 0})
    )
    log = open_log(tmp_path, segment_bytes="300")
    assert log.recovery is not None
    assert len(log.recovery.removed_segments) == len(names) - 1
    assert len(log.segments()) == 1
    assert log.log_end_offset == log.segments()[0].last_offset + 1
    log.close()


def test_stale_tmp_manifest_and_unfinished_create_are_cleaned(
    tmp_path: Path,
) -> None:
    """A stale topic.json.tmp is ignored and removed; a topic dir without a manifest
    (create interrupted) is removed; the clean-shutdown marker is honoured."""
    lm = LogManager(tmp_path)
    meta = lm.create_topic("orders", 2, {"retention.ms": "1000"})
    lm.close()
    assert (tmp_path / ".clean_shutdown").exists()
    topic_dir = tmp_path / "kafka" / "orders"
    (topic_dir / "topic.json.tmp").write_text('{"name": "orders", "partition_co')
    half = tmp_path / "kafka" / "half"
    (half / "0").mkdir(parents=True)
    (tmp_path / "kafka" / "gone~abc.deleting").mkdir()
    lm = LogManager(tmp_path)
    assert lm.clean_start
    assert not (tmp_path / ".clean_shutdown").exists()
    assert [t.name for t in lm.topics()] == ["orders"]
    again = lm.topic("orders")
    assert again.topic_id == meta.topic_id
    assert again.config.retention_ms == 1000
    assert not (topic_dir / "topic.json.tmp").exists()
    assert not half.exists()
    assert lm.recovery_report()
    lm.close(clean=False)
    assert not (tmp_path / ".clean_shutdown").exists()


def test_damaged_tail_is_cut_even_after_a_clean_shutdown(
    tmp_path: Path, make_batch: MakeBatch
) -> None:
    """A tail that does not check out is verified and cut despite the clean marker."""
    log = open_log(tmp_path)
    for _ in range(4):
        log.append(make_batch(2), leader_epoch=0)
    log.close(clean=True)
    path = tmp_path / "00000000000000000000.log"
    whole = path.read_bytes()
    path.write_bytes(whole + whole[:70])  # a torn copy of the first batch
    log = open_log(tmp_path, clean=True)
    assert log.log_end_offset == 8
    assert log.recovery is not None
    assert log.recovery.segments[-1].scanned
    assert log.recovery.segments[-1].truncated_bytes == 70
    log.append(make_batch(1), leader_epoch=0)
    log.close(clean=True)
    log = open_log(tmp_path, clean=True)
    assert log.log_end_offset == 9
    log.close()
