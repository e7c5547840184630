"""The admin API's cluster routes on a single node: ``/v1/brokers``, ``/v1/cluster``,
``/v1/partitions[/{topic}]``, the elect and reassign writes (refused with a reason,
behind the admin token) and the cluster families of ``/metrics``."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from prometheus_client.parser import text_string_to_metric_families

from tests._broker import BrokerProcess, start_broker

pytestmark = pytest.mark.integration

TOKEN = "cluster-routes-admin-token"


def call(
    b: BrokerProcess,
    method: str,
    path: str,
    body: object | None = None,
    token: str | None = TOKEN,
) -> tuple[int, object]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(b.admin_url + path, data=data, method=method)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status), json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    b = start_broker(tmp_path / "data", env={"AILURUS_ADMIN_TOKEN": TOKEN})
    try:
        yield b
    finally:
        assert b.stop() == 0


def test_cluster_routes_describe_a_cluster_of_one(broker: BrokerProcess) -> None:
    """One live broker, its own controller, leading and hosting every partition;
    per-partition state with this broker's offsets; healthy."""
    topic = f"routes-{uuid.uuid4().hex[:6]}"
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        admin.create_topics([NewTopic(topic, 2, 1)])
    finally:
        admin.close()
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    try:
        for i in range(3):
            producer.send(topic, f"v{i}".encode(), partition=1).get(timeout=10)
    finally:
        producer.close(timeout=5)

    # public: no token needed, like the readiness probe
    status, brokers = call(broker, "GET", "/v1/brokers", token=None)
    assert status == 200
    assert isinstance(brokers, list)
    [me] = brokers
    assert (me["node_id"], me["is_controller"], me["is_self"]) == (0, True, True)
    assert (me["leader_partitions"], me["replica_partitions"]) == (2, 2)
    assert [(e["host"], e["port"]) for e in me["endpoints"]] == [
        (broker.host, broker.port)
    ]
    assert me["admin"]["port"] == int(broker.admin_url.rsplit(":", 1)[1])

    assert call(broker, "GET", "/v1/cluster", token=None)[0] == 401
    status, overview = call(broker, "GET", "/v1/cluster")
    assert status == 200
    assert isinstance(overview, dict)
    assert {
        k: overview[k]
        for k in (
            "clustered",
            "controller_id",
            "brokers",
            "partitions",
            "offline_partitions",
            "healthy",
        )
    } == {
        "clustered": False,
        "controller_id": 0,
        "brokers": 1,
        "partitions": 2,
        "offline_partitions": 0,
        "healthy": True,
    }

    status, rows = call(broker, "GET", f"/v1/partitions/{topic}")
    assert status == 200
    assert isinstance(rows, list)
    assert [
        (r["partition"], r["leader"], r["leader_epoch"], r["replicas"], r["isr"])
        for r in rows
    ] == [(0, 0, 0, [0], [0]), (1, 0, 0, [0], [0])]
    assert [r["local"]["high_watermark"] for r in rows] == [0, 3]
    assert call(broker, "GET", "/v1/partitions/no-such-topic")[0] == 404


def test_partition_writes_need_the_token_and_cluster_mode(
    broker: BrokerProcess,
) -> None:
    """Without the token: 401. With it, a single node answers 400 and says why."""
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
    try:
        producer.send("writes", b"v").get(timeout=10)
    finally:
        producer.close(timeout=5)
    for path, body in (
        ("/v1/partitions/writes/0/elect", {}),
        ("/v1/partitions/writes/0/reassign", {"replicas": [1, 2]}),
    ):
        assert call(broker, "POST", path, body, token=None)[0] == 401
        status, answer = call(broker, "POST", path, body)
        assert status == 400
        assert isinstance(answer, dict)
        assert "single node" in answer["error"]


def test_metrics_report_the_cluster_of_one(broker: BrokerProcess) -> None:
    """The cluster gauges say one broker, this one the controller, leading the
    partitions there are, none offline; the counters start at zero."""
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
    try:
        producer.send("gauges", b"v").get(timeout=10)
    finally:
        producer.close(timeout=5)
    req = urllib.request.Request(broker.admin_url + "/metrics")
    req.add_header("Authorization", f"Bearer {TOKEN}")
    with urllib.request.urlopen(req, timeout=10) as resp:
        text = resp.read().decode()
    values = {
        s.name: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if not s.labels
    }
    status, overview = call(broker, "GET", "/v1/cluster")
    assert status == 200
    assert isinstance(overview, dict)
    assert values["ailurus_cluster_brokers"] == 1
    assert values["ailurus_cluster_is_controller"] == 1
    assert values["ailurus_cluster_controller_id"] == 0
    assert values["ailurus_partitions_leader"] == overview["partitions"] >= 1
    assert values["ailurus_partitions_offline"] == 0
    assert values["ailurus_leader_changes_total"] == 0
    assert values["ailurus_etcd_unavailable_total"] == 0
