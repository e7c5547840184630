"""A three-broker cluster under failures, with real clients: a killed controller,
a killed broker and its return, etcd stopped mid-produce, and a SIGTERM.

Each test starts its own etcd and brokers (they break the cluster on purpose).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer

from protocol.messages.create_topics import (
    CreatableTopic,
    CreateTopicsRequest,
    CreateTopicsResponse,
)
from tests._broker import request
from tests.cluster.e2e_cluster import SESSION_MS, Cluster, wait_for
from tests.integration._cli_drivers import KCAT_HEADERS
from tests.integration._client_drivers import ConfluentDriver, KafkaPythonDriver, Rec

AILURUS = Path(sys.executable).parent / "ailurus"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """etcd and brokers 1, 2, 3, settled; everything killed at the end."""
    c = Cluster(tmp_path)
    try:
        c.start()
        yield c
    finally:
        c.close()


def _records(tag: str, partitions: list[int], n: int) -> list[Rec]:
    return [
        Rec(
            partition=p,
            key=f"k{p}-{i}".encode(),
            value=f"{tag}-{p}-{i}".encode(),
            headers=KCAT_HEADERS,
            timestamp=None,
        )
        for p in partitions
        for i in range(n)
    ]


def _values(got: dict[int, list[Rec]]) -> dict[int, list[bytes | None]]:
    return {p: [r.value for r in recs] for p, recs in got.items()}


def _cli(cluster: Cluster, node: int, *args: str) -> subprocess.CompletedProcess[str]:
    b = cluster.brokers[node]
    return subprocess.run(
        [str(AILURUS), "--brokers", b.bootstrap, "--admin-url", b.admin_url, *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )


def test_a_killed_controller_is_replaced_and_topics_can_be_created(
    cluster: Cluster,
) -> None:
    """kill -9 of the controller: a CreateTopics sent at once is applied by the
    next controller, elected within the session timeout; every survivor names it,
    and a client's CreateTopics through a survivor works."""
    first = cluster.controller()
    assert first is not None
    cluster.kill(first)
    started = time.monotonic()
    # sent before any broker is controller: it waits for the next one
    survivor = next(i for i in (1, 2, 3) if i != first)
    with cluster.brokers[survivor].connect() as sock:
        sock.settimeout(30)
        early = request(
            sock,
            19,
            4,
            CreateTopicsRequest(
                topics=(
                    CreatableTopic(
                        name="during-failover", num_partitions=4, replication_factor=1
                    ),
                ),
                timeout_ms=20_000,
            ),
        )
    assert isinstance(early, CreateTopicsResponse)
    assert [(t.name, t.error_code) for t in early.topics] == [("during-failover", 0)]
    assert set(cluster.wait_leaders("during-failover", 4).values()) <= set(cluster.live)
    new = wait_for(
        "a new controller",
        lambda: (c := cluster.controller()) not in (None, first) and c,
    )
    assert time.monotonic() - started < SESSION_MS / 1000 + 3
    survivors = sorted(cluster.live)
    assert new in survivors
    for i in survivors:
        wait_for(
            f"broker {i} to name controller {new}",
            lambda i=i: cluster.metadata(i).controller_id == new,
        )
    topic = "after-failover"
    cluster.create_topic(survivors[0], topic, 6)
    leaders = cluster.wait_leaders(topic, 6)
    assert set(leaders.values()) <= set(survivors)
    driver = ConfluentDriver()
    sent = _records("f", list(range(6)), 3)
    driver.produce(cluster.bootstrap(survivors[1]), topic, "none", sent)
    got = driver.read(
        cluster.bootstrap(survivors[0]), topic, dict.fromkeys(range(6), ("earliest", 3))
    )
    assert _values(got) == {
        p: [f"f-{p}-{i}".encode() for i in range(3)] for p in range(6)
    }


