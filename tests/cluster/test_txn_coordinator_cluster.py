"""The transaction coordinator in a cluster: real etcd and three brokers.

A confluent-kafka transactional producer commits a transaction across partitions
led by different brokers (the coordinator writes its own partitions' markers and
sends WriteTxnMarkers to the other leaders). Then the coordinator's broker dies
right after writing the next transaction's PrepareCommit (the crash test hook: an
immediate exit, as SIGKILL; its session expires): the state log partition's new
leader loads it and completes that transaction, sending markers to leaders that
change as the dead broker's partitions move. A producer with the same
transactional.id initialises again and its next transaction commits.
read_committed consumers read exactly the committed records.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)

from broker.transactions.config import CRASH_AFTER_PREPARE_ENV, CRASH_EXIT_STATUS
from protocol.error_codes import ErrorCode
from protocol.messages.find_coordinator import (
    FindCoordinatorRequest,
    FindCoordinatorResponse,
)
from tests._broker import request
from tests.cluster.e2e_cluster import Cluster, wait_for

TOPIC = "xtxn"
PARTITIONS = 3
TIMEOUT_S = 60.0


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(
        tmp_path,
        broker_args=("--set", "transaction.state.log.num.partitions=4"),
        env={CRASH_AFTER_PREPARE_ENV: str(tmp_path / "crash-flag")},
    )
    try:
        c.start()
        yield c
    finally:
        c.close()


def _txn_coordinator(cluster: Cluster, txn_id: str) -> int:
    """The coordinator node of ``txn_id`` as a live broker answers (0: none yet)."""
    node = min(cluster.live)
    with cluster.brokers[node].connect() as sock:
        resp = request(sock, 10, 3, FindCoordinatorRequest(key=txn_id, key_type=1))
    assert isinstance(resp, FindCoordinatorResponse)
    return resp.node_id if resp.error_code == ErrorCode.NONE else 0


def _read_committed(cluster: Cluster) -> list[bytes]:
    bootstrap = ",".join(cluster.bootstrap(i) for i in sorted(cluster.live))
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "reader",
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(TOPIC, p, 0) for p in range(PARTITIONS)])
    got: list[bytes] = []
    eof: set[int] = set()
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while len(eof) < PARTITIONS:
            assert time.monotonic() < deadline, "no end of the topic seen"
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                assert err.code() == KafkaError._PARTITION_EOF, err
                eof.add(msg.partition())
                continue
            value = msg.value()
            assert value is not None
            got.append(value)
    finally:
        consumer.close()
    return sorted(got)


def _transaction(cluster: Cluster, values: list[bytes], *, crash: bool = False) -> None:
    """One committed transaction of a new producer of ``ctx`` (``crash``: its
    coordinator dies at the commit; librdkafka retries EndTxn with the new
    coordinator, which answers it once it has completed the transaction, or the
    producer gives up first: either way the transaction is committed)."""
    bootstrap = ",".join(cluster.bootstrap(i) for i in sorted(cluster.live))
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": "ctx",
            "message.timeout.ms": 15000,
        }
    )
    producer.init_transactions(TIMEOUT_S)
    producer.begin_transaction()
    for i, value in enumerate(values):
        producer.produce(TOPIC, value, partition=i % PARTITIONS)
    if not crash:
        producer.commit_transaction(TIMEOUT_S)
        return
    assert producer.flush(TIMEOUT_S) == 0
    with contextlib.suppress(KafkaException):
        producer.commit_transaction(TIMEOUT_S)


def test_transaction_across_leaders_commits_and_survives_its_coordinator(
    cluster: Cluster,
) -> None:
    """A transaction over partitions of three leaders commits; one whose
    coordinator's broker dies right after its PrepareCommit is completed by the new
    coordinator; a producer re-initialised there commits the next; read_committed
    output is exact."""
    cluster.create_topic(1, TOPIC, PARTITIONS, replication_factor=3)
    leaders = cluster.wait_leaders(TOPIC, PARTITIONS)
    assert len(set(leaders.values())) > 1
    first = [b"a0", b"a1", b"a2"]
    _transaction(cluster, first)
    assert _read_committed(cluster) == first
    coordinator = wait_for("a coordinator", lambda: _txn_coordinator(cluster, "ctx"))
    flag = cluster.root / "crash-flag"
    flag.touch()
    second = [b"b0", b"b1", b"b2"]
    _transaction(cluster, second, crash=True)
    assert cluster.brokers[coordinator].proc.wait(TIMEOUT_S) == CRASH_EXIT_STATUS
    assert not flag.exists()
    wait_for(
        "a new coordinator",
        lambda: _txn_coordinator(cluster, "ctx") not in (0, coordinator),
        timeout=TIMEOUT_S,
    )
    cluster.wait_leaders(TOPIC, PARTITIONS)
    # the new coordinator completed the prepared commit
    assert _read_committed(cluster) == sorted(first + second)
    third = [b"c0", b"c1", b"c2"]
    _transaction(cluster, third)
    assert _read_committed(cluster) == sorted(first + second + third)
