"""SIGKILL at random moments under mixed load: nothing acknowledged is lost or doubled.

Two idempotent kafka-python producers (acks=all) and a group consumer committing
after every poll run against the broker while it is killed with SIGKILL at a random
moment and restarted on the same data dir and port, again and again; the clients
are never restarted and recover with their own retries. After every restart:

- every record a producer was told is acknowledged is in the log, once, at the
  offset it was acknowledged at, and no value appears twice (idempotence survives
  the restart: an un-acknowledged batch retried after it is not appended again);
- no committed offset the broker accepted went backwards;
- every batch served from offset 0 to the high watermark passes its CRC32C check.

At the end the broker stops cleanly and every segment file on disk is read and
CRC-checked offline, and must hold exactly what was served. 10 cycles in CI, 50 in
the ``slow`` soak (``pytest -m slow tests/reliability``).
"""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

import pytest
from kafka import KafkaAdminClient

from protocol.record_builder import Record
from tests._broker import free_port
from tests.reliability._harness import (
    BrokerProcess,
    create_topic,
    fetch_all,
    launch,
    read_log_offline,
)
from tests.reliability._load import CLIENT_TIMEOUTS, Load

TOPIC = "kills"
PARTITIONS = 3
GROUP = "kill-group"

# kafka-python leaks the socket of a refused connect while the broker is down.
pytestmark = [
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


def _committed(bootstrap: str) -> dict[int, int]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, **CLIENT_TIMEOUTS)
    try:
        offsets = admin.list_group_offsets(GROUP)[GROUP]
    finally:
        admin.close()
    return {tp.partition: om.offset for tp, om in offsets.items() if tp.topic == TOPIC}


def _served(b: BrokerProcess) -> dict[int, list[Record]]:
    return {p: fetch_all(b, TOPIC, p)[1] for p in range(PARTITIONS)}


def run_kill_cycles(tmp_path: Path, cycles: int, seed: int) -> dict[str, int]:
    rng = random.Random(seed)
    port = free_port()
    b = launch(tmp_path, port=port)
    create_topic(b, TOPIC, PARTITIONS)
    load = Load(b.bootstrap, TOPIC, PARTITIONS, group=GROUP)
    load.start()
    checked = 0
    try:
        for cycle in range(cycles):
            load.running.set()
            time.sleep(rng.uniform(0.15, 0.9))
            b.proc.send_signal(signal.SIGKILL)
            b.proc.wait(timeout=10)
            commits_before = load.ledger.snapshot_commits()
            b = launch(tmp_path, port=port)
            load.pause_and_flush()
            checked = load.ledger.check_log(_served(b))
            after = _committed(b.bootstrap)
            for partition, offset in commits_before.items():
                assert after.get(partition, -1) >= offset, (
                    f"cycle {cycle}: committed offset of {partition} went from "
                    f"{offset} to {after.get(partition)}"
                )
        served = _served(b)
        load.ledger.check_log(served)
    finally:
        load.close()
        if b.proc.poll() is None:
            assert b.stop() == 0
    on_disk = {p: read_log_offline(b.data_dir, TOPIC, p) for p in range(PARTITIONS)}
    for p in range(PARTITIONS):
        high = len(served[p])
        assert on_disk[p][:high] == served[p]
    assert checked > 0
    assert load.ledger.consumed > 0
    return {
        "cycles": cycles,
        "acked": checked,
        "failed": len(load.ledger.failed),
        "consumed": load.ledger.consumed,
    }


@pytest.mark.timeout(120)
def test_sigkill_cycles_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    """10 SIGKILL/restart cycles under load lose no ack, duplicate nothing, keep commits."""
    stats = run_kill_cycles(tmp_path, cycles=10, seed=15)
    print("kill cycles:", stats)
    assert stats["failed"] == 0


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sigkill_soak_50_cycles(tmp_path: Path) -> None:
    """50 SIGKILL/restart cycles under load lose no ack, duplicate nothing, keep commits."""
    stats = run_kill_cycles(tmp_path, cycles=50, seed=1515)
    print("kill soak:", stats)
    assert stats["failed"] == 0