def test_a_killed_broker_takes_its_partitions_offline_until_it_returns(
    cluster: Cluster,
) -> None:
    """kill -9 of a non-controller: its RF=1 partitions report no leader while the
    others keep serving produce and fetch and the cluster reports unhealthy; back
    on the same data dir, they return with a higher leader epoch and their data."""
    topic = "offline"
    cluster.create_topic(1, topic, 12)
    leaders = cluster.wait_leaders(topic, 12)
    victim = cluster.non_controller()
    theirs = sorted(p for p, n in leaders.items() if n == victim)
    ours = sorted(p for p, n in leaders.items() if n != victim)
    assert theirs
    assert ours
    survivor = next(i for i in (1, 2, 3) if i != victim)
    driver = ConfluentDriver()
    before = _records("before", list(range(12)), 4)
    driver.produce(cluster.bootstrap(survivor), topic, "none", before)
    epochs = {
        r["partition"]: r["leader_epoch"]
        for r in cluster.brokers[survivor].admin("GET", f"/v1/partitions/{topic}")
    }

    cluster.kill(victim)
    for i in (n for n in (1, 2, 3) if n != victim):
        wait_for(
            f"broker {i} to report {victim}'s partitions leaderless",
            lambda i=i: all(
                leader == -1
                for p, leader in cluster.leaders(i, topic).items()
                if p in theirs
            ),
        )
        md = cluster.metadata(i, topic).topics[topic]
        assert victim not in cluster.metadata(i).brokers
        for p in theirs:
            assert md.partitions[p].error is not None
            assert md.partitions[p].error.name() == "LEADER_NOT_AVAILABLE"
        assert all(md.partitions[p].leader == leaders[p] for p in ours)

    during = _records("during", ours, 3)
    driver.produce(cluster.bootstrap(survivor), topic, "none", during)
    got = driver.read(
        cluster.bootstrap(survivor), topic, dict.fromkeys(ours, ("earliest", 7))
    )
    for p in ours:
        assert [r.value for r in got[p]] == [
            f"before-{p}-{i}".encode() for i in range(4)
        ] + [f"during-{p}-{i}".encode() for i in range(3)]

    health = _cli(cluster, survivor, "--format", "json", "cluster", "health")
    assert health.returncode == 1, health.stdout + health.stderr
    report = json.loads(health.stdout)
    assert report["healthy"] is False
    assert "leaderless_partitions" in report["unhealthy_reasons"]
    assert {f"{topic}/{p}" for p in theirs} <= set(report["offline_partitions"])
    state = cluster.brokers[survivor].admin("GET", "/v1/cluster")
    assert state["healthy"] is False
    assert victim not in state["broker_ids"]
    rows = cluster.brokers[survivor].admin("GET", f"/v1/partitions/{topic}")
    assert sorted(r["partition"] for r in rows if r["leaderless"]) == theirs

    cluster.start_broker(victim)
    cluster.wait_settled()
    back = cluster.wait_leaders(topic, 12)
    assert all(back[p] == victim for p in theirs)
    after = {
        r["partition"]: r["leader_epoch"]
        for r in cluster.brokers[survivor].admin("GET", f"/v1/partitions/{topic}")
    }
    assert all(after[p] > epochs[p] for p in theirs)
    # the returned broker counts the leaderships it took up again
    assert cluster.metric(victim, "ailurus_leader_changes_total") >= len(theirs)
    got = driver.read(
        cluster.bootstrap(survivor), topic, dict.fromkeys(theirs, ("earliest", 4))
    )
    assert _values(got) == {
        p: [f"before-{p}-{i}".encode() for i in range(4)] for p in theirs
    }
    assert _cli(cluster, survivor, "cluster", "health").returncode == 0


