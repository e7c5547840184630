"""Transaction tooling against a real broker and real transactional producers.

One broker for the module, its timeout sweep slowed to ten minutes so that a
transaction open past its timeout stays open (stuck) for the health checks; each
test its own topic and transactional ids. A confluent-kafka transactional producer
opens a transaction: ListTransactions and DescribeTransactions show it Ongoing with
its partitions (through our client, kafka-python's admin client — confluent-kafka
2.16 has no transaction admin calls — and ``ailurus txn``), and DescribeProducers
names the transaction's first offset; CompleteCommit after the commit; the state, producer id and duration filters; the transaction gauges,
``GET /v1/cluster`` and ``ailurus cluster health`` report a stuck transaction; a
group's read_committed lag stops at the last stable offset.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from kafka.admin import KafkaAdminClient
from kafka.errors import TransactionalIdNotFoundError

from broker.client import KafkaClient
from broker.client import groups as group_ops
from broker.client import transactions as txn_ops
from broker.client.errors import KafkaError
from protocol.error_codes import ErrorCode
from protocol.messages import describe_producers as dp
from protocol.messages.list_transactions import (
    ListTransactionsRequest,
    ListTransactionsResponse,
)
from tests._broker import BrokerProcess, request, start_broker

pytestmark = pytest.mark.integration

TIMEOUT_S = 30.0
AILURUS = Path(sys.executable).parent / "ailurus"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    tmp: Path = tmp_path_factory.mktemp("txntools")
    b = start_broker(
        tmp / "data",
        "--set",
        "transaction.abort.timed.out.transaction.cleanup.interval.ms=600000",
        log_dir=tmp / "logs",
    )
    try:
        yield b
    finally:
        assert b.stop() == 0


def _create(broker: BrokerProcess, topic: str, partitions: int = 2) -> None:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(TIMEOUT_S)


def _open(
    broker: BrokerProcess, txn_id: str, topic: str, partitions: int, **config: object
) -> Producer:
    """A transactional producer with a transaction open on ``partitions``."""
    producer = Producer(
        {"bootstrap.servers": broker.bootstrap, "transactional.id": txn_id, **config}
    )
    producer.init_transactions(TIMEOUT_S)
    producer.begin_transaction()
    for p in range(partitions):
        producer.produce(topic, value=b"open", partition=p)
    assert producer.flush(TIMEOUT_S) == 0
    return producer


def _cli(broker: BrokerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(AILURUS),
            "--brokers",
            broker.bootstrap,
            "--admin-url",
            broker.admin_url,
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )


def _get(broker: BrokerProcess, path: str) -> object:
    with urllib.request.urlopen(broker.admin_url + path, timeout=TIMEOUT_S) as r:
        body = r.read()
    return body.decode() if path == "/metrics" else json.loads(body)


def _txn_start_offsets(broker: BrokerProcess, topic: str, pid: int) -> list[int]:
    """DescribeProducers' current_txn_start_offset of ``pid`` on partitions 0, 1."""
    with request_socket(broker) as sock:
        resp = request(
            sock,
            61,
            0,
            dp.DescribeProducersRequest(
                topics=(dp.TopicRequest(name=topic, partition_indexes=(0, 1)),)
            ),
        )
    assert isinstance(resp, dp.DescribeProducersResponse)
    return [
        next(
            s.current_txn_start_offset
            for s in p.active_producers
            if s.producer_id == pid
        )
        for p in sorted(resp.topics[0].partitions, key=lambda p: p.partition_index)
    ]


