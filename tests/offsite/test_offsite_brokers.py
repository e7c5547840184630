"""End to end: a snapshot taken on one broker, shipped through S3, lands in a second
running broker (hot ingest) and a Kafka client reads the same records there."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KTopicPartition

from broker.snapshots.offsite import transfer as offsite
from tests._broker import BrokerProcess, start_broker
from tests.offsite.conftest import S3Server

pytestmark = pytest.mark.integration


@contextlib.contextmanager
def running_broker(data_dir: Path) -> Iterator[BrokerProcess]:
    """A broker subprocess on free loopback ports, stopped on exit."""
    broker = start_broker(data_dir)
    try:
        yield broker
    finally:
        if broker.stop() != 0:
            broker.kill()


def _consume(bootstrap: str, topic: str, count: int) -> list[tuple[int, bytes, bytes]]:
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        consumer_timeout_ms=3000,
    )
    try:
        consumer.assign([KTopicPartition(topic, 0)])
        got = []
        for message in consumer:
            got.append((message.offset, message.key, message.value))
            if len(got) == count:
                break
        return got
    finally:
        consumer.close()


def test_snapshot_ships_through_s3_into_a_running_standby(
    aws_env: S3Server, prefix: str, tmp_path: Path
) -> None:
    """produce → snapshot create → push → pull into a live broker → same records, same offsets."""
    url = aws_env.url(prefix)
    with (
        running_broker(tmp_path / "primary") as primary,
        running_broker(tmp_path / "standby") as standby,
    ):
        producer = KafkaProducer(bootstrap_servers=primary.bootstrap, acks="all")
        for i in range(30):
            producer.send("orders", key=b"k%d" % i, value=b"v%d" % i)
        producer.flush(30)
        producer.close()
        created = subprocess.run(
            [
                sys.executable,
                "-m",
                "broker",
                "--admin-url",
                f"http://127.0.0.1:{primary.admin_port}",
                "--format",
                "json",
                "snapshot",
                "create",
                "--topic",
                "orders",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert created.returncode == 0, created.stderr
        [pushed] = offsite.push(
            primary.data_dir / "snapshots", url, endpoint_url=aws_env.endpoint
        )
        assert pushed.status == "pushed"
        [pulled] = offsite.pull(url, standby.data_dir, endpoint_url=aws_env.endpoint)
        assert pulled.status == "pulled"

        expected = [(i, b"k%d" % i, b"v%d" % i) for i in range(30)]
        deadline = time.monotonic() + 20
        got: list[tuple[int, bytes, bytes]] = []
        while time.monotonic() < deadline:
            got = _consume(standby.bootstrap, "orders", 30)
            if got == expected:
                break
            time.sleep(0.5)
        assert got == expected
        snap_meta = json.loads(
            next((standby.data_dir / "snapshots").glob("*/*/meta.json")).read_text()
        )
        assert snap_meta["last_offset"] == 29