def test_brokers_keep_serving_through_an_etcd_outage(cluster: Cluster) -> None:
    """etcd stopped for 3 s while a producer keeps producing: every record is
    delivered and read back, the registrations survive, and CreateTopics works
    once etcd is back."""
    topic = "outage"
    cluster.create_topic(1, topic, 6)
    cluster.wait_leaders(topic, 6)
    producer = Producer(
        {
            "bootstrap.servers": cluster.bootstrap(2),
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
        }
    )
    delivered: list[tuple[int, bytes]] = []
    errors: list[object] = []
    stop = threading.Event()

    def on_delivery(err: object, msg: object) -> None:
        if err is not None:
            errors.append(err)
        else:
            delivered.append((msg.partition(), msg.value()))  # type: ignore[attr-defined]

    def produce() -> None:
        i = 0
        while not stop.is_set():
            producer.produce(
                topic, f"v{i}".encode(), key=f"k{i}".encode(), on_delivery=on_delivery
            )
            producer.poll(0.01)
            i += 1
        producer.flush(30)

    t = threading.Thread(target=produce)
    t.start()
    try:
        wait_for("records before the outage", lambda: len(delivered) > 20)
        cluster.etcd.stop()
        outage_start = len(delivered)
        outage_ends = time.monotonic() + 3
        # a new consumer (Metadata, ListOffsets, Fetch) is served meanwhile
        early = list(delivered[:10])
        read = KafkaPythonDriver().read(
            cluster.bootstrap(3),
            topic,
            {p: ("earliest", sum(1 for q, _ in early if q == p)) for p, _ in early},
        )
        for p, recs in read.items():  # a poll may bring more than asked for
            expected = [v for q, v in early if q == p]
            assert [r.value for r in recs][: len(expected)] == expected
        read_during_outage = time.monotonic() < outage_ends
        time.sleep(max(0.0, outage_ends - time.monotonic()))
        during = len(delivered) - outage_start
        cluster.etcd.start()
        wait_for(
            "records after the outage",
            lambda: len(delivered) > outage_start + during + 20,
        )
    finally:
        stop.set()
        t.join(60)
    assert errors == []
    assert during > 0  # leaders kept taking records while etcd was down
    assert read_during_outage
    per_partition: dict[int, list[bytes]] = {}
    for partition, value in delivered:
        per_partition.setdefault(partition, []).append(value)
    got = ConfluentDriver().read(
        cluster.bootstrap(3),
        topic,
        {p: ("earliest", len(v)) for p, v in per_partition.items()},
    )
    assert {p: [r.value for r in recs] for p, recs in got.items()} == per_partition
    wait_for("every registration", lambda: cluster.registered() == [1, 2, 3])
    for i, b in cluster.brokers.items():
        assert b.proc.poll() is None
        # once per broker, though the cache and the controller both watch
        assert len(b.events("etcd_unavailable")) == 1, i
        wait_for(f"broker {i} to reconnect", lambda b=b: b.events("etcd_reconnected"))
        assert len(b.events("etcd_reconnected")) == 1, i
        assert cluster.metric(i, "ailurus_etcd_unavailable_total") == 1
    cluster.create_topic(3, "after-outage", 3)
    assert len(cluster.wait_leaders("after-outage", 3)) == 3


def test_sigterm_removes_the_registration_at_once_and_the_rest_keep_serving(
    cluster: Cluster,
) -> None:
    """SIGTERM of a broker: its registration is gone when it exits, every
    survivor drops it from Metadata, and a client's produce to the rest works."""
    topic = "sigterm"
    cluster.create_topic(1, topic, 9)
    leaders = cluster.wait_leaders(topic, 9)
    victim = cluster.non_controller()
    assert cluster.stop(victim) == 0
    assert victim not in cluster.registered()
    survivors = [i for i in (1, 2, 3) if i != victim]
    for i in survivors:
        wait_for(
            f"broker {i} to drop {victim}",
            lambda i=i: victim not in cluster.metadata(i).brokers,
            timeout=SESSION_MS / 1000,
        )
    ours = sorted(p for p, n in leaders.items() if n != victim)
    driver = ConfluentDriver()
    sent = _records("t", ours, 3)
    driver.produce(cluster.bootstrap(survivors[0]), topic, "none", sent)
    got = driver.read(
        cluster.bootstrap(survivors[1]), topic, dict.fromkeys(ours, ("earliest", 3))
    )
    assert _values(got) == {p: [f"t-{p}-{i}".encode() for i in range(3)] for p in ours}
