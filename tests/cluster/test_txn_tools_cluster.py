"""Transaction tooling in a cluster: real etcd and three brokers.

Transactional ids spread over the four ``__transaction_state`` partitions (so over
several coordinators) each hold an open transaction. Our client's ListTransactions
asks every broker and reports each id with the coordinator FindCoordinator names;
DescribeTransactions goes to each id's coordinator (another broker answers
NOT_COORDINATOR); kafka-python's admin client agrees; ``ailurus txn`` lists them
through any one broker; ``ailurus cluster health`` pointed at one broker names a
stuck transaction that another broker coordinates.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer
from kafka.admin import KafkaAdminClient

from broker.client import KafkaClient
from broker.client import transactions as txn_ops
from broker.transactions.txn_log import partition_for
from protocol.error_codes import ErrorCode
from protocol.messages.describe_transactions import (
    DescribeTransactionsRequest,
    DescribeTransactionsResponse,
)
from protocol.messages.find_coordinator import (
    FindCoordinatorRequest,
    FindCoordinatorResponse,
)
from tests._broker import request
from tests.cluster.e2e_cluster import Cluster, wait_for

TOPIC = "txtools"
LOG_PARTITIONS = 4
TIMEOUT_S = 60.0
AILURUS = Path(sys.executable).parent / "ailurus"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(
        tmp_path,
        broker_args=(
            "--set",
            f"transaction.state.log.num.partitions={LOG_PARTITIONS}",
            # no sweep during the test: a transaction past its timeout stays open
            "--set",
            "transaction.abort.timed.out.transaction.cleanup.interval.ms=600000",
        ),
    )
    try:
        c.start()
        yield c
    finally:
        c.close()


def _ids() -> list[str]:
    """One transactional id per ``__transaction_state`` partition."""
    by_partition: dict[int, str] = {}
    n = 0
    while len(by_partition) < LOG_PARTITIONS:
        by_partition.setdefault(partition_for(f"tt-{n}", LOG_PARTITIONS), f"tt-{n}")
        n += 1
    return [by_partition[p] for p in sorted(by_partition)]


def _coordinator(cluster: Cluster, txn_id: str) -> int:
    with cluster.brokers[min(cluster.live)].connect() as sock:
        resp = request(sock, 10, 3, FindCoordinatorRequest(key=txn_id, key_type=1))
    assert isinstance(resp, FindCoordinatorResponse)
    return resp.node_id if resp.error_code == ErrorCode.NONE else 0


def _open(bootstrap: str, txn_id: str, **config: object) -> Producer:
    producer = Producer(
        {"bootstrap.servers": bootstrap, "transactional.id": txn_id, **config}
    )
    producer.init_transactions(TIMEOUT_S)
    producer.begin_transaction()
    producer.produce(TOPIC, value=txn_id.encode(), partition=0)
    assert producer.flush(TIMEOUT_S) == 0
    return producer


def test_listing_asks_every_broker_and_describe_asks_the_coordinator(
    cluster: Cluster,
) -> None:
    """Every open transaction is listed with its coordinator and described by it;
    health through one broker warns of a stuck one wherever it is coordinated."""
    cluster.create_topic(1, TOPIC, 1, replication_factor=3)
    cluster.wait_leaders(TOPIC, 1)
    bootstrap = ",".join(cluster.bootstrap(i) for i in sorted(cluster.live))
    ids = _ids()
    stuck_id = ids[-1]
    producers = [
        _open(
            bootstrap, i, **({"transaction.timeout.ms": 1000} if i == stuck_id else {})
        )
        for i in ids
    ]
    try:
        coordinators = {
            i: wait_for("a coordinator", lambda i=i: _coordinator(cluster, i))
            for i in ids
        }
        assert len(set(coordinators.values())) > 1
        with KafkaClient(cluster.bootstrap(1)) as client:
            listed = {t.transactional_id: t for t in txn_ops.list_transactions(client)}
            assert {i: listed[i].coordinator for i in ids} == coordinators
            assert all(listed[i].state == "Ongoing" for i in ids)
            for i in ids:
                desc = txn_ops.describe_transaction(client, i)
                assert desc.coordinator == coordinators[i]
                assert desc.state == "Ongoing"
                assert desc.partitions == ((TOPIC, 0),)

        other = next(n for n in sorted(cluster.live) if n != coordinators[ids[0]])
        with cluster.brokers[other].connect() as sock:
            resp = request(
                sock, 65, 0, DescribeTransactionsRequest(transactional_ids=(ids[0],))
            )
        assert isinstance(resp, DescribeTransactionsResponse)
        assert resp.transaction_states[0].error_code == ErrorCode.NOT_COORDINATOR

        admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap(2))
        try:
            by_node = admin.list_transactions()
            seen = {
                t.transactional_id: node for node, ts in by_node.items() for t in ts
            }
            assert {i: seen[i] for i in ids} == coordinators
            described = admin.describe_transactions(ids)
            assert {i: d.coordinator_id for i, d in described.items()} == coordinators
        finally:
            admin.close()

        env_args = ["--brokers", cluster.bootstrap(3)]
        out = subprocess.run(
            [
                str(AILURUS),
                *env_args,
                "--format",
                "json",
                "txn",
                "list",
                "--state",
                "Ongoing",
            ],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            check=False,
        )
        assert out.returncode == 0, out.stderr
        rows = {
            r["transactional_id"]: r["coordinator"]
            for r in json.loads(out.stdout)["transactions"]
        }
        assert {i: rows[i] for i in ids} == coordinators

        watcher = next(n for n in sorted(cluster.live) if n != coordinators[stuck_id])
        admin_url = cluster.brokers[watcher].admin_url

        def warned() -> dict[str, object] | None:
            health = subprocess.run(
                [
                    str(AILURUS),
                    "--brokers",
                    cluster.bootstrap(watcher),
                    "--admin-url",
                    admin_url,
                    "--format",
                    "json",
                    "cluster",
                    "health",
                ],
                capture_output=True,
                text=True,
                timeout=TIMEOUT_S,
                check=False,
            )
            doc = json.loads(health.stdout)
            return doc if doc["stuck_transactions"] else None

        doc = wait_for("a stuck transaction warning", warned, timeout=TIMEOUT_S)
        assert doc["stuck_transactions"] == [stuck_id]
        assert doc["warnings"] == ["stuck_transactions"]
    finally:
        for p in producers:
            p.abort_transaction(TIMEOUT_S)
