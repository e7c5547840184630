"""The log cleaner on one partition log: what it keeps, when it runs, crash leftovers."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from protocol.record_builder import RecordInput, build_batch, iter_records
from protocol.records import iter_batches
from storage.cleaner_swap import cleaned_path, swap_path
from storage.config import TopicConfig
from storage.fileops import FileOps
from storage.log_cleaner import LogCleaner, Throttler
from storage.partition_log import PartitionLog
from storage.producer_state import PartitionProducerState

NOW = 1_000_000


def open_log(path: Path, **overrides: str) -> PartitionLog:
    config = TopicConfig.from_overrides(
        {"cleanup.policy": "compact", "segment.bytes": "600", **overrides}
    )
    return PartitionLog.open(
        str(path), topic="t", partition=0, config=config, fileops=FileOps(), clean=False
    )


def put(
    log: PartitionLog, key: bytes, value: bytes | None, *, ts: int = NOW, **pid: int
) -> int:
    batch = build_batch([RecordInput(key=key, value=value, timestamp=ts)], **pid)
    return log.append(batch, leader_epoch=0, now_ms=ts).base_offset


def records(
    log: PartitionLog, start: int = 0
) -> list[tuple[int, bytes | None, bytes | None]]:
    out = []
    offset = max(start, log.log_start_offset)
    while offset < log.log_end_offset:
        result = log.read(offset, 1 << 20)
        if not result.buffers:
            break
        for buf in result.buffers:
            for pos, _ in iter_batches(buf):
                out.extend((r.offset, r.key, r.value) for r in iter_records(buf, pos))
        offset = result.next_offset
    return out


def headers(log: PartitionLog) -> list[tuple[int, int, int]]:
    """(base offset, last offset, record count) of every batch."""
    out = []
    offset = log.log_start_offset
    while offset < log.log_end_offset:
        result = log.read(offset, 1 << 20)
        if not result.buffers:
            break
        for buf in result.buffers:
            out.extend(
                (h.base_offset, h.last_offset, h.record_count)
                for _, h in iter_batches(buf)
            )
        offset = result.next_offset
    return out


def fill(
    log: PartitionLog, rounds: int, keys: int = 5
) -> dict[bytes, tuple[int, bytes]]:
    latest = {}
    for i in range(rounds):
        key = b"k%d" % (i % keys)
        value = b"v%d" % i
        latest[key] = (put(log, key, value), value)
    log.roll()
    log.sync()
    return latest


def test_cleaning_keeps_the_latest_value_of_each_key_at_its_offset(
    tmp_path: Path,
) -> None:
    """After a round, only the latest record of each key remains, at its original
    offset, small cleaned segments are grouped, and it all survives a reopen."""
    log = open_log(tmp_path)
    latest = fill(log, 60)
    before = len(log.segments())
    end = log.log_end_offset
    cleaner = LogCleaner()
    result = cleaner.clean(log, now_ms=NOW)
    assert result.cleaned
    assert result.first_dirty_offset == end
    assert result.stats.records_removed == 55
    expected = sorted((o, k, v) for k, (o, v) in latest.items())
    assert records(log) == expected
    # groups go by the original sizes (Kafka): the next round merges small ones
    assert cleaner.clean(log, now_ms=NOW, force=True).cleaned
    assert records(log) == expected
    assert len(log.segments()) < before
    assert log.log_end_offset == end
    log.close()
    log = open_log(tmp_path)
    assert records(log) == expected
    assert log.log_end_offset == end
    assert put(log, b"k0", b"new") == end  # offsets are never reused
    log.close()


def test_a_round_waits_for_the_dirty_ratio_or_the_max_lag(tmp_path: Path) -> None:
    """Below min.cleanable.dirty.ratio nothing runs; max.compaction.lag.ms forces a
    round; the active segment and undurable data are never cleaned."""
    log = open_log(tmp_path, **{"max.compaction.lag.ms": "60000"})
    cleaner = LogCleaner()
    fill(log, 30)
    assert cleaner.clean(log, now_ms=NOW).cleaned
    fill(log, 3)  # a little dirty data after a lot of clean data
    status = cleaner.status(log)
    assert not cleaner.clean(log, now_ms=NOW).cleaned
    assert 0 < status.dirty_ratio < 0.5
    assert cleaner.clean(log, now_ms=NOW + 61_000).cleaned  # the lag forces it
    put(log, b"k0", b"active")  # in the active segment: never cleaned
    put(log, b"k0", b"active2")
    cleaner.clean(log, now_ms=NOW, force=True)
    assert [v for _, k, v in records(log) if k == b"k0"][-2:] == [b"active", b"active2"]
    assert cleaner.status(log).first_dirty_offset == log.segments()[-1].base_offset
    log.close()
    # the status survives a restart (cleaner-checkpoint.json)
    log = open_log(tmp_path)
    assert LogCleaner().status(log).first_dirty_offset == log.segments()[-1].base_offset
    log.close()


def test_tombstones_stay_for_delete_retention_then_go(tmp_path: Path) -> None:
    """A tombstone hides older values at once and is itself removed once
    delete.retention.ms has passed since the round that first cleaned it."""
    log = open_log(tmp_path, **{"delete.retention.ms": "1000"})
    cleaner = LogCleaner()
    put(log, b"a", b"1")
    put(log, b"b", b"1")
    tomb = put(log, b"a", None)
    log.roll()
    log.sync()
    cleaner.clean(log, now_ms=NOW, force=True)
    assert records(log) == [(1, b"b", b"1"), (tomb, b"a", None)]
    cleaner.clean(log, now_ms=NOW + 999, force=True)
    assert (tomb, b"a", None) in records(log)
    assert cleaner.status(log).next_delete_horizon == NOW + 1000
    cleaner.clean(log, now_ms=NOW + 1000)  # due by its horizon alone
    assert records(log) == [(1, b"b", b"1")]
    assert cleaner.status(log).tombstones_removed == 1
    log.close()


def test_a_producers_last_batch_is_kept_empty_for_its_sequence(tmp_path: Path) -> None:
    """An idempotent producer's newest batch keeps its header when cleaning removes
    its records, so its last sequence survives a restart."""
    log = open_log(tmp_path)
    ident = {"producer_id": 7, "producer_epoch": 0}
    put(log, b"x", b"1", base_sequence=0, **ident)
    put(log, b"x", b"2", base_sequence=1, **ident)
    put(log, b"x", b"3")  # a plain producer overwrites the key
    log.roll()
    log.sync()
    LogCleaner().clean(log, now_ms=NOW, force=True)
    assert records(log) == [(2, b"x", b"3")]
    assert headers(log) == [(1, 1, 0), (2, 2, 1)]  # batch 0 gone, batch 1 emptied
    log.close()
    log = open_log(tmp_path)
    state = PartitionProducerState()
    state.load(h for _, h in iter_batches(log.read(0, 1 << 20).buffers[0]))
    entry = state.entry(7)
    assert entry is not None
    assert entry.last_seq == 1
    log.close()


def test_an_idle_marker_is_kept_until_its_delete_horizon(tmp_path: Path) -> None:
    """A transaction marker with no data of its transaction left survives the round
    that finds it idle (it gets its delete horizon then; tests/storage/
    test_cleaner_txns.py follows it further)."""
    log = open_log(tmp_path)
    put(log, b"a", b"1")
    log.append_marker(3, 0, True, 0, leader_epoch=0)
    put(log, b"a", b"2")
    log.roll()
    log.sync()
    LogCleaner().clean(log, now_ms=NOW, force=True)
    assert [b for b, _, _ in headers(log)] == [1, 2]
    log.close()


def test_throttler_caps_the_rate(tmp_path: Path) -> None:
    """The io cap turns bytes into sleeps (a fake clock)."""
    slept: list[float] = []
    clock = [0.0]
    throttle = Throttler(1000.0, clock=lambda: clock[0], sleep=slept.append)
    for _ in range(10):
        throttle.tick(100)
    assert abs(sum(slept) - 1.0) < 1e-6


def test_recovery_drops_cleaned_files_and_finishes_swaps(tmp_path: Path) -> None:
    """A crash while writing a cleaned segment leaves a .cleaned file (deleted at
    start); one during the swap leaves a .swap file, which recovery puts in place
    of the segments it covers."""
    log = open_log(tmp_path)
    latest = fill(log, 60)
    end = log.log_end_offset
    expected = sorted((o, k, v) for k, (o, v) in latest.items())
    bases = [s.base_offset for s in log.segments()]
    full = records(log)
    cleaned_copy = tmp_path.parent / (tmp_path.name + "-cleaned")
    shutil.copytree(tmp_path, cleaned_copy)
    other = open_log(cleaned_copy)
    LogCleaner().clean(other, now_ms=NOW)
    assert records(other) == expected
    first = other.segments()[0]
    merged = [b for b in bases if first.base_offset < b <= first.last_offset]
    other.close()
    log.close()
    # 1. a .cleaned leftover: the log is as it was
    with open(cleaned_path(str(tmp_path), 0), "wb") as f:
        f.write(b"partial")
    log = open_log(tmp_path)
    assert records(log) == full
    assert not os.path.exists(cleaned_path(str(tmp_path), 0))
    log.close()
    # 2. a .swap of the first cleaned group, the old segments still there (crash
    #    after the rename to .swap) or partly unlinked: recovery finishes it
    for unlinked in (0, len(merged)):
        shutil.copy(
            os.path.join(cleaned_copy, first.path.rsplit("/", 1)[1]),
            swap_path(str(tmp_path), 0),
        )
        for base in merged[:unlinked]:
            os.unlink(os.path.join(tmp_path, f"{base:020d}.log"))
        log = open_log(tmp_path)
        assert not os.path.exists(swap_path(str(tmp_path), 0))
        got = records(log)
        assert log.log_end_offset == end
        for key, (offset, value) in latest.items():
            assert (offset, key, value) in got
        assert [o for o, _, _ in got] == sorted({o for o, _, _ in got})
        log.close()


def test_reads_bounded_inside_a_gap_stop_at_the_bound(tmp_path: Path) -> None:
    """A read whose upper bound falls in the gap a cleaned segment ends with returns
    that segment's batches and stops at the bound."""
    log = open_log(tmp_path, **{"segment.bytes": "250"})  # two groups, not merged
    put(log, b"a", b"1")
    put(log, b"b", b"1")
    put(log, b"a", b"2")  # offset 2: removed, the segment then ends in a gap
    log.roll()
    put(log, b"a", b"3")
    log.roll()
    log.sync()
    assert LogCleaner().clean(log, now_ms=NOW, force=True).cleaned
    assert records(log) == [(1, b"b", b"1"), (3, b"a", b"3")]
    result = log.read(0, 1 << 20, upper_bound=2)
    assert result.first_offset == 1
    assert result.next_offset == 2
    assert log.read(2, 1 << 20).first_offset == 3
    log.close()


