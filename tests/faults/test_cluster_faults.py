"""Kafka's promise under faults: every record acknowledged to an acks=all idempotent
producer on an RF=3, min.insync.replicas=2 topic is read exactly once, in order per
partition, after leader SIGKILLs, a follower SIGSTOP past replica.lag.time.max.ms,
an etcd restart and a rolling restart (and, in the soak, two replicas down at
once, a leader killed while a follower is stopped, etcd killed); and no reader
ever sees a record that is later truncated.

Each test starts its own etcd and three brokers (the faults break them on purpose).
The bounded version runs with ``make test``; the long ones are marked slow
(``make soak``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from tests.cluster.e2e_cluster import Cluster
from tests.cluster.etcd import missing_etcd
from tests.faults.checker import History, Verdict
from tests.faults.nemesis import Nemesis, Workload

TOPIC = "faults"
PARTITIONS = 3
LAG_MS = 2000  # replica.lag.time.max.ms: a paused follower leaves the ISR soon

log = structlog.get_logger("faults")


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


@pytest.fixture
def nemesis(cluster: Cluster) -> Nemesis:
    """The topic (RF=3, min.insync.replicas=2) created and in sync, and its
    nemesis."""
    cluster.create_topic(1, TOPIC, PARTITIONS, 3, config={"min.insync.replicas": "2"})
    nemesis = Nemesis(cluster, TOPIC, PARTITIONS)
    nemesis.wait_in_sync()
    return nemesis


@pytest.fixture
def workload(cluster: Cluster, nemesis: Nemesis) -> Iterator[Workload]:
    """Two idempotent acks=all producers and a live reader, writing on every
    partition; stopped at the end, whatever happened."""
    with Workload(
        cluster, TOPIC, PARTITIONS, History(), log_path=cluster.root / "clients.log"
    ) as w:
        w.wait_progress(20, timeout=20)
        yield w


def _finish(nemesis: Nemesis, workload: Workload) -> Verdict:
    """Check every partition still takes writes, stop, read it all in a group,
    judge; the verdict (asserted clean)."""
    workload.wait_progress(20, timeout=30)
    workload.stop()
    workload.final_read(timeout=60)
    verdict = workload.history.check()
    log.info("fault_verdict", verdict=str(verdict), live_reads=workload.live_reads)
    story = "\n".join(nemesis.events)
    detail = (
        f"{verdict}\nproducer errors: {workload.errors[:10]}\n"
        f"unflushed: {workload.unflushed}\nfaults:\n{story}"
    )
    assert verdict.ok, detail
    assert workload.unflushed == 0, detail
    assert workload.live_reads > 0, detail  # the readers did read during faults
    assert verdict.final_read >= verdict.acked, detail
    return verdict


def test_acked_records_survive_leader_kills_a_paused_follower_and_etcd_restart(
    nemesis: Nemesis, workload: Workload
) -> None:
    """Two leader SIGKILLs, a follower paused past the replica lag and an etcd
    restart, under two idempotent producers: nothing acknowledged is lost,
    duplicated or reordered, and no reader saw a record that was later replaced."""
    started = time.monotonic()
    for partition in (0, 1):
        nemesis.kill_leader(partition)
        workload.wait_progress(10, timeout=20)
    nemesis.pause_follower(2, LAG_MS)
    workload.wait_progress(10, timeout=20)
    nemesis.restart_etcd()
    verdict = _finish(nemesis, workload)
    assert verdict.acked >= 300, str(verdict)
    assert time.monotonic() - started < 120, "the bounded fault run took too long"


@pytest.mark.slow
@pytest.mark.parametrize("run", range(5))  # the soak repeats it on fresh clusters
def test_acked_records_survive_ten_leader_kills_a_pause_etcd_and_a_rolling_restart(
    nemesis: Nemesis, workload: Workload, run: int
) -> None:
    """Ten leader SIGKILLs round the partitions, a follower paused past the replica
    lag, an etcd restart and a rolling restart: every acknowledged record is read
    exactly once, in order, and no reader saw a record later replaced. Five runs."""
    for i in range(10):
        nemesis.kill_leader(i % PARTITIONS)
        workload.wait_progress(10, timeout=30)
    nemesis.pause_follower(0, LAG_MS)
    workload.wait_progress(10, timeout=30)
    nemesis.restart_etcd()
    workload.wait_progress(10, timeout=30)
    nemesis.rolling_restart()
    verdict = _finish(nemesis, workload)
    assert verdict.acked >= 1000, str(verdict)


@pytest.mark.slow
def test_acked_records_survive_two_replicas_down_a_stale_follower_and_etcd_killed(
    nemesis: Nemesis, workload: Workload
) -> None:
    """Harsher faults, three rounds: a leader and its successor SIGKILLed (two of
    three replicas down), a leader SIGKILLed while a follower is stopped, and etcd
    SIGKILLed: still nothing acknowledged is lost, duplicated or reordered, and no
    reader saw a record later replaced."""
    for i in range(3):
        nemesis.kill_leader_and_successor(i % PARTITIONS)
        workload.wait_progress(10, timeout=40)
        nemesis.kill_leader_while_follower_paused((i + 1) % PARTITIONS, LAG_MS)
        workload.wait_progress(10, timeout=40)
        nemesis.kill_etcd()
    verdict = _finish(nemesis, workload)
    assert verdict.acked >= 1000, str(verdict)
