"""Snapshots end to end: real brokers, the CLI, kafka-python, ``cp -r`` between them."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

from tests._kafka_python import group_consumer
from tests.snapshots.conftest import Broker, cp_r, wait_for, wait_status

pytestmark = pytest.mark.integration

Factory = Callable[..., Broker]


def create(b: Broker, topic: str, *args: str) -> list[dict[str, object]]:
    out = b.cli("--format", "json", "snapshot", "create", "--topic", topic, *args)
    return json.loads(out.stdout)


def consume_all(
    b: Broker, topic: str, partition: int = 0
) -> list[tuple[int, bytes | None, bytes | None]]:
    consumer = KafkaConsumer(
        bootstrap_servers=b.bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        consumer_timeout_ms=3000,
    )
    tp = TopicPartition(topic, partition)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    end = consumer.end_offsets([tp])[tp]
    out = []
    deadline = time.monotonic() + 15
    while (not out or out[-1][0] < end - 1) and end > 0 and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            out.extend((r.offset, r.key, r.value) for r in records)
    consumer.close()
    return out


def produce(b: Broker, topic: str, values: list[bytes], partition: int = 0) -> None:
    producer = KafkaProducer(
        bootstrap_servers=b.bootstrap, acks="all", enable_idempotence=False, linger_ms=0
    )
    for v in values:
        producer.send(topic, key=b"k", value=v, partition=partition).get(timeout=10)
    producer.close()


def make_topic(b: Broker, topic: str, partitions: int = 1) -> None:
    admin = KafkaAdminClient(bootstrap_servers=b.bootstrap)
    admin.create_topics([NewTopic(topic, partitions, 1)])
    admin.close()


def rel(result: dict[str, object]) -> str:
    return f"{result['topic_id']}/{result['snapshot_id']}"


def test_walkthrough_cli_kafka_python_and_cp_into_second_broker(
    brokers: Factory,
) -> None:
    """The documented walk-through: produce, consume, snapshot, cp -r into a running broker."""
    b1, b2 = brokers("b1"), brokers("b2")
    b1.cli("topic", "produce", "my-topic", "--key-value", "hello:world")
    first = create(b1, "my-topic")
    assert first[0]["last_offset"] == 0
    b1.cli("topic", "produce", "my-topic", "--key-value", "foo:bar")
    out = b1.cli("topic", "consume", "my-topic", "--offset", "0", "--until-end")
    assert out.stdout.splitlines() == ["hello:world", "foo:bar"]
    second = create(b1, "my-topic")
    snap_dir = Path(str(second[0]["path"]))
    assert snap_dir.parent.name == b1.admin("GET", "/v1/topics/my-topic")["topic_id"]
    assert sorted(os.listdir(snap_dir)) == ["00000000000000000000.log", "meta.json"]
    # b1 made these itself: listed as created, never ingested by b1.
    assert b1.statuses()[rel(second[0])]["status"] == "created"
    # The second broker first gets the snapshot holding offset 0 (topic created with its id)...
    cp_r(
        Path(str(first[0]["path"])),
        b2.data_dir
        / "snapshots"
        / str(first[0]["topic_id"])
        / str(first[0]["snapshot_id"]),
    )
    wait_status(b2, rel(first[0]), "applied")
    assert b2.admin("GET", "/v1/topics/my-topic")["topic_id"] == first[0]["topic_id"]
    assert consume_all(b2, "my-topic") == [(0, b"hello", b"world")]
    # ...then the overlapping case: the topic holds offset 0, the snapshot ends at 1.
    cp_r(
        snap_dir,
        b2.data_dir
        / "snapshots"
        / str(second[0]["topic_id"])
        / str(second[0]["snapshot_id"]),
    )
    wait_status(b2, rel(second[0]), "applied")
    assert b2.partition("my-topic", 0)["log_end_offset"] == 2
    assert consume_all(b2, "my-topic") == [(0, b"hello", b"world"), (1, b"foo", b"bar")]
    out = b2.cli("topic", "consume", "my-topic", "--offset", "0", "--until-end")
    assert out.stdout.splitlines() == ["hello:world", "foo:bar"]
    listed = b2.cli("snapshot", "list").stdout
    assert "applied" in listed
    assert any(e["status"] == "applied" for e in b2.events("snapshot_status"))
    metrics = b2.cli("--format", "json", "snapshot", "list").stdout
    assert json.loads(metrics)[0]["last_offset"] in (0, 1)


def test_restore_one_partition_of_six_creates_topic_with_six(brokers: Factory) -> None:
    """A snapshot of partition 3 of six creates the six-partition topic and fills only 3."""
    b1, b2 = brokers("b1"), brokers("b2")
    make_topic(b1, "six", 6)
    for p in range(6):
        produce(b1, "six", [b"p%d-%d" % (p, i) for i in range(3)], partition=p)
    [res] = create(b1, "six", "--partition", "3")
    cp_r(
        Path(str(res["path"])),
        b2.data_dir / "snapshots" / str(res["topic_id"]) / str(res["snapshot_id"]),
    )
    wait_status(b2, rel(res), "applied")
    topic = b2.admin("GET", "/v1/topics/six")
    assert topic["partition_count"] == 6
    assert topic["topic_id"] == res["topic_id"]
    assert [p["log_end_offset"] for p in topic["partitions"]] == [0, 0, 0, 3, 0, 0]
    assert [v for _, _, v in consume_all(b2, "six", 3)] == [b"p3-0", b"p3-1", b"p3-2"]


@pytest.mark.parametrize("ancestor_first", [True, False])
def test_incremental_chain_applies_in_either_arrival_order(
    brokers: Factory, ancestor_first: bool
) -> None:
    """A full snapshot and its incremental apply in order whichever is copied first."""
    b1, b2 = brokers("b1"), brokers("b2")
    produce(b1, "chain", [b"a", b"b"])
    [full] = create(b1, "chain")
    produce(b1, "chain", [b"c", b"d", b"e"])
    [inc] = create(b1, "chain", "--incremental")
    assert (inc["base_offset"], inc["ancestor_snapshot_id"]) == (2, full["snapshot_id"])
    dest = b2.data_dir / "snapshots" / str(full["topic_id"])
    order = [full, inc] if ancestor_first else [inc, full]
    cp_r(Path(str(order[0]["path"])), dest / str(order[0]["snapshot_id"]))
    if not ancestor_first:
        wait_status(b2, rel(inc), "waiting-for-ancestor")
    cp_r(Path(str(order[1]["path"])), dest / str(order[1]["snapshot_id"]))
    wait_status(b2, rel(full), "applied")
    wait_status(b2, rel(inc), "applied")
    assert [v for _, _, v in consume_all(b2, "chain")] == [b"a", b"b", b"c", b"d", b"e"]


def test_two_snapshots_of_one_partition_highest_wins(brokers: Factory) -> None:
    """Two full snapshots copied together leave the partition at the higher last offset."""
    b1, b2 = brokers("b1"), brokers("b2")
    produce(b1, "two", [b"a", b"b"])
    [low] = create(b1, "two")
    produce(b1, "two", [b"c", b"d"])
    [high] = create(b1, "two")
    cp_r(
        Path(str(high["path"])).parent,
        b2.data_dir / "snapshots" / str(high["topic_id"]),
    )
    wait_for(
        lambda: (
            {b2.statuses().get(rel(r), {}).get("status") for r in (low, high)}
            <= {"applied", "already-present"}
            and len(b2.statuses()) == 2
        )
    )
    assert b2.partition("two", 0)["log_end_offset"] == 4


def test_half_copied_snapshot_applies_only_when_complete(brokers: Factory) -> None:
    """Files that keep growing for seconds are waited out; then the snapshot applies."""
    b1, b2 = brokers("b1"), brokers("b2")
    produce(b1, "slow", [b"x" * 1000 for _ in range(50)])
    [res] = create(b1, "slow")
    src = Path(str(res["path"]))
    dest = b2.data_dir / "snapshots" / str(res["topic_id"]) / str(res["snapshot_id"])
    dest.mkdir(parents=True)
    shutil.copy(src / "meta.json", dest / "meta.json")
    data = (src / "00000000000000000000.log").read_bytes()
    with open(dest / "00000000000000000000.log", "wb") as f:
        step = len(data) // 10 + 1
        for i in range(0, len(data), step):  # about 2.5 s of growing
            row = b2.statuses().get(rel(res))
            assert row is None or row["status"] == "waiting", row
            assert "slow" not in [t["name"] for t in b2.admin("GET", "/v1/topics")]
            f.write(data[i : i + step])
            f.flush()
            time.sleep(0.25)
    wait_status(b2, rel(res), "applied")
    assert b2.partition("slow", 0)["log_end_offset"] == 50


def test_flat_copy_layout_is_ingested(brokers: Factory) -> None:
    """meta.json and *.log copied straight into snapshots/<topic_id>/ are a snapshot too."""
    b1, b2 = brokers("b1"), brokers("b2")
    produce(b1, "flat", [b"a", b"b", b"c"])
    [res] = create(b1, "flat")
    dest = b2.data_dir / "snapshots" / str(res["topic_id"])
    dest.mkdir(parents=True)
    for f in Path(str(res["path"])).iterdir():
        shutil.copy(f, dest / f.name)
    wait_status(b2, str(res["topic_id"]), "applied")
    assert [v for _, _, v in consume_all(b2, "flat")] == [b"a", b"b", b"c"]


def test_diverged_and_corrupt_snapshots_are_rejected_with_nothing_changed(
    brokers: Factory,
) -> None:
    """A snapshot whose overlap differs is diverged; a damaged one is invalid; the log stays."""
    b1, b2 = brokers("b1"), brokers("b2")
    produce(b1, "div", [b"a", b"b"])
    [res] = create(b1, "div")
    produce(b2, "div", [b"other"])
    cp_r(
        Path(str(res["path"])),
        b2.data_dir / "snapshots" / "div" / str(res["snapshot_id"]),
    )
    row = wait_status(b2, f"div/{res['snapshot_id']}", "diverged")
    assert "differ" in row["reason"]
    assert consume_all(b2, "div") == [(0, b"k", b"other")]
    produce(b1, "bad", [b"a", b"b"])
    [bad] = create(b1, "bad")
    dest = b2.data_dir / "snapshots" / str(bad["topic_id"]) / str(bad["snapshot_id"])
    cp_r(Path(str(bad["path"])), dest)
    seg = dest / "00000000000000000000.log"
    data = bytearray(seg.read_bytes())
    data[-3] ^= 0x55
    seg.write_bytes(bytes(data))
    row = wait_status(b2, rel(bad), "invalid")
    assert "checksum-mismatch" in row["reason"]
    assert "bad" not in [t["name"] for t in b2.admin("GET", "/v1/topics")]
    metrics = _metrics(b2)
    assert 'ailurus_snapshots_rejected_total{reason="checksum-mismatch"} 1' in metrics
    assert 'ailurus_snapshots_rejected_total{reason="diverged"} 1' in metrics


def _metrics(b: Broker) -> str:
    import urllib.request

    with urllib.request.urlopen(b.admin_url + "/metrics", timeout=10) as resp:
        return resp.read().decode()


def test_consumer_long_polling_sees_restored_records(brokers: Factory) -> None:
    """A consumer blocked in a long poll on the partition gets the records once applied."""
    b1, b2 = brokers("b1"), brokers("b2")
    produce(b1, "poll", [b"a", b"b"])
    [res] = create(b1, "poll")
    make_topic(b2, "poll")
    consumer = KafkaConsumer(
        bootstrap_servers=b2.bootstrap,
        enable_auto_commit=False,
        fetch_max_wait_ms=10_000,
    )
    tp = TopicPartition("poll", 0)
    consumer.assign([tp])
    consumer.seek(tp, 0)
    assert consumer.poll(timeout_ms=500) == {}
    got: list[bytes] = []

    def poll() -> None:
        deadline = time.monotonic() + 20
        while len(got) < 2 and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=9000).values():
                got.extend(r.value for r in records)

    t = threading.Thread(target=poll)
    t.start()
    time.sleep(0.5)
    started = time.monotonic()
    cp_r(
        Path(str(res["path"])),
        b2.data_dir / "snapshots" / "poll" / str(res["snapshot_id"]),
    )
    t.join(25)
    consumer.close()
    assert got == [b"a", b"b"]
    assert (
        time.monotonic() - started < 8
    )  # woken by the apply, not by the 10 s poll timeout


def test_group_resumes_from_restored_commits(brokers: Factory) -> None:
    """Group offsets stored with --with-group-offsets are restored where none is newer."""
    b1, b2 = brokers("b1"), brokers("b2")
    produce(b1, "grp", [b"v%d" % i for i in range(5)])
    consumer = group_consumer(
        "grp",
        bootstrap_servers=b1.bootstrap,
        group_id="g1",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
    )
    seen = []
    for msg in consumer:
        seen.append(msg.value)
        if len(seen) == 3:
            break
    consumer.commit()
    consumer.close()
    [res] = create(b1, "grp", "--with-group-offsets")
    assert "group-offsets.json" in os.listdir(str(res["path"]))
    cp_r(
        Path(str(res["path"])),
        b2.data_dir / "snapshots" / str(res["topic_id"]) / str(res["snapshot_id"]),
    )
    wait_status(b2, rel(res), "applied")
    resumed = group_consumer(
        "grp",
        bootstrap_servers=b2.bootstrap,
        group_id="g1",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
    )
    rest = [m.value for m in resumed]
    resumed.close()
    assert rest == [b"v3", b"v4"]


def test_producers_writing_while_ingest_runs(brokers: Factory) -> None:
    """Producers on the ingested partition and another one stay consistent: the
    snapshot is applied whole before their records, or diverged with none of it."""
    b1, b2 = brokers("b1"), brokers("b2")
    make_topic(b1, "live", 2)
    produce(b1, "live", [b"s%d" % i for i in range(300)])
    [res] = create(b1, "live", "--partition", "0")
    make_topic(b2, "live", 2)
    stop = threading.Event()
    acked: dict[int, list[int]] = {0: [], 1: []}

    def run(partition: int) -> None:
        producer = KafkaProducer(
            bootstrap_servers=b2.bootstrap, acks="all", enable_idempotence=False
        )
        while not stop.is_set():
            md = producer.send("live", value=b"live", partition=partition).get(
                timeout=10
            )
            acked[partition].append(md.offset)
        producer.close()

    threads = [threading.Thread(target=run, args=(p,)) for p in (0, 1)]
    cp_r(
        Path(str(res["path"])),
        b2.data_dir / "snapshots" / "live" / str(res["snapshot_id"]),
    )
    for t in threads:
        t.start()
    key = f"live/{res['snapshot_id']}"
    wait_for(
        lambda: b2.statuses().get(key, {}).get("status") in ("applied", "diverged")
    )
    time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join(20)
    values = [v for _, _, v in consume_all(b2, "live", 0)]
    if b2.statuses()[key]["status"] == "applied":
        assert values[:300] == [b"s%d" % i for i in range(300)]
        assert values[300:] == [b"live"] * (len(values) - 300)
        assert min(acked[0], default=300) >= 300
    else:
        assert values == [b"live"] * len(values)
    assert len(values) == len(acked[0]) + (300 if values[:1] == [b"s0"] else 0)
    assert acked[1] == list(range(len(acked[1])))
    assert len(consume_all(b2, "live", 1)) == len(acked[1])
