"""Kafka's promise under faults: every record acknowledged to an acks=all idempotent
producer on an RF=3, min.insync.replicas=2 topic is read exactly once, in order per
partition, after leader SIGKILLs, a follower SIGSTOP past replica.lag.time.max.ms,
an etcd restart and a rolling restart; and no reader ever sees a record that is
later truncated.

Each test starts its own etcd and three brokers (the faults break them on purpose).
The bounded version runs with ``make test``; the long one is marked slow
(``make soak``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.e2e_cluster import Cluster
from tests.cluster.etcd import missing_etcd
from tests.faults.checker import History, Verdict
from tests.faults.nemesis import Nemesis, Workload

TOPIC = "faults"
PARTITIONS = 3
LAG_MS = 2000  # replica.lag.time.max.ms: a paused follower leaves the ISR soon


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """etcd and brokers 1, 2, 3 with a short replica lag, settled; killed after."""
    if (why := missing_etcd()) is not None:
        pytest.fail(why, pytrace=False)
    c = Cluster(tmp_path, broker_args=["--set", f"replica.lag.time.max.ms={LAG_MS}"])
    try:
        c.start()
        yield c
    finally:
        c.close()


def _setup(cluster: Cluster) -> tuple[Nemesis, Workload, History]:
    cluster.create_topic(1, TOPIC, PARTITIONS, 3, config={"min.insync.replicas": "2"})
    nemesis = Nemesis(cluster, TOPIC, PARTITIONS)
    nemesis.wait_in_sync()
    history = History()
    workload = Workload(cluster, TOPIC, PARTITIONS, history)
    workload.start()
    workload.wait_progress(20, timeout=20)
    return nemesis, workload, history


def _finish(nemesis: Nemesis, workload: Workload, history: History) -> Verdict:
    workload.wait_progress(20, timeout=30)  # every partition still takes writes
    workload.stop()
    workload.final_read(timeout=60)
    verdict = history.check()
    story = "\n".join(nemesis.events)
    detail = (
        f"{verdict}\nproducer errors: {workload.errors[:10]}\n"
        f"unflushed: {workload.unflushed}\nfaults:\n{story}"
    )
    assert verdict.ok, detail
    assert workload.unflushed == 0, detail
    return verdict


def test_acked_records_survive_leader_kills_a_paused_follower_and_etcd_restart(
    cluster: Cluster,
) -> None:
    """Two leader SIGKILLs, a follower paused past the replica lag and an etcd
    restart, under two idempotent producers: nothing acknowledged is lost,
    duplicated or reordered, and no reader saw a record that was later replaced."""
    started = time.monotonic()
    nemesis, workload, history = _setup(cluster)
    for partition in (0, 1):
        nemesis.kill_leader(partition)
        workload.wait_progress(10, timeout=20)
    nemesis.pause_follower(2, LAG_MS)
    workload.wait_progress(10, timeout=20)
    nemesis.restart_etcd()
    verdict = _finish(nemesis, workload, history)
    assert verdict.acked >= 300, str(verdict)
    assert verdict.final_read >= verdict.acked
    assert time.monotonic() - started < 120, "the bounded fault run took too long"


@pytest.mark.slow
def test_acked_records_survive_ten_leader_kills_a_pause_etcd_and_a_rolling_restart(
    cluster: Cluster,
) -> None:
    """Ten leader SIGKILLs round the partitions, a follower paused past the replica
    lag, an etcd restart and a rolling restart: every acknowledged record is read
    exactly once, in order, and no reader saw a record later replaced."""
    nemesis, workload, history = _setup(cluster)
    for i in range(10):
        nemesis.kill_leader(i % PARTITIONS)
        workload.wait_progress(10, timeout=30)
    nemesis.pause_follower(0, LAG_MS)
    workload.wait_progress(10, timeout=30)
    nemesis.restart_etcd()
    workload.wait_progress(10, timeout=30)
    nemesis.rolling_restart()
    verdict = _finish(nemesis, workload, history)
    assert verdict.acked >= 1000, str(verdict)
