"""``/metrics`` of a real two-broker cluster: the cluster gauges, leader changes
counted as each broker logs them, and one etcd outage counted once per broker."""

from __future__ import annotations

import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

from confluent_kafka.admin import AdminClient, NewTopic
from prometheus_client.parser import text_string_to_metric_families

from tests._broker import BrokerProcess, start_cluster_broker
from tests.cluster.etcd import EtcdProcess

SESSION_MS = 3000


def metrics(b: BrokerProcess) -> dict[str, float]:
    """The unlabelled samples of the broker's ``/metrics``, parsed by
    prometheus-client."""
    with urllib.request.urlopen(b.admin_url + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {
        s.name: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if not s.labels
    }


# the reasons of the replica manager's leader_changed (this broker's own leadership);
# the controller logs the same event for its decisions (created, broker_lost, ...)
LOCAL_REASONS = {"elected", "moved", "offline"}


def local_leader_changes(b: BrokerProcess) -> int:
    """How many times the broker logged that it became or stopped being a leader."""
    return sum(1 for e in b.events("leader_changed") if e["reason"] in LOCAL_REASONS)


def wait(what: str, cond: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_cluster_metrics_count_leader_changes_and_etcd_outages(
    tmp_path: Path, etcd: EtcdProcess
) -> None:
    """Both brokers count two live brokers and one controller; each one's
    ``ailurus_leader_changes_total`` equals its own ``leader_changed`` events (also
    after a controlled shutdown moves leaderships to it); an etcd restart counts
    one outage on each broker."""
    brokers = [
        start_cluster_broker(
            tmp_path / f"data-{n}",
            n,
            etcd.url("/metrics"),
            session_timeout_ms=SESSION_MS,
            log_dir=tmp_path / f"logs-{n}",
        )
        for n in (1, 2)
    ]
    try:
        topic = f"m-{uuid.uuid4().hex[:6]}"
        admin = AdminClient({"bootstrap.servers": brokers[0].bootstrap})
        admin.create_topics([NewTopic(topic, 4, 2)])[topic].result(timeout=30)

        def counted(b: BrokerProcess) -> bool:
            m = metrics(b)
            return m["ailurus_leader_changes_total"] == local_leader_changes(b)

        def settled() -> bool:
            values = [metrics(b) for b in brokers]
            return (
                all(v["ailurus_cluster_brokers"] == 2 for v in values)
                and sum(v["ailurus_cluster_is_controller"] for v in values) == 1
                and sum(v["ailurus_partitions_leader"] for v in values) >= 4
                and all(counted(b) for b in brokers)
            )

        wait("both brokers to see the topic and count their leaderships", settled)
        before = [metrics(b) for b in brokers]
        assert all(v["ailurus_etcd_unavailable_total"] == 0 for v in before)
        # each broker led something once the topic's 4 partitions were placed
        assert all(v["ailurus_leader_changes_total"] >= 1 for v in before)

        etcd.stop()
        wait(
            "both brokers to log the outage",
            lambda: all(b.events("etcd_unavailable") for b in brokers),
        )
        etcd.start()
        wait(
            "both brokers to reconnect",
            lambda: all(b.events("etcd_reconnected") for b in brokers),
        )
        for b in brokers:
            assert len(b.events("etcd_unavailable")) == 1, [
                e for e in b.logs() if e["event"].startswith("etcd")
            ]
            assert metrics(b)["ailurus_etcd_unavailable_total"] == 1

        # broker 2 stops: controlled shutdown moves its leaderships of the RF=2
        # topic to broker 1, which counts each one
        led_by_2 = [
            r["partition"]
            for r in brokers[0].admin("GET", f"/v1/partitions/{topic}")
            if r["leader"] == 2
        ]
        changes = metrics(brokers[0])["ailurus_leader_changes_total"]
        assert brokers[1].stop() == 0
        wait(
            "broker 1 to lead the topic's every partition",
            lambda: all(
                r["leader"] == 1
                for r in brokers[0].admin("GET", f"/v1/partitions/{topic}")
            ),
        )
        wait("broker 1 to count its new leaderships", lambda: counted(brokers[0]))
        after = metrics(brokers[0])
        assert after["ailurus_leader_changes_total"] >= changes + len(led_by_2)
        assert after["ailurus_cluster_brokers"] == 1
        assert after["ailurus_etcd_unavailable_total"] == 1
    finally:
        for b in brokers:
            b.kill()
