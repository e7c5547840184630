"""PartitionLog behaviour: append validation, reads, rolling, retention, offsets."""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from protocol.record_builder import iter_records
from protocol.records import iter_batches, read_header, verify_batch
from storage.config import TopicConfig
from storage.errors import (
    InvalidBatch,
    MessageTooLarge,
    OffsetMismatch,
    OffsetOutOfRange,
)
from storage.fileops import FileOps
from storage.partition_log import PartitionLog

MakeBatch = Callable[..., bytes]


def open_log(path: Path, **configs: str) -> PartitionLog:
    config = TopicConfig.from_overrides(
        {k.replace("_", "."): v for k, v in configs.items()}
    )
    return PartitionLog.open(
        str(path), topic="t", partition=0, config=config, fileops=FileOps(), clean=False
    )


def offsets_of(data: bytes) -> list[int]:
    return [h.base_offset for _, h in iter_batches(data)]


def test_append_assigns_dense_offsets_and_stamps_epoch(
    tmp_path: Path, make_batch: MakeBatch
) -> None:
    """Appends get consecutive offsets and carry the leader epoch, CRCs intact."""
    log = open_log(tmp_path)
    first = log.append(make_batch(3), leader_epoch=5)
    second = log.append(make_batch(2), leader_epoch=5)
    assert (first.base_offset, first.last_offset) == (0, 2)
    assert (second.base_offset, second.last_offset) == (3, 4)
    assert first.log_append_time_ms == -1
    assert log.log_end_offset == 5
    data = bytes(log.read(0, 1 << 20).buffers[0])
    headers = [h for _, h in iter_batches(data)]
    assert [h.base_offset for h in headers] == [0, 3]
    assert all(h.partition_leader_epoch == 5 for h in headers)
    verify_batch(data, 0)
    assert [r.offset for r in iter_records(data[headers[0].size :])] == [3, 4]
    log.close()


def test_multi_batch_payload_is_all_or_nothing(
    tmp_path: Path, make_batch: MakeBatch
) -> None:
    """A payload with one corrupt batch is rejected whole; nothing reaches disk."""
    log = open_log(tmp_path)
    bad = bytearray(make_batch(2))
    bad[-1] ^= 0xFF
    with pytest.raises(InvalidBatch, match="crc"):
        log.append(make_batch(1) + bytes(bad), leader_epoch=0)
    assert log.log_end_offset == 0
    assert os.path.getsize(tmp_path / "00000000000000000000.log") == 0
    with pytest.raises(InvalidBatch):
        log.append(make_batch(1)[:-3], leader_epoch=0)
    with pytest.raises(InvalidBatch):
        log.append(b"", leader_epoch=0)
    result = log.append(make_batch(1) + make_batch(2), leader_epoch=0)
    assert (result.base_offset, result.last_offset) == (0, 2)
    log.close()


def test_max_message_bytes_is_enforced_per_batch(
    tmp_path: Path, make_batch: MakeBatch
) -> None:
    """A batch larger than max.message.bytes raises MessageTooLarge."""
    log = open_log(tmp_path, max_message_bytes="200")
    log.append(make_batch(1), leader_epoch=0)
    with pytest.raises(MessageTooLarge):
        log.append(make_batch(1, value=b"x" * 300), leader_epoch=0)
    assert log.log_end_offset == 1
    log.close()


def test_log_append_time_stamps_max_timestamp_with_valid_crc(
    tmp_path: Path, make_batch: MakeBatch
) -> None:
    """LogAppendTime topics get the broker time in max_timestamp and a fresh CRC."""
    log = open_log(tmp_path, message_timestamp_type="LogAppendTime")
    result = log.append(make_batch(2, ts=5), leader_epoch=0, now_ms=123_456)
    assert result.log_append_time_ms == 123_456
    data = bytes(log.read(0, 1000).buffers[0])
    header = verify_batch(data)
    assert header.max_timestamp == 123_456
    assert header.timestamp_type == 1
    assert log.max_timestamp_offset() == (0, 123_456)  # every record has it
    log.close()


