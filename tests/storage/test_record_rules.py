"""Kafka's LogValidator rules on produced batches: keys of compacted topics,
CreateTime bounds, client batch rules; the header shortcut of the bounds check."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.compression import Compression
from protocol.record_builder import RecordInput, build_batch
from protocol.records import BatchHeader, TimestampType, read_header
from storage.config import TopicConfig
from storage.errors import InvalidRecord, InvalidTimestamp
from storage.fileops import FileOps
from storage.partition_log import PartitionLog
from storage.record_rules import header_may_be_out_of_bounds, timestamp_out_of_bounds

LONG_MAX = 2**63 - 1
NOW = 1_700_000_000_000
HOUR = 3_600_000


def open_log(path: Path, **configs: str) -> PartitionLog:
    config = TopicConfig.from_overrides(configs)
    return PartitionLog.open(
        str(path), topic="t", partition=0, config=config, fileops=FileOps(), clean=False
    )


def records(*keys: bytes | None, ts: int = NOW) -> list[RecordInput]:
    return [RecordInput(key=k, value=b"v", timestamp=ts) for k in keys]


@pytest.mark.parametrize("codec", [Compression.NONE, Compression.LZ4])
def test_compacted_topic_refuses_records_without_key(
    tmp_path: Path, codec: Compression
) -> None:
    """Each keyless record of a compacted topic is named by its index in the batch;
    the batch is INVALID_RECORD with Kafka's message and nothing is written."""
    log = open_log(tmp_path, **{"cleanup.policy": "compact,delete"})
    batch = build_batch(records(b"a", None, b"c", None), compression=codec)
    with pytest.raises(InvalidRecord) as info:
        log.append(batch, leader_epoch=0, now_ms=NOW)
    assert type(info.value) is InvalidRecord
    assert [i for i, _ in info.value.record_errors] == [1, 3]
    assert info.value.record_errors[0][1] == (
        "Compacted topic cannot accept message without key in topic partition t-0."
    )
    assert str(info.value).startswith(
        "One or more records have been rejected due to 2 record errors in total"
    )
    assert log.log_end_offset == 0
    assert log.append(build_batch(records(b"a")), leader_epoch=0).base_offset == 0
    log.close()


def test_keyless_records_are_fine_on_a_delete_topic(tmp_path: Path) -> None:
    """Without compaction a record needs no key."""
    log = open_log(tmp_path)
    assert not log.config.inspects_records
    log.append(build_batch(records(None, None)), leader_epoch=0)
    assert log.log_end_offset == 2
    log.close()


def test_timestamp_out_of_bounds_is_invalid_timestamp(tmp_path: Path) -> None:
    """A CreateTime record outside [now - before, now + after] fails its batch with
    INVALID_TIMESTAMP, naming the record and the allowed range."""
    log = open_log(
        tmp_path,
        **{
            "message.timestamp.before.max.ms": str(HOUR),
            "message.timestamp.after.max.ms": "1000",
        },
    )
    late = [RecordInput(value=b"v", timestamp=t) for t in (NOW, NOW + 5000, NOW)]
    with pytest.raises(InvalidTimestamp) as info:
        log.append(build_batch(late), leader_epoch=0, now_ms=NOW)
    assert info.value.record_errors == [
        (
            1,
            f"Timestamp {NOW + 5000} of message with offset 1 is out of range. "
            f"The timestamp should be within [{NOW - HOUR}, {NOW + 1000}]",
        )
    ]
    assert str(info.value) == (
        "One or more records have been rejected due to invalid timestamp"
    )
    old = build_batch([RecordInput(value=b"v", timestamp=NOW - 2 * HOUR)])
    with pytest.raises(InvalidTimestamp):
        log.append(old, leader_epoch=0, now_ms=NOW)
    fine = build_batch([RecordInput(value=b"v", timestamp=NOW - HOUR)])
    assert log.append(fine, leader_epoch=0, now_ms=NOW).base_offset == 0
    log.close()


