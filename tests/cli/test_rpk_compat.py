"""rpk users are not tripped: produce -k/-H, consume offsets, topics, regexes, groups."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

from kafka import KafkaProducer

from tests._kafka_python import group_consumer
from tests.cli.conftest import AILURUS, Target, invoke, unique


def _values(res: object) -> list[str]:
    return [json.loads(line)["value"] for line in res.stdout.splitlines()]  # type: ignore[attr-defined]


def test_produce_key_and_headers_like_rpk(target: Target) -> None:
    """-k sets the key of each stdin record; -H key:value adds headers (repeatable)."""
    topic = unique("rpkk")
    res = invoke(
        target, "topic", "produce", topic, "-k", "user-1",
        "-H", "source:web", "-H", "v=2", stdin=b"one\ntwo\n",
    )  # fmt: skip
    assert res.exit_code == 0, res.stderr
    out = invoke(target, "--format", "json", "topic", "consume", topic, "--until-end")
    records = out.json_lines()
    assert [(r["key"], r["value"]) for r in records] == [  # type: ignore[index]
        ("user-1", "one"),
        ("user-1", "two"),
    ]
    assert records[0]["headers"] == [  # type: ignore[index]
        {"key": "source", "value": "web", "value_encoding": "utf-8"},
        {"key": "v", "value": "2", "value_encoding": "utf-8"},
    ]


def test_keyless_records_print_without_a_colon(target: Target) -> None:
    """The default output is key:value for keyed records and value for keyless ones."""
    topic = unique("nokey")
    assert invoke(target, "topic", "create", topic).exit_code == 0
    assert invoke(target, "topic", "produce", topic, stdin=b"plain\n").exit_code == 0
    assert (
        invoke(target, "topic", "produce", topic, "-k", "k", stdin=b"v\n").exit_code
        == 0
    )
    res = invoke(target, "topic", "consume", topic, "--until-end")
    assert res.stdout == b"plain\nk:v\n"


def test_rpk_offset_forms(ailurus: Target) -> None:
    """N, +N, -N, O1:O2, :N, :end and N:end select what rpk selects, and stop."""
    topic = unique("offs")
    assert invoke(ailurus, "topic", "create", topic).exit_code == 0
    lines = b"".join(b"%d\n" % i for i in range(10))
    assert invoke(ailurus, "topic", "produce", topic, stdin=lines).exit_code == 0

    def consume(*args: str) -> list[str]:
        res = invoke(ailurus, "--format", "json", "topic", "consume", topic, *args)
        assert res.exit_code == 0, res.stderr
        return _values(res)

    assert consume("-o", "3:6") == ["3", "4", "5"]
    assert consume("-o", ":2") == ["0", "1"]
    assert consume("-o", ":end") == [str(i) for i in range(10)]
    assert consume("-o", "7:end") == ["7", "8", "9"]
    assert consume("-o", "-2:end") == ["8", "9"]
    assert consume("-o", "+2", "-n", "2") == ["2", "3"]
    assert consume("-o", "-3", "--until-end") == ["7", "8", "9"]


def test_timestamp_ranges_and_relative_times(ailurus: Target) -> None:
    """@T1:T2 is a time window (end exclusive); @-1h leaves out old records."""
    topic = unique("times")
    producer = KafkaProducer(bootstrap_servers=ailurus.bootstrap)
    try:
        for i in range(5):
            producer.send(topic, b"old%d" % i, timestamp_ms=1_000_000 + i * 1000)
        producer.send(topic, b"new")  # now
        producer.flush(timeout=15)
    finally:
        producer.close()

    def consume(offset: str) -> list[str]:
        res = invoke(
            ailurus, "--format", "json", "topic", "consume", topic, "-o", offset
        )
        assert res.exit_code == 0, res.stderr
        return _values(res)

    assert consume("@1001000:1003000") == ["old1", "old2"]
    assert consume("@:1002000") == ["old0", "old1"]
    assert consume("@1003000:end") == ["old3", "old4", "new"]
    assert consume("@1970-01-01T00:16:43Z:+2s") == ["old3", "old4"]
    assert consume("@-1h:end") == ["new"]


def test_several_topics_and_regexes(ailurus: Target) -> None:
    """consume takes several topics, or regular expressions with -r."""
    prefix = unique("multi")
    a, b, other = f"{prefix}-a", f"{prefix}-b", unique("zzz")
    for topic, value in ((a, b"va"), (b, b"vb"), (other, b"vz")):
        assert invoke(ailurus, "topic", "produce", topic, stdin=value).exit_code == 0

    def consume(*args: str) -> set[tuple[str, str]]:
        res = invoke(ailurus, "--format", "json", "topic", "consume", *args)
        assert res.exit_code == 0, res.stderr
        return {(r["topic"], r["value"]) for r in res.json_lines()}  # type: ignore[index]

    assert consume(a, b, "--until-end") == {(a, "va"), (b, "vb")}
    assert consume("-r", f"^{prefix}-", "--until-end") == {(a, "va"), (b, "vb")}
    res = invoke(ailurus, "topic", "consume", "-r", "^no-such-topic-x", "-n", "1")
    assert res.exit_code == 1
    assert b"no topic matches" in res.stderr


def test_consume_with_a_group_is_a_real_member(ailurus: Target) -> None:
    """consume -g joins the group: it shares partitions with a kafka-python member,
    commits what it printed, and leaves on Ctrl-C."""
    topic, group = unique("member"), unique("g")
    assert invoke(ailurus, "topic", "create", topic, "-p", "2").exit_code == 0
    for p in (0, 1):
        res = invoke(ailurus, "topic", "produce", topic, "-p", str(p), stdin=b"x\ny\n")
        assert res.exit_code == 0
    other = group_consumer(
        topic,
        bootstrap_servers=ailurus.bootstrap,
        group_id=group,
        client_id="python-member",
        enable_auto_commit=False,
        auto_offset_reset="latest",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AILURUS_")}
    env["AILURUS_BROKERS"] = ailurus.bootstrap
    proc = None
    try:
        deadline = time.monotonic() + 20
        while not other.assignment() and time.monotonic() < deadline:
            other.poll(timeout_ms=1000)
        assert other.assignment()
        proc = subprocess.Popen(
            [str(AILURUS), "--format", "json", "topic", "consume", topic, "-g", group],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        members: list[dict[str, object]] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            # keep rejoining while the group rebalances; a poll of a second or more, as
            # kafka-python 3.0 can lose a join that a shorter poll interrupts
            other.poll(timeout_ms=1000)
            desc = invoke(ailurus, "--format", "json", "group", "describe", group)
            found = desc.json() if desc.exit_code == 0 else {}
            members = found.get("members", [])  # type: ignore[union-attr]
            if (
                len(members) == 2
                and found.get("state") == "Stable"  # type: ignore[union-attr]
                # every member holds a partition (a topic entry may be empty
                # for a moment while the group settles)
                and all(
                    any(a["partitions"] for a in m["assignment"])  # type: ignore[index]
                    for m in members
                )
            ):
                break
        by_client = {m["client_id"]: m["assignment"] for m in members}  # type: ignore[index]
        assert set(by_client) == {"python-member", "ailurus-cli"}, members
        mine = by_client["ailurus-cli"]
        assert len(mine) == 1
        assert len(mine[0]["partitions"]) == 1  # type: ignore[index]
        cli_partition = mine[0]["partitions"][0]  # type: ignore[index]
        time.sleep(1)  # let it print its partition's records
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
        printed = [json.loads(line) for line in out.splitlines()]
        assert {r["partition"] for r in printed} == {cli_partition}
        assert [r["value"] for r in printed] == ["x", "y"]
        desc = invoke(ailurus, "--format", "json", "group", "describe", group).json()
        committed = {
            o["partition"]: o["committed_offset"]
            for o in desc["offsets"]  # type: ignore[index]
        }
        assert committed.get(cli_partition) == 2
        clients = {m["client_id"] for m in desc["members"]}  # type: ignore[index]
        assert "ailurus-cli" not in clients  # it left the group
    finally:
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=10)  # reaps it and closes its pipes
        other.close()
