"""The disaster-recovery topology as processes: a primary broker snapshots on a
schedule, a sync step ships new snapshot directories into a running standby's
``data/snapshots``, and the standby ends up holding exactly the primary's records."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KTopicPartition

from tests._broker import BrokerProcess, start_broker

pytestmark = pytest.mark.integration

TOPIC = "dr-orders"
PARTITIONS = 2
PRODUCE_S = 4.0
KEEP_LAST = 1
FULL_EVERY = 2
Record = tuple[int, int, bytes | None, bytes | None, int, tuple[tuple[str, bytes], ...]]


def _start(data_dir: Path, env: dict[str, str]) -> BrokerProcess:
    """A fresh broker on ``data_dir`` (log and ready file beside it)."""
    data_dir.mkdir(parents=True)
    return start_broker(
        data_dir,
        "--set",
        f"num.partitions={PARTITIONS}",
        log_path=data_dir.parent / f"{data_dir.name}.log",
        ready_path=data_dir.parent / f"{data_dir.name}.ready.json",
        env=env,
        inherit_ailurus_env=True,
        timeout=20,
    )


@contextmanager
def _stopping(*brokers: BrokerProcess) -> Iterator[None]:
    try:
        yield
    finally:
        for b in brokers:
            b.stop(timeout=10)


def _produce(bootstrap: str, stop_at: float, sent: list[int]) -> None:
    """Produce until ``stop_at`` (acks=all), counting acknowledged records."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    try:
        i = 0
        while time.monotonic() < stop_at and i < 5_000:
            producer.send(
                TOPIC,
                key=b"k%d" % i,
                value=b"v%d" % i * (1 + i % 7),
                headers=[("n", str(i).encode())],
                partition=i % PARTITIONS,
            )
            i += 1
            if i % 50 == 0:
                producer.flush(10)
            time.sleep(0.003)
        producer.flush(30)
        sent.append(i)
    finally:
        producer.close(timeout=10)


def _snapshot_dirs(data_dir: Path) -> list[Path]:
    """Complete snapshot directories (dot-names are in progress), oldest first."""
    root = data_dir / "snapshots"
    found = [
        d
        for topic_dir in (root.iterdir() if root.is_dir() else [])
        if not topic_dir.name.startswith(".")
        for d in topic_dir.iterdir()
        if not d.name.startswith(".") and (d / "meta.json").is_file()
    ]
    return sorted(found, key=lambda d: d.name)


class Shipper:
    """The sync step: copy each new primary snapshot into the standby, alternating a
    temp-dot-name-then-rename copy with a plain ``cp -r`` into place."""

    def __init__(self, primary: Path, standby: Path) -> None:
        self.primary, self.standby = primary, standby
        self.shipped: dict[str, dict[str, object]] = {}  # snapshot id -> meta
        self.vanished: set[str] = set()

    def sync(self) -> None:
        for src in _snapshot_dirs(self.primary):
            if src.name in self.shipped or src.name in self.vanished:
                continue
            try:
                meta = json.loads((src / "meta.json").read_text())
            except FileNotFoundError:  # removed by retention meanwhile
                continue
            dest_parent = self.standby / "snapshots" / src.parent.name
            dest_parent.mkdir(parents=True, exist_ok=True)
            dest = dest_parent / src.name
            try:
                if len(self.shipped) % 2 == 0:
                    tmp = dest_parent / f".{src.name}.copying"
                    shutil.copytree(src, tmp)
                    tmp.rename(dest)
                else:
                    subprocess.run(
                        ["cp", "-r", str(src), str(dest)], check=True, timeout=30
                    )
            except (OSError, shutil.Error, subprocess.CalledProcessError):
                if src.exists():
                    raise
                # Retention removed it mid-copy: a newer full snapshot covers it.
                shutil.rmtree(dest_parent / f".{src.name}.copying", ignore_errors=True)
                shutil.rmtree(dest, ignore_errors=True)
                self.vanished.add(src.name)
                continue
            self.shipped[src.name] = meta


def _metas(data_dir: Path) -> list[dict[str, object]]:
    """meta.json of every snapshot still there (retention may remove one meanwhile)."""
    out = []
    for d in _snapshot_dirs(data_dir):
        try:
            out.append(json.loads((d / "meta.json").read_text()))
        except FileNotFoundError:
            continue
    return out


