"""``group describe`` shows a live kafka-python member, its assignment and lag."""

from __future__ import annotations

import time
from pathlib import Path

from tests._broker import start_broker
from tests._kafka_python import group_consumer
from tests.cli.conftest import Target, invoke, unique


def test_describe_shows_live_member_assignment_and_lag(ailurus: Target) -> None:
    """A subscribed consumer appears with its partitions; lag = end - committed."""
    target = ailurus
    topic, group = unique("live"), unique("g")
    assert invoke(target, "topic", "create", topic, "-p", "2").exit_code == 0
    res = invoke(
        target,
        "topic",
        "produce",
        topic,
        "-p",
        "0",
        "--key-value",
        "a:1",
        "--key-value",
        "b:2",
    )
    assert res.exit_code == 0
    consumer = group_consumer(
        topic,
        bootstrap_servers=target.bootstrap,
        group_id=group,
        client_id="live-member",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    try:
        got = 0
        deadline = time.monotonic() + 20
        while got < 1 and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=200, max_records=1).values():
                got += len(records)
        assert got == 1
        consumer.commit()
        res = invoke(target, "--format", "json", "group", "describe", group)
        assert res.exit_code == 0, res.stderr
        desc = res.json()
        assert isinstance(desc, dict)
        assert desc["state"] == "Stable"
        assert desc["protocol_type"] == "consumer"
        [member] = desc["members"]
        assert member["client_id"] == "live-member"
        assert member["assignment"] == [{"topic": topic, "partitions": [0, 1]}]
        lag = {(o["topic"], o["partition"]): o["lag"] for o in desc["offsets"]}
        assert lag[(topic, 0)] == 1
        text = invoke(target, "group", "describe", group)
        assert f"{topic}:0,1" in text.stdout.decode()
        busy = invoke(target, "group", "delete", group)
        assert busy.exit_code == 1
        assert b"NON_EMPTY_GROUP" in busy.stderr
    finally:
        consumer.close()


def test_group_commit_seek_and_delete(target: Target) -> None:
    """consume -g commits, seek moves the commit, a later consume resumes there."""
    topic, group = unique("seek"), unique("g")
    assert invoke(target, "topic", "create", topic, "-p", "1").exit_code == 0
    for kv in ("a:1", "b:2", "c:3"):
        assert (
            invoke(target, "topic", "produce", topic, "--key-value", kv).exit_code == 0
        )
    first = invoke(target, "topic", "consume", topic, "-g", group, "--num", "2")
    assert first.stdout == b"a:1\nb:2\n"
    resumed = invoke(target, "topic", "consume", topic, "-g", group, "--until-end")
    assert resumed.stdout == b"c:3\n"
    assert group in invoke(target, "group", "list").stdout.decode()
    seek = invoke(target, "group", "seek", group, "--to", "1")
    assert seek.exit_code == 0, seek.stderr
    again = invoke(target, "topic", "consume", topic, "-g", group, "--until-end")
    assert again.stdout == b"b:2\nc:3\n"
    assert invoke(target, "group", "delete", group).exit_code == 0


def test_group_member_fits_a_broker_capping_sessions(tmp_path: Path) -> None:
    """consume -g joins a broker whose group.max.session.timeout.ms is 15 s.

    The command-line member keeps a short session (a killed command frees its
    partitions within seconds), so it fits brokers that cap sessions well below
    Kafka's 30-minute default.
    """
    broker = start_broker(
        tmp_path / "data",
        "--set",
        "group.max.session.timeout.ms=15000",
        log_dir=tmp_path / "logs",
    )
    try:
        target = Target("ailurus", broker.bootstrap, broker.admin_url)
        topic, group = unique("capped"), unique("g")
        assert invoke(target, "topic", "create", topic, "-p", "2").exit_code == 0
        produced = invoke(target, "topic", "produce", topic, "--key-value", "k:v")
        assert produced.exit_code == 0, produced.stderr
        consumed = invoke(target, "topic", "consume", topic, "-g", group, "--num", "1")
        assert consumed.exit_code == 0, consumed.stderr
        assert consumed.stdout == b"k:v\n"
    finally:
        broker.stop(timeout=10)


def test_offset_delete_drops_one_partitions_commit(ailurus: Target) -> None:
    """``group offset-delete`` removes the named partition's committed offset and
    keeps the others; an unknown group exits 1 naming GROUP_ID_NOT_FOUND."""
    topic, group = unique("odel"), unique("g")
    assert invoke(ailurus, "topic", "create", topic, "-p", "2").exit_code == 0
    seek = invoke(ailurus, "group", "seek", group, "--to", "start", "-t", topic)
    assert seek.exit_code == 0, seek.stderr
    res = invoke(
        ailurus, "--format", "json", "group", "offset-delete", group, "-t", topic,
        "-p", "0",
    )  # fmt: skip
    assert res.exit_code == 0, res.stderr
    assert res.json() == {
        "group_id": group,
        "partitions": [{"topic": topic, "partition": 0, "error": None}],
    }
    desc = invoke(ailurus, "--format", "json", "group", "describe", group).json()
    assert isinstance(desc, dict)
    assert [(o["topic"], o["partition"]) for o in desc["offsets"]] == [(topic, 1)]
    every = invoke(ailurus, "group", "offset-delete", group, "--topic", topic)
    assert every.exit_code == 0, every.stderr
    assert f"{topic}" in every.stdout.decode()
    missing = invoke(ailurus, "group", "offset-delete", unique("none"), "-t", topic)
    assert missing.exit_code == 1
    assert b"GROUP_ID_NOT_FOUND" in missing.stderr
