"""What the broker logs when it opens its data dir: warnings only for real repairs.

A new data dir is a clean start (INFO); an unclean stop that damaged nothing is one
INFO line counting the re-verified partitions; a torn tail still gets its WARNING.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from kafka import KafkaProducer

from tests._broker import BrokerProcess

PARTITIONS = 4


def _warnings(b: BrokerProcess) -> list[dict[str, Any]]:
    return [e for e in b.logs() if e.get("level") in ("warning", "error", "critical")]


def _produce_to_every_partition(b: BrokerProcess, topic: str) -> None:
    producer = KafkaProducer(bootstrap_servers=b.bootstrap, acks="all")
    try:
        for i in range(PARTITIONS * 3):
            producer.send(topic, b"v%d" % i, partition=i % PARTITIONS).get(timeout=10)
    finally:
        producer.close()


def test_new_data_dir_is_a_clean_start(
    broker_factory: Callable[..., BrokerProcess], tmp_path: Path
) -> None:
    """A data dir that does not exist yet opens as a clean start, without warnings."""
    b = broker_factory(data_dir=tmp_path / "fresh")
    (opened,) = b.events("storage_open")
    assert opened["level"] == "info"
    assert opened["start"] == "new"
    assert opened["clean_start"] is True
    assert opened["verified_partitions"] == 0
    assert not b.events("recovery")
    assert _warnings(b) == []
    assert b.stop() == 0


def test_unclean_stop_without_damage_logs_one_info_line(
    broker_factory: Callable[..., BrokerProcess], tmp_path: Path
) -> None:
    """After SIGKILL, partitions whose tails verify intact get no WARNING each."""
    data_dir = tmp_path / "data"
    b = broker_factory("--set", f"num.partitions={PARTITIONS}", data_dir=data_dir)
    _produce_to_every_partition(b, "intact")
    b.kill()
    again = broker_factory(data_dir=data_dir)
    (opened,) = again.events("storage_open")
    assert opened["level"] == "info"
    assert opened["start"] == "recovered"
    assert opened["clean_start"] is False
    assert opened["partitions"] == PARTITIONS
    assert opened["verified_partitions"] == PARTITIONS
    assert opened["repaired_partitions"] == 0
    assert not again.events("recovery")
    assert _warnings(again) == []
    assert again.stop() == 0


def test_torn_tail_is_still_a_warning(
    broker_factory: Callable[..., BrokerProcess], tmp_path: Path
) -> None:
    """A partition whose tail recovery cuts is reported, alone, at WARNING."""
    data_dir = tmp_path / "data"
    b = broker_factory("--set", f"num.partitions={PARTITIONS}", data_dir=data_dir)
    _produce_to_every_partition(b, "torn")
    b.kill()
    segment = data_dir / "kafka" / "torn" / "2" / "00000000000000000000.log"
    with segment.open("ab") as f:
        f.write(b"\x00\x00\x00\x00\x00\x00\x00\x09\x00\x00\x01\x00half a batch")
    again = broker_factory(data_dir=data_dir)
    (opened,) = again.events("storage_open")
    assert opened["start"] == "recovered"
    assert opened["repaired_partitions"] == 1
    recovered = again.events("recovery")
    assert [(e["level"], e["topic"], e["partition"]) for e in recovered] == [
        ("warning", "torn", 2)
    ]
    assert recovered[0]["truncated"] is True
    assert recovered[0]["truncated_bytes"] > 0
    assert again.stop() == 0