def test_read_returns_whole_batches_within_bounds(
    tmp_path: Path, make_batch: MakeBatch
) -> None:
    """Reads start at the batch holding the offset, respect max_bytes (but return at
    least one batch) and never pass upper_bound."""
    log = open_log(tmp_path, index_interval_bytes="100")
    for _ in range(20):
        log.append(make_batch(3), leader_epoch=0)
    size = read_header(bytes(log.read(0, 1).buffers[0])).size
    one = log.read(4, 1)
    assert one.first_offset == 3
    assert offsets_of(bytes(one.buffers[0])) == [3]
    assert one.next_offset == 6
    three = log.read(4, 3 * size + size // 2)
    assert offsets_of(bytes(three.buffers[0])) == [3, 6, 9]
    assert three.size == 3 * size
    capped = log.read(0, 1 << 20, upper_bound=9)
    assert offsets_of(bytes(capped.buffers[0])) == [0, 3, 6]
    assert capped.next_offset == 9
    empty = log.read(60, 100)
    assert empty.size == 0
    assert empty.buffers == []
    assert log.read(9, 100, upper_bound=9).size == 0
    with pytest.raises(OffsetOutOfRange):
        log.read(61, 100)
    with pytest.raises(OffsetOutOfRange):
        log.read(-1, 100)
    everything = log.read(0, 1 << 30)
    assert offsets_of(bytes(everything.buffers[0])) == list(range(0, 60, 3))
    log.close()


def test_read_without_min_one_returns_only_batches_that_fit(
    tmp_path: Path, make_batch: MakeBatch
) -> None:
    """With min_one=False a read returns only whole batches within max_bytes: nothing
    when the first batch is larger (a later partition of a Fetch, KIP-74)."""
    log = open_log(tmp_path)
    for _ in range(4):
        log.append(make_batch(3), leader_epoch=0)
    size = read_header(bytes(log.read(0, 1).buffers[0])).size
    nothing = log.read(3, size - 1, min_one=False)
    assert (nothing.size, nothing.buffers) == (0, [])
    assert nothing.next_offset == 3
    one = log.read(3, size, min_one=False)
    assert offsets_of(bytes(one.buffers[0])) == [3]
    two = log.read(0, 3 * size - 1, min_one=False)
    assert offsets_of(bytes(two.buffers[0])) == [0, 3]
    assert log.read(3, size - 1).size == size  # the default still returns one
    log.close()


def test_segments_roll_on_size_and_reads_cross_them(
    tmp_path: Path, make_batch: MakeBatch
) -> None:
    """segment.bytes rolls segments named by base offset; reads find every offset."""
    log = open_log(tmp_path, segment_bytes="500")
    for _ in range(30):
        log.append(make_batch(2), leader_epoch=0)
    segments = log.segments()
    assert len(segments) > 3
    assert all(s.size <= 500 for s in segments[:-1])
    assert [s.base_offset for s in segments[1:]] == [
        s.last_offset + 1 for s in segments[:-1]
    ]
    for offset in range(60):
        result = log.read(offset, 1)
        assert result.first_offset <= offset < result.next_offset
    names = sorted(os.listdir(tmp_path))
    assert f"{segments[1].base_offset:020d}.log" in names
    assert f"{segments[0].base_offset:020d}.index" in names
    log.close()


def test_segment_ms_rolls_old_segments(tmp_path: Path, make_batch: MakeBatch) -> None:
    """An append after segment.ms has elapsed starts a new segment."""
    log = open_log(tmp_path, segment_ms="1000")
    log.append(make_batch(1), leader_epoch=0, now_ms=10_000)
    log.append(make_batch(1), leader_epoch=0, now_ms=10_500)
    log.append(make_batch(1), leader_epoch=0, now_ms=11_000)
    assert [s.base_offset for s in log.segments()] == [0, 2]
    log.close()


def test_retention_by_bytes_and_time_deletes_closed_segments_only(
    tmp_path: Path, make_batch: MakeBatch
) -> None:
    """Retention drops whole closed segments, oldest first, never the active one."""
    log = open_log(tmp_path, segment_bytes="300", retention_bytes="700")
    for i in range(20):
        log.append(make_batch(1, ts=i * 1000), leader_epoch=0)
    before = log.segments()
    removed = log.apply_retention(now_ms=0)
    assert removed
    after = log.segments()
    assert log.size_bytes - after[0].size < 700 <= log.size_bytes or len(after) == 1
    assert log.log_start_offset == after[0].base_offset
    assert after[-1] == before[-1]
    with pytest.raises(OffsetOutOfRange):
        log.read(0, 100)
    log.config = TopicConfig.from_overrides({"retention.ms": "10"})
    log.apply_retention(now_ms=10**12)
    assert len(log.segments()) == 1
    assert log.log_start_offset == log.segments()[0].base_offset
    assert log.read(log.log_start_offset, 10).size > 0
    log.close()


def test_delete_records_moves_log_start_and_survives_reopen(
    tmp_path: Path, make_batch: MakeBatch
) -> None:
    """DeleteRecords moves the log start, drops covered segments, and persists."""
    log = open_log(tmp_path, segment_bytes="300")
    for _ in range(10):
        log.append(make_batch(1), leader_epoch=0)
    assert log.delete_records(4) == 4
    assert log.segments()[0].base_offset <= 4
    with pytest.raises(OffsetOutOfRange):
        log.read(3, 100)
    assert log.read(4, 1).first_offset == 4
    with pytest.raises(OffsetOutOfRange):
        log.delete_records(11)
    log.close()
    log = open_log(tmp_path, segment_bytes="300")
    assert log.log_start_offset == 4
    assert log.log_end_offset == 10
    log.close()


def test_offset_for_timestamp_and_max_timestamp(
    tmp_path: Path, make_batch: MakeBatch
) -> None:
    """ListOffsets by time finds the first record at or after the timestamp, never
    below the log start; -3 finds the record with the largest timestamp."""
    log = open_log(tmp_path, segment_bytes="400", index_interval_bytes="0")
    for i in range(12):
        log.append(make_batch(2, ts=1000 * (i + 1)), leader_epoch=0)
    assert log.offset_for_timestamp(0) == (0, 1000)
    assert log.offset_for_timestamp(5001) == (9, 5001)
    assert log.offset_for_timestamp(5002) == (10, 6000)
    assert log.offset_for_timestamp(99_999) is None
    assert log.max_timestamp_offset() == (23, 12_001)
    log.close()
    log = open_log(tmp_path, segment_bytes="400", index_interval_bytes="0")
    assert log.offset_for_timestamp(5002) == (10, 6000)
    assert log.max_timestamp_offset() == (23, 12_001)
    log.delete_records(11)
    assert log.offset_for_timestamp(0) == (11, 6001)
    log.close()


def test_epoch_end_offsets_follow_kafka(tmp_path: Path, make_batch: MakeBatch) -> None:
    """OffsetForLeaderEpoch answers as Kafka's LeaderEpochFileCache does."""
    log = open_log(tmp_path)
    log.append(make_batch(2), leader_epoch=1)
    log.append(make_batch(2), leader_epoch=3)
    log.append(make_batch(2), leader_epoch=3)
    assert log.leader_epoch == 3
    assert log.epoch_end_offset(1) == (1, 2)
    assert log.epoch_end_offset(2) == (1, 2)
    assert log.epoch_end_offset(3) == (3, 6)
    assert log.epoch_end_offset(0) == (0, 0)
    assert log.epoch_end_offset(4) == (-1, -1)
    log.close()
    log = open_log(tmp_path)
    assert log.epoch_end_offset(1) == (1, 2)
    log.close()


def test_append_verbatim_keeps_offsets_and_checks_order(
    tmp_path: Path, make_batch: MakeBatch
) -> None:
    """Restores append already-offset batches verbatim, at or after the log end
    (gaps, as compaction leaves them, are kept; going back is refused)."""
    source = open_log(tmp_path / "src", segment_bytes="400")
    for epoch in range(6):
        source.append(make_batch(2), leader_epoch=epoch)
    batch = {o: bytes(source.read(o, 1).buffers[0]) for o in range(0, 12, 2)}
    dest = open_log(tmp_path / "dst", segment_bytes="400")
    dest.reset_start(4)
    assert (dest.log_start_offset, dest.log_end_offset) == (4, 4)
    result = dest.append_verbatim(batch[4] + batch[6])
    assert (result.base_offset, result.last_offset) == (4, 7)
    with pytest.raises(OffsetMismatch):
        dest.append_verbatim(batch[6])
    dest.append_verbatim(batch[8] + batch[10])
    assert dest.log_end_offset == 12
    for offset in range(4, 12, 2):
        assert bytes(dest.read(offset, 1).buffers[0]) == batch[offset]
    assert dest.epoch_end_offset(3) == (3, 8)
    with pytest.raises(OffsetMismatch):
        dest.reset_start(0)
    gap = bytearray(make_batch(1))
    struct.pack_into(">q", gap, 0, 13)
    assert dest.append_verbatim(bytes(gap)).base_offset == 13
    assert dest.log_end_offset == 14
    assert dest.read(12, 1000).first_offset == 13
    source.close()
    dest.close()
    dest = open_log(tmp_path / "dst", segment_bytes="400")
    assert (dest.log_start_offset, dest.log_end_offset) == (4, 14)
    dest.close()


def test_link_or_copy_segments_for_snapshots(
    tmp_path: Path, make_batch: MakeBatch
) -> None:
    """Closed segments are hard-linked, the cut segment copied up to a batch boundary."""
    log = open_log(tmp_path / "p", segment_bytes="400")
    for _ in range(12):
        log.append(make_batch(2), leader_epoch=0)
    end = log.log_end_offset - 2
    copied = log.link_or_copy_segments_to(str(tmp_path / "snap"), end)
    assert copied[0].linked
    assert not copied[-1].linked
    assert copied[-1].last_offset == end - 1
    joined = b"".join((tmp_path / "snap" / c.file).read_bytes() for c in copied)
    assert offsets_of(joined) == list(range(0, end, 2))
    assert os.stat(tmp_path / "snap" / copied[0].file).st_nlink == 2
    part = log.link_or_copy_segments_to(str(tmp_path / "inc"), end, start_offset=6)
    joined = b"".join((tmp_path / "inc" / c.file).read_bytes() for c in part)
    assert offsets_of(joined) == list(range(6, end, 2))
    log.close()


def test_sync_advances_durable_offset(tmp_path: Path, make_batch: MakeBatch) -> None:
    """sync() makes everything written so far durable and clears needs_sync."""
    log = open_log(tmp_path)
    flags = [log.needs_sync]
    log.append(make_batch(2), leader_epoch=0)
    flags.append(log.needs_sync)
    assert log.durable_offset == 0
    assert log.sync() == 2
    flags.append(log.needs_sync)
    assert flags == [False, True, False]
    log.close()


def test_append_of_many_batches_spans_several_pwritev_calls(
    tmp_path: Path, make_batch: MakeBatch
) -> None:
    """A payload of 700 batches (more than IOV_MAX buffers) is written whole."""
    log = open_log(tmp_path)
    payload = b"".join(make_batch(1, value=b"%d-" % i) for i in range(700))
    result = log.append(payload, leader_epoch=2)
    assert (result.base_offset, result.last_offset) == (0, 699)
    data = bytes(log.read(0, 1 << 30).buffers[0])
    assert len(data) == len(payload)
    assert offsets_of(data) == list(range(700))
    for pos, _ in iter_batches(data):
        verify_batch(data, pos)
    log.close()


def test_sync_from_another_thread_while_appending(
    tmp_path: Path, make_batch: MakeBatch
) -> None:
    """sync() and checkpoint() in a worker thread race appends and rolls safely;
    durable offsets only grow, and the log reopens intact after a crash."""
    log = open_log(tmp_path, segment_bytes="2000")
    batch = make_batch(2)
    stop = threading.Event()
    seen: list[int] = []

    def syncer() -> None:
        while not stop.is_set():
            seen.append(log.sync())
            log.checkpoint()

    worker = threading.Thread(target=syncer)
    worker.start()
    try:
        for _ in range(300):
            log.append(batch, leader_epoch=0)
    finally:
        stop.set()
        worker.join(timeout=30)
    assert seen == sorted(seen)
    assert all(d <= 600 and d % 2 == 0 for d in seen)
    assert log.sync() == 600
    assert len(log.segments()) > 5
    log.close(clean=False)
    log = open_log(tmp_path, segment_bytes="2000")
    assert log.log_end_offset == 600
    assert log.recovery is not None
    assert not log.recovery.truncated
    assert offsets_of(bytes(log.read(0, 1 << 30).buffers[0]))[:3] == [0, 2, 4]
    log.close()


def test_checkpoint_moves_the_recovery_point(
    tmp_path: Path, make_batch: MakeBatch
) -> None:
    """After checkpoint(), a crash re-scans only the segments written since."""
    log = open_log(tmp_path, segment_bytes="400")
    for _ in range(12):
        log.append(make_batch(2), leader_epoch=0)
    log.sync()
    log.checkpoint()
    log.append(make_batch(2), leader_epoch=0)
    log.close(clean=False)
    log = open_log(tmp_path, segment_bytes="400")
    assert log.recovery is not None
    scanned = [s.scanned for s in log.recovery.segments]
    assert scanned[0] is False
    assert scanned[-1] is True
    assert log.log_end_offset == 26
    log.close()


def test_sync_checkpoints_by_itself_after_the_interval(
    tmp_path: Path, make_batch: MakeBatch
) -> None:
    """sync() moves the recovery point past closed segments once the interval passed."""
    log = open_log(tmp_path, segment_bytes="400")
    log.checkpoint_interval_s = 0.0
    for _ in range(12):
        log.append(make_batch(2), leader_epoch=0)
    log.sync()
    log.close(clean=False)
    log = open_log(tmp_path, segment_bytes="400")
    assert log.recovery is not None
    assert [s.scanned for s in log.recovery.segments][:-1] == [False] * (
        len(log.recovery.segments) - 1
    )
    log.close()


class _ProbingFileOps(FileOps):
    """Real file operations; every rename and unlink first asks the log where it
    ends, as the event loop does without the log's lock while a worker thread
    adopts or truncates (the admin API's topic summary, Metadata, metrics)."""

    def __init__(self) -> None:
        self.log: PartitionLog | None = None
        self.seen: list[int] = []

    def _probe(self) -> None:
        if self.log is not None:
            self.seen.append(self.log.log_end_offset)

    def replace(self, src: str, dst: str) -> None:
        self._probe()
        super().replace(src, dst)

    def unlink(self, path: str) -> None:
        self._probe()
        super().unlink(path)


@pytest.mark.parametrize("empty_first", [True, False])
def test_the_log_end_is_readable_without_the_lock_while_segments_are_adopted(
    tmp_path: Path, make_batch: MakeBatch, empty_first: bool
) -> None:
    """A snapshot ingest adopts staged segments (replacing an empty active segment):
    a reader that takes no lock sees the old end or the new one, never an empty log."""
    staging = tmp_path / "staging"
    staged = open_log(staging)
    start = 0 if empty_first else 3
    staged.reset_start(start)
    for _ in range(4):
        staged.append(make_batch(5), leader_epoch=1, now_ms=0)
        staged.roll()
    staged.close()

    ops = _ProbingFileOps()
    log = PartitionLog.open(
        str(tmp_path / "log"),
        topic="t",
        partition=0,
        config=TopicConfig.from_overrides({}),
        fileops=ops,
        clean=False,
    )
    if not empty_first:
        log.append(make_batch(3), leader_epoch=1, now_ms=0)
    ops.log = log
    try:
        assert log.adopt(str(staging)) == start + 20
        assert ops.seen, "the adopt renamed nothing"
        assert set(ops.seen) == {start}  # the old end until the one swap
        assert log.log_end_offset == start + 20
        ops.seen.clear()
        assert log.truncate_to(start + 12) == start + 10  # cut at a batch boundary
        assert all(start + 10 <= end <= start + 20 for end in ops.seen)
        assert log.log_end_offset == start + 10
    finally:
        log.close()
