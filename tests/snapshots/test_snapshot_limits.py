"""A snapshot whose topic would exceed the broker's partition cap is refused whole."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic

from tests.snapshots.conftest import Broker, cp_r, wait_status

pytestmark = pytest.mark.integration


def test_snapshot_beyond_the_partition_cap_is_invalid_and_left_untouched(
    brokers: Callable[..., Broker],
) -> None:
    b1 = brokers("b1")
    admin = KafkaAdminClient(bootstrap_servers=b1.bootstrap)
    admin.create_topics([NewTopic("wide", 6, 1)])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=b1.bootstrap)
    for i in range(3):
        producer.send("wide", b"v%d" % i, partition=2).get(timeout=30)
    producer.close()
    out = b1.cli(
        "--format", "json", "snapshot", "create", "--topic", "wide", "--partition", "2"
    )
    [res] = json.loads(out.stdout)
    rel = f"{res['topic_id']}/{res['snapshot_id']}"
    b2 = brokers("b2", {"AILURUS_SET": "ailurus.max.partitions=4"})
    dest = b2.data_dir / "snapshots" / rel
    cp_r(Path(str(res["path"])), dest)
    before = sorted((p.name, p.stat().st_size) for p in dest.rglob("*"))
    row = wait_status(b2, rel, "invalid")
    assert "partition-limit" in row["reason"]
    assert "at most 4" in row["reason"]
    assert not (b2.data_dir / "kafka" / "wide").exists()
    assert sorted((p.name, p.stat().st_size) for p in dest.rglob("*")) == before