def test_open_transaction_is_listed_and_described_then_complete_commit(
    broker: BrokerProcess,
) -> None:
    """An open transaction shows Ongoing with its partitions through our client,
    kafka-python's admin and the CLI; after the commit it is CompleteCommit."""
    _create(broker, "tt-open")
    producer = _open(broker, "tt-open-1", "tt-open", 2)
    with KafkaClient(broker.bootstrap) as client:
        listed = {t.transactional_id: t for t in txn_ops.list_transactions(client)}
        assert listed["tt-open-1"].state == "Ongoing"
        pid = listed["tt-open-1"].producer_id
        desc = txn_ops.describe_transaction(client, "tt-open-1")
    assert desc.state == "Ongoing"
    assert desc.producer_id == pid
    assert desc.partitions == (("tt-open", 0), ("tt-open", 1))
    assert desc.start_ms > 0
    assert desc.timeout_ms == 60000  # librdkafka's default transaction.timeout.ms
    assert _txn_start_offsets(broker, "tt-open", pid) == [0, 0]

    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        by_node = admin.list_transactions()
        ids = {t.transactional_id: t for ts in by_node.values() for t in ts}
        assert str(ids["tt-open-1"].state.value) == "Ongoing"
        described = admin.describe_transactions(["tt-open-1"])["tt-open-1"]
        assert described.producer_id == pid
        assert {(tp.topic, tp.partition) for tp in described.topic_partitions} == {
            ("tt-open", 0),
            ("tt-open", 1),
        }
        with pytest.raises(TransactionalIdNotFoundError):
            admin.describe_transactions(["tt-no-such-id"])

        out = _cli(broker, "--format", "json", "txn", "describe", "tt-open-1")
        assert out.returncode == 0, out.stderr
        doc = json.loads(out.stdout)
        assert doc["state"] == "Ongoing"
        assert doc["partitions"] == [
            {"topic": "tt-open", "partition": 0},
            {"topic": "tt-open", "partition": 1},
        ]
        text = _cli(broker, "txn", "list")
        assert text.returncode == 0, text.stderr
        line = next(ln for ln in text.stdout.splitlines() if "tt-open-1" in ln)
        assert "Ongoing" in line
        assert str(pid) in line

        producer.commit_transaction(TIMEOUT_S)
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            described = admin.describe_transactions(["tt-open-1"])["tt-open-1"]
            if str(described.state.value) == "CompleteCommit":
                break
            assert time.monotonic() < deadline, described
            time.sleep(0.1)
        assert not described.topic_partitions
        assert _txn_start_offsets(broker, "tt-open", pid) == [-1, -1]
    finally:
        admin.close()
    out = _cli(broker, "--format", "json", "txn", "list", "--state", "CompleteCommit")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)["transactions"]
    assert {"transactional_id": "tt-open-1", "producer_id": pid,
            "state": "CompleteCommit", "coordinator": 0} in rows  # fmt: skip
    missing = _cli(broker, "txn", "describe", "tt-no-such-id")
    assert missing.returncode != 0
    assert "TRANSACTIONAL_ID_NOT_FOUND" in missing.stderr


def test_filters_by_state_producer_id_and_duration(broker: BrokerProcess) -> None:
    """State, producer id and duration filters keep only the matching ids; an
    unknown state name is echoed back and matches nothing."""
    _create(broker, "tt-filter", 1)
    producer = _open(broker, "tt-filter-1", "tt-filter", 1)
    try:
        with KafkaClient(broker.bootstrap) as client:
            pid = txn_ops.describe_transaction(client, "tt-filter-1").producer_id
            ongoing = txn_ops.list_transactions(client, states=["Ongoing"])
            assert "tt-filter-1" in {t.transactional_id for t in ongoing}
            assert all(t.state == "Ongoing" for t in ongoing)
            aborts = txn_ops.list_transactions(client, states=["CompleteAbort"])
            assert "tt-filter-1" not in {t.transactional_id for t in aborts}
            mine = txn_ops.list_transactions(client, producer_ids=[pid])
            assert [t.transactional_id for t in mine] == ["tt-filter-1"]
            assert txn_ops.list_transactions(client, producer_ids=[pid + 10_000]) == []
            young = txn_ops.list_transactions(client, min_duration_ms=0)
            assert "tt-filter-1" in {t.transactional_id for t in young}
            old = txn_ops.list_transactions(client, min_duration_ms=3_600_000)
            assert "tt-filter-1" not in {t.transactional_id for t in old}
            with pytest.raises(KafkaError, match="unknown state Bogus"):
                txn_ops.list_transactions(client, states=["Bogus"])
        with request_socket(broker) as sock:
            resp = request(
                sock,
                66,
                1,
                ListTransactionsRequest(state_filters=("Bogus",)),
            )
        assert isinstance(resp, ListTransactionsResponse)
        assert resp.error_code == ErrorCode.NONE
        assert resp.unknown_state_filters == ("Bogus",)
        assert resp.transaction_states == ()
        out = _cli(broker, "--format", "json", "txn", "list", "--producer-id", str(pid))
        assert out.returncode == 0, out.stderr
        assert [
            r["transactional_id"] for r in json.loads(out.stdout)["transactions"]
        ] == ["tt-filter-1"]
        admin = json.loads(
            json.dumps(_get(broker, f"/v1/transactions?producer_id={pid}"))
        )
        assert [t["transactional_id"] for t in admin] == ["tt-filter-1"]
        assert admin[0]["partitions"] == [{"topic": "tt-filter", "partition": 0}]
        assert admin[0]["state"] == "Ongoing"
        assert admin[0]["stuck"] is False
        assert (
            _get(broker, f"/v1/transactions?producer_id={pid}&min_duration_ms=3600000")
            == []
        )
        with pytest.raises(urllib.error.HTTPError) as bad:
            _get(broker, "/v1/transactions?state=Bogus")
        assert bad.value.code == 400
    finally:
        producer.abort_transaction(TIMEOUT_S)