def test_a_full_offset_map_cleans_up_to_where_it_filled(tmp_path: Path) -> None:
    """With more keys than the offset map holds, a round cleans the segments it
    mapped and the next round goes on from there."""
    log = open_log(tmp_path, **{"segment.bytes": "250"})
    for i in range(12):
        put(log, b"k%d" % i, b"1")
    log.roll()
    log.sync()
    cleaner = LogCleaner(max_map_keys=3)
    first = cleaner.clean(log, now_ms=NOW, force=True)
    assert first.cleaned
    assert 0 < first.first_dirty_offset < 12
    second = cleaner.clean(log, now_ms=NOW, force=True)
    assert second.first_dirty_offset > first.first_dirty_offset
    assert [k for _, k, _ in records(log)] == [b"k%d" % i for i in range(12)]
    log.close()


def test_retention_applies_only_with_delete_in_the_policy(tmp_path: Path) -> None:
    """cleanup.policy=compact keeps old segments; compact,delete also expires them."""
    for policy, kept in (("compact", 3), ("compact,delete", 1)):
        log = open_log(
            tmp_path / policy, **{"cleanup.policy": policy, "retention.ms": "1000"}
        )
        for _ in range(2):
            put(log, b"a", b"1", ts=NOW)
            log.roll()
        log.apply_retention(now_ms=NOW + 10_000)
        assert len(log.segments()) == kept
        log.close()


def test_max_compaction_lag_rolls_the_active_segment(tmp_path: Path) -> None:
    """A compacted topic's active segment rolls once it is max.compaction.lag.ms
    old (Kafka's LogConfig.maxSegmentMs), so the cleaner can take its records in
    time; a delete topic keeps segment.ms."""
    log = open_log(
        tmp_path, **{"segment.bytes": "1048576", "max.compaction.lag.ms": "1000"}
    )
    put(log, b"a", b"1", ts=NOW)
    put(log, b"a", b"2", ts=NOW + 500)
    put(log, b"a", b"3", ts=NOW + 1000)
    assert [s.base_offset for s in log.segments()] == [0, 2]
    log.close()
    plain = open_log(
        tmp_path / "plain",
        **{
            "cleanup.policy": "delete",
            "segment.bytes": "1048576",
            "max.compaction.lag.ms": "1000",
        },
    )
    put(plain, b"a", b"1", ts=NOW)
    put(plain, b"a", b"2", ts=NOW + 5000)
    assert [s.base_offset for s in plain.segments()] == [0]
    plain.close()
