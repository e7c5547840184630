"""LogManager: topic manifests, ids, partitions, configs, deletion, reopening."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from storage.errors import (
    InvalidConfig,
    InvalidTimestamp,
    InvalidTopicName,
    LogClosed,
    StorageIOError,
    TopicExists,
    UnknownPartition,
    UnknownTopic,
)
from storage.log_manager import LogManager

MakeBatch = Callable[..., bytes]


def test_create_topic_writes_manifest_and_partitions(tmp_path: Path) -> None:
    """create_topic lays out kafka/<topic>/<p>/ and an atomic topic.json."""
    with_id = uuid.UUID("6ba7b810-9dad-11d1-80b4-00c04fd430c8")
    lm = LogManager(tmp_path, {"segment.bytes": "4096"})
    meta = lm.create_topic("orders", 3, {"retention.ms": "60000"}, topic_id=with_id)
    assert meta.topic_id == with_id.bytes
    assert meta.topic_uuid == with_id
    assert meta.config.segment_bytes == 4096
    assert meta.config.retention_ms == 60000
    manifest = json.loads((tmp_path / "kafka" / "orders" / "topic.json").read_text())
    assert manifest == {
        "version": 1,
        "name": "orders",
        "topic_id": str(with_id),
        "partition_count": 3,
        "configs": {"retention.ms": "60000"},
    }
    for p in range(3):
        assert (
            tmp_path / "kafka" / "orders" / str(p) / "00000000000000000000.log"
        ).exists()
    assert lm.topic_by_id(with_id.bytes) == meta
    assert lm.topic_by_id(with_id) == meta
    with pytest.raises(TopicExists):
        lm.create_topic("orders", 1)
    with pytest.raises(TopicExists):
        lm.create_topic("other", 1, topic_id=with_id)
    lm.close()


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "x" * 250, "bad name", "a~b"])
def test_invalid_topic_names_are_refused(tmp_path: Path, name: str) -> None:
    """Names Kafka refuses raise InvalidTopicName."""
    lm = LogManager(tmp_path)
    with pytest.raises(InvalidTopicName):
        lm.create_topic(name, 1)
    lm.close()


def test_unknown_configs_and_lookups_raise_typed_errors(tmp_path: Path) -> None:
    """Bad configs, unknown topics and partitions raise storage errors."""
    lm = LogManager(tmp_path)
    with pytest.raises(InvalidConfig):
        lm.create_topic("a", 1, {"no.such.config": "1"})
    with pytest.raises(InvalidConfig):
        lm.create_topic("a", 1, {"retention.ms": "soon"})
    with pytest.raises(InvalidConfig):
        lm.create_topic("a", 0)
    lm.create_topic("a", 1)
    with pytest.raises(UnknownTopic):
        lm.topic("b")
    with pytest.raises(UnknownTopic):
        lm.partition("b", 0)
    with pytest.raises(UnknownPartition):
        lm.partition("a", 1)
    with pytest.raises(UnknownTopic):
        lm.topic_by_id(b"\x01" * 16)
    lm.close()


def test_add_partitions_alter_configs_and_reopen(
    tmp_path: Path, make_batch: MakeBatch
) -> None:
    """Topics keep their ids, partitions, configs and data across reopen."""
    lm = LogManager(tmp_path)
    meta = lm.create_topic("t", 1)
    lm.partition("t", 0).append(make_batch(3), leader_epoch=0)
    grown = lm.add_partitions("t", 3)
    assert grown.partition_count == 3
    lm.partition("t", 2).append(make_batch(1), leader_epoch=0)
    with pytest.raises(InvalidConfig):
        lm.add_partitions("t", 2)
    altered = lm.alter_topic_configs("t", {"cleanup.policy": "compact"})
    assert altered.config.cleanup_policy == "compact"
    assert lm.partition("t", 1).config.cleanup_policy == "compact"
    lm.close()
    lm = LogManager(tmp_path)
    again = lm.topic("t")
    assert again.topic_id == meta.topic_id
    assert again.partition_count == 3
    assert again.config.overrides == {"cleanup.policy": "compact"}
    assert [log.log_end_offset for log in lm.partitions("t")] == [3, 0, 1]
    assert lm.recovery_report() == []
    lm.close()


def test_delete_topic_removes_files_and_closes_logs(
    tmp_path: Path, make_batch: MakeBatch
) -> None:
    """delete_topic removes the directory; old handles raise LogClosed."""
    lm = LogManager(tmp_path)
    lm.create_topic("t", 2)
    log = lm.partition("t", 0)
    log.append(make_batch(1), leader_epoch=0)
    lm.delete_topic("t")
    assert not (tmp_path / "kafka" / "t").exists()
    assert list((tmp_path / "kafka").iterdir()) == []
    with pytest.raises(LogClosed):
        log.append(make_batch(1), leader_epoch=0)
    with pytest.raises(UnknownTopic):
        lm.delete_topic("t")
    meta = lm.create_topic("t", 1)
    assert lm.partition("t", 0).log_end_offset == 0
    lm.close()
    lm = LogManager(tmp_path)
    assert lm.topic("t").topic_id == meta.topic_id
    lm.close()


def test_retention_across_topics_reports_removed_segments(
    tmp_path: Path, make_batch: MakeBatch
) -> None:
    """LogManager.apply_retention reports each deleted segment."""
    lm = LogManager(tmp_path)
    lm.create_topic("t", 1, {"segment.bytes": "200", "retention.bytes": "200"})
    log = lm.partition("t", 0)
    for _ in range(10):
        log.append(make_batch(1), leader_epoch=0)
    removed = lm.apply_retention(0)
    assert removed
    assert all(r["topic"] == "t" for r in removed)
    assert log.log_start_offset == removed[-1]["last_offset"] + 1  # type: ignore[operator]
    lm.close()


def test_renamed_topic_directory_is_refused(tmp_path: Path) -> None:
    """A topic directory whose manifest names another topic stops the open."""
    lm = LogManager(tmp_path)
    lm.create_topic("a", 1)
    lm.close()
    (tmp_path / "kafka" / "a").rename(tmp_path / "kafka" / "b")
    with pytest.raises(StorageIOError, match="names topic 'a'"):
        LogManager(tmp_path)
    (tmp_path / "kafka" / "b").rename(tmp_path / "kafka" / "a")
    lm = LogManager(tmp_path)  # the failed open released the data-dir lock
    assert [t.name for t in lm.topics()] == ["a"]
    lm.close()


def test_set_defaults_reaches_every_topic_that_does_not_override(
    tmp_path: Path, make_batch: MakeBatch
) -> None:
    """New broker defaults apply at once to topics without their own value (and
    their partitions); overrides win; nothing is written to the manifests."""
    lm = LogManager(tmp_path, {"retention.ms": "1000"})
    lm.create_topic("plain", 2)
    lm.create_topic("own", 1, {"max.message.bytes": "64"})
    before = (tmp_path / "kafka" / "plain" / "topic.json").read_bytes()
    lm.set_defaults({"max.message.bytes": "100", "segment.bytes": "2048"})
    assert lm.topic("plain").config.max_message_bytes == 100
    assert lm.partition("plain", 1).config.segment_bytes == 2048
    assert lm.topic("plain").config.retention_ms == 604800000  # the old default gone
    assert lm.partition("own", 0).config.max_message_bytes == 64
    assert (tmp_path / "kafka" / "plain" / "topic.json").read_bytes() == before
    with pytest.raises(InvalidConfig):
        lm.set_defaults({"segment.bytes": "nope"})
    assert lm.topic("plain").config.segment_bytes == 2048  # unchanged by a refusal
    lm.close()


def test_timestamp_bounds_refuse_old_and_future_batches(
    tmp_path: Path, make_batch: MakeBatch
) -> None:
    """message.timestamp.before/after.max.ms bound CreateTime batches; nothing is
    written for a refused one."""
    lm = LogManager(tmp_path)
    lm.create_topic(
        "t",
        1,
        {
            "message.timestamp.before.max.ms": "1000",
            "message.timestamp.after.max.ms": "1000",
        },
    )
    plog = lm.partition("t", 0)
    now = 1_700_000_000_000
    with pytest.raises(InvalidTimestamp):
        plog.append(make_batch(1, ts=now - 5000), leader_epoch=0, now_ms=now)
    with pytest.raises(InvalidTimestamp):
        plog.append(make_batch(1, ts=now + 5000), leader_epoch=0, now_ms=now)
    assert plog.log_end_offset == 0
    plog.append(make_batch(1, ts=now - 500), leader_epoch=0, now_ms=now)
    assert plog.log_end_offset == 1
    lm.close()