def request_socket(broker: BrokerProcess) -> socket.socket:
    return socket.create_connection((broker.host, broker.port), timeout=TIMEOUT_S)


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not exposed")


def test_stuck_transaction_shows_in_metrics_and_health(broker: BrokerProcess) -> None:
    """A transaction open past its timeout (the sweep is slowed) is counted by the
    gauges and named as a warning by ``GET /v1/cluster`` and ``cluster health``."""
    _create(broker, "tt-stuck", 1)
    producer = _open(
        broker, "tt-stuck-1", "tt-stuck", 1, **{"transaction.timeout.ms": 1000}
    )
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            text = str(_get(broker, "/metrics"))
            if _metric(text, "ailurus_transactions_stuck") >= 1:
                break
            assert time.monotonic() < deadline, "the transaction never counted stuck"
            time.sleep(0.2)
        assert 'ailurus_transactions_open{state="Ongoing"}' in text
        assert _metric(text, "ailurus_transaction_oldest_open_seconds") > 1.0
        overview = _get(broker, "/v1/cluster")
        assert isinstance(overview, dict)
        assert overview["healthy"] is True
        assert overview["warnings"] == ["stuck_transactions"]
        assert "tt-stuck-1" in overview["stuck_transactions"]
        one = _get(broker, "/v1/transactions/tt-stuck-1")
        assert isinstance(one, dict)
        assert one["stuck"] is True
        assert one["state"] == "Ongoing"
        health = _cli(broker, "--format", "json", "cluster", "health")
        assert health.returncode == 0, health.stdout + health.stderr
        doc = json.loads(health.stdout)
        assert doc["healthy"] is True
        assert "tt-stuck-1" in doc["stuck_transactions"]
        assert doc["warnings"] == ["stuck_transactions"]
        text_health = _cli(broker, "cluster", "health")
        assert "WARNING" in text_health.stdout
        assert "tt-stuck-1" in text_health.stdout
    finally:
        producer.abort_transaction(TIMEOUT_S)


def test_read_committed_lag_stops_at_the_last_stable_offset(
    broker: BrokerProcess,
) -> None:
    """With 3 committed records (and their marker) then an open transaction of 2,
    read_committed lag counts to the LSO (4), read_uncommitted to the end (6)."""
    _create(broker, "tt-lag", 1)
    producer = Producer(
        {"bootstrap.servers": broker.bootstrap, "transactional.id": "tt-lag-1"}
    )
    producer.init_transactions(TIMEOUT_S)
    producer.begin_transaction()
    for _ in range(3):
        producer.produce("tt-lag", value=b"c", partition=0)
    producer.commit_transaction(TIMEOUT_S)
    producer.begin_transaction()
    for _ in range(2):
        producer.produce("tt-lag", value=b"o", partition=0)
    assert producer.flush(TIMEOUT_S) == 0
    try:
        with KafkaClient(broker.bootstrap) as client:
            group_ops.commit_offsets(client, "tt-lag-g", {("tt-lag", 0): 0})
        lags = {}
        for isolation in ("read_uncommitted", "read_committed"):
            out = _cli(
                broker,
                "--format",
                "json",
                "group",
                "describe",
                "tt-lag-g",
                "--isolation",
                isolation,
            )
            assert out.returncode == 0, out.stderr
            doc = json.loads(out.stdout)
            assert doc["isolation"] == isolation
            lags[isolation] = doc["total_lag"]
        assert lags == {"read_uncommitted": 6, "read_committed": 4}
        table = _cli(
            broker, "group", "describe", "tt-lag-g", "--isolation", "read_committed"
        )
        assert "LAST-STABLE-OFFSET" in table.stdout.upper()
        routes = {}
        for query in ("", "?isolation=read_committed"):
            doc = _get(broker, f"/v1/groups/tt-lag-g{query}")
            assert isinstance(doc, dict)
            routes[query] = [(o["log_end_offset"], o["lag"]) for o in doc["offsets"]]
        assert routes == {"": [(6, 6)], "?isolation=read_committed": [(4, 4)]}
    finally:
        producer.abort_transaction(TIMEOUT_S)