def test_difference_max_ms_is_the_fallback_of_both_bounds(tmp_path: Path) -> None:
    """message.timestamp.difference.max.ms bounds both sides when before/after are
    unset (Kafka's LogConfig)."""
    config = TopicConfig.from_overrides({"message.timestamp.difference.max.ms": "5000"})
    assert (config.timestamp_before_max_ms, config.timestamp_after_max_ms) == (
        5000,
        5000,
    )
    assert config.inspects_records
    assert not TopicConfig.from_overrides(
        {
            "message.timestamp.difference.max.ms": "5000",
            "message.timestamp.type": "LogAppendTime",
        }
    ).inspects_records


def test_log_append_time_set_by_the_producer_is_invalid_timestamp(
    tmp_path: Path,
) -> None:
    """A producer may not set LogAppendTime (on a LogAppendTime topic, or without a
    timestamp on a CreateTime one)."""
    log = open_log(tmp_path, **{"message.timestamp.type": "LogAppendTime"})
    batch = build_batch(records(b"k"), timestamp_type=TimestampType.LOG_APPEND_TIME)
    with pytest.raises(InvalidTimestamp) as info:
        log.append(batch, leader_epoch=0)
    assert (
        "Producer should not set timestamp type to LogAppendTime"
        in (info.value.record_errors[0][1])
    )
    log.close()


def test_control_batch_from_a_client_is_invalid_record(tmp_path: Path) -> None:
    """Clients may not write control batches: INVALID_RECORD, no record errors."""
    log = open_log(tmp_path)
    batch = build_batch(records(b"k"), is_control=True)
    with pytest.raises(InvalidRecord) as info:
        log.append(batch, leader_epoch=0)
    assert info.value.record_errors == []
    assert str(info.value) == (
        "Clients are not allowed to write control records in topic partition t-0"
    )
    log.close()


def test_negative_sequence_of_an_idempotent_batch_is_invalid_record(
    tmp_path: Path,
) -> None:
    """An idempotent batch with a negative base sequence is INVALID_RECORD."""
    log = open_log(tmp_path)
    batch = build_batch(
        records(b"k"), producer_id=7, producer_epoch=0, base_sequence=-3
    )
    with pytest.raises(InvalidRecord, match="Invalid sequence number -3"):
        log.append(batch, leader_epoch=0)
    log.close()


def _header(base: int, top: int) -> BatchHeader:
    batch = build_batch(
        [
            RecordInput(value=b"v", timestamp=base),
            RecordInput(value=b"v", timestamp=top),
        ]
    )
    return read_header(batch)


bounds = st.integers(min_value=0, max_value=LONG_MAX)
stamps = st.integers(min_value=-1, max_value=2**62)


@given(ts=stamps, now=stamps, before=bounds, after=bounds)
def test_bound_predicate_is_kafkas(ts: int, now: int, before: int, after: int) -> None:
    """A timestamp is refused exactly when Kafka's recordHasInvalidTimestamp (with
    64-bit arithmetic that does not overflow for these ranges) says so."""
    expected = ts != -1 and (now - ts > before or ts - now > after)
    assert timestamp_out_of_bounds(ts, now, before, after) == expected
    if before == LONG_MAX and after == LONG_MAX:
        assert not timestamp_out_of_bounds(ts, now, before, after)


@given(
    first=stamps,
    spread=st.integers(min_value=0, max_value=HOUR),
    pick=st.floats(min_value=0, max_value=1),
    now=stamps,
    before=bounds,
    after=bounds,
)
def test_header_shortcut_never_hides_a_record_between_first_and_max(
    first: int, spread: int, pick: float, now: int, before: int, after: int
) -> None:
    """When the header (first and max timestamp) is in bounds, so is every record
    whose timestamp lies between them: skipping the decode loses nothing."""
    top = first + spread
    header = _header(first, top)
    inside = first + int(spread * pick)
    if not header_may_be_out_of_bounds(header, now, before, after):
        assert not timestamp_out_of_bounds(inside, now, before, after)
    if timestamp_out_of_bounds(first, now, before, after) or timestamp_out_of_bounds(
        top, now, before, after
    ):
        assert header_may_be_out_of_bounds(header, now, before, after)