def _covered(primary: Path, ends: dict[int, int]) -> bool:
    """Whether the primary's snapshots reach every partition's end offset."""
    last: dict[int, int] = {}
    for meta in _metas(primary):
        p = int(str(meta.get("partition", 0)))
        last[p] = max(last.get(p, -1), int(str(meta["last_offset"])))
    return all(last.get(p, -1) + 1 >= end for p, end in ends.items())


def _end_offsets(bootstrap: str) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:
        tps = [KTopicPartition(TOPIC, p) for p in range(PARTITIONS)]
        return {tp.partition: off for tp, off in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()


def _read_all(bootstrap: str, ends: dict[int, int]) -> list[Record]:
    """Every record of the topic, in partition/offset order (bounded in time)."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    try:
        consumer.assign([KTopicPartition(TOPIC, p) for p in range(PARTITIONS)])
        got: list[Record] = []
        want = sum(ends.values())
        deadline = time.monotonic() + 30
        for m in consumer:
            got.append(
                (m.partition, m.offset, m.key, m.value, m.timestamp, tuple(m.headers))
            )
            if len(got) >= want or time.monotonic() > deadline:
                break
        return sorted(got, key=lambda r: (r[0], r[1]))
    finally:
        consumer.close()


def _wait(what: str, check: object, timeout: float) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_standby_holds_exactly_the_primarys_records_after_scheduled_snapshots_ship(
    tmp_path: Path,
) -> None:
    """A producer runs while the primary snapshots every second (incremental, a
    full one every 2, keep-last 1) and new snapshots ship to a running standby; once
    it stops and the last snapshot ships, both brokers hold the same records at the
    same offsets."""
    primary = _start(
        tmp_path / "primary",
        {
            "AILURUS_SNAPSHOT_SCHEDULE_TOPICS": "dr-*",
            "AILURUS_SNAPSHOT_SCHEDULE_INTERVAL": "1s",
            "AILURUS_SNAPSHOT_SCHEDULE_FULL_EVERY": str(FULL_EVERY),
            "AILURUS_SNAPSHOT_RETENTION_KEEP_LAST": str(KEEP_LAST),
        },
    )
    standby = _start(
        tmp_path / "standby",
        {
            "AILURUS_SNAPSHOT_SCAN_INTERVAL_MS": "300",
            "AILURUS_SNAPSHOT_SETTLE_MS": "500",
        },
    )
    with _stopping(primary, standby):
        shipper = Shipper(primary.data_dir, standby.data_dir)
        sent: list[int] = []
        producer = threading.Thread(
            target=_produce,
            args=(primary.bootstrap, time.monotonic() + PRODUCE_S, sent),
        )
        producer.start()
        while producer.is_alive():
            shipper.sync()
            time.sleep(0.1)
        producer.join()
        assert sent
        assert sent[0] > 100

        ends = _end_offsets(primary.bootstrap)
        assert sum(ends.values()) == sent[0]

        def covered_then_shipped() -> bool:
            shipper.sync()
            return _covered(primary.data_dir, ends)

        _wait("the last scheduled snapshot", covered_then_shipped, 15)
        shipper.sync()
        _wait(
            "the standby to ingest everything",
            lambda: _end_offsets(standby.bootstrap) == ends,
            30,
        )
        on_primary = _read_all(primary.bootstrap, ends)
        on_standby = _read_all(standby.bootstrap, ends)
        assert len(on_primary) == sent[0]
        assert on_standby == on_primary

        schedule = primary.admin("GET", "/v1/snapshots/schedule", timeout=5)
        assert isinstance(schedule, dict)
        assert schedule["rounds"] >= 4
        metas = list(shipper.shipped.values())
        full = [m for m in metas if str(m["ancestor_snapshot_id"]).strip("0") == ""]
        incremental = [m for m in metas if m not in full]
        assert full
        assert incremental
        # retention ran: the primary keeps at most keep_last snapshots per partition
        # plus the ancestors they need (a chain is at most full_every long)
        per_partition: dict[int, int] = {}
        for meta in _metas(primary.data_dir):
            p = int(str(meta.get("partition", 0)))
            per_partition[p] = per_partition.get(p, 0) + 1
        assert len(metas) > sum(per_partition.values())
        assert all(n <= KEEP_LAST + FULL_EVERY - 1 for n in per_partition.values())
        standby_status = standby.admin("GET", "/v1/snapshots", timeout=5)
        assert isinstance(standby_status, list)
        statuses = {row["status"] for row in standby_status}
        assert statuses <= {"applied", "already-present"}, standby_status
