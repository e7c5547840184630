"""Consume-transform-produce in a cluster: a group coordinated by another broker.

Real etcd and three brokers. The transactional id and the consumer group are
picked so that their coordinators (asked with FindCoordinator) are different
brokers: AddOffsetsToTxn adds the group's ``__consumer_offsets`` partition to the
transaction, and the transaction coordinator's marker there (WriteTxnMarkers to
its leader) completes the offsets at the group's coordinator; a group whose
coordinator is the transaction's own broker gets its marker in-process, through
the same marker writer. confluent-kafka's producer commits one transaction (OffsetFetch at the group's coordinator shows the
offsets), aborts the next (they do not move), and commits a third whose
coordinator dies right after PrepareCommit (the crash test hook): the next leader
of the state log partition sends the markers again, the offsets one included.
read_committed output is exact.
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
from protocol.messages.offset_fetch import (
    OffsetFetchRequest,
    OffsetFetchRequestTopic,
    OffsetFetchResponse,
)
from tests._broker import request
from tests.cluster.e2e_cluster import Cluster, wait_for
from tests.cluster.etcd import missing_etcd

IN, OUT = "eos-in", "eos-out"
TIMEOUT_S = 60.0


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    if (why := missing_etcd()) is not None:
        pytest.fail(why, pytrace=False)
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


def _coordinator(cluster: Cluster, key: str, key_type: int) -> int:
    """The coordinator of ``key`` (0: none yet) as the lowest live broker answers."""
    with cluster.brokers[min(cluster.live)].connect() as sock:
        sock.settimeout(30)
        resp = request(sock, 10, 3, FindCoordinatorRequest(key=key, key_type=key_type))
    assert isinstance(resp, FindCoordinatorResponse)
    ok = resp.error_code == ErrorCode.NONE and resp.node_id in cluster.live
    return resp.node_id if ok else 0


def _groups(cluster: Cluster) -> tuple[str, int, str, str, int]:
    """A transactional id and its coordinator, a group coordinated by the same
    broker, and one coordinated by another (with that broker)."""

    def found(key: str, key_type: int) -> int:
        return int(
            wait_for(
                f"the coordinator of {key}",
                lambda: _coordinator(cluster, key, key_type),
            )
        )

    txn_id = "eos-txn"
    txn_node = found(txn_id, 1)
    together: str | None = None
    apart: tuple[str, int] | None = None
    for j in range(60):
        group = f"eos-group-{j}"
        node = found(group, 0)
        if node == txn_node:
            together = together or group
        else:
            apart = apart or (group, node)
        if together is not None and apart is not None:
            return txn_id, txn_node, together, *apart
    raise AssertionError("no groups on the transaction coordinator and on another")


def _stable_offset(cluster: Cluster, node: int, group: str) -> int:
    """OffsetFetch (require_stable) of ``IN``-0 at broker ``node``, once no
    transactional offset is pending there."""

    def fetch() -> int | None:
        with cluster.brokers[node].connect() as sock:
            sock.settimeout(30)
            resp = request(
                sock,
                9,
                7,
                OffsetFetchRequest(
                    group_id=group,
                    topics=(OffsetFetchRequestTopic(name=IN, partition_indexes=(0,)),),
                    require_stable=True,
                ),
            )
        assert isinstance(resp, OffsetFetchResponse)
        if resp.error_code != ErrorCode.NONE:
            return None  # loading
        (p,) = resp.topics[0].partitions
        if p.error_code == ErrorCode.UNSTABLE_OFFSET_COMMIT:
            return None  # the marker is on its way
        assert p.error_code == ErrorCode.NONE
        return int(p.committed_offset)

    return int(wait_for(f"a stable offset of {group}", fetch, timeout=TIMEOUT_S))


def _read_committed(cluster: Cluster, topic: str, partitions: int) -> list[bytes]:
    bootstrap = ",".join(cluster.bootstrap(i) for i in sorted(cluster.live))
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "eos-reader",
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got: list[bytes] = []
    eof: set[int] = set()
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while len(eof) < partitions:
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


def _transform(
    cluster: Cluster, txn_id: str, group: str, start: int, end: str
) -> list[bytes]:
    """One consume-transform-produce transaction of three records of ``IN`` from
    ``start``, ended by ``end`` (commit, abort, crash); the records produced."""
    bootstrap = ",".join(cluster.bootstrap(i) for i in sorted(cluster.live))
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": txn_id,
            "message.timeout.ms": 15000,
        }
    )
    try:
        consumer.assign([TopicPartition(IN, 0, start)])
        producer.init_transactions(TIMEOUT_S)
        producer.begin_transaction()
        out: list[bytes] = []
        deadline = time.monotonic() + TIMEOUT_S
        while len(out) < 3:
            assert time.monotonic() < deadline, f"no records of {IN} from {start}"
            msg = consumer.poll(0.5)
            if msg is None or msg.error() is not None:
                continue
            value = msg.value()
            assert value is not None
            out.append(value.upper())
            producer.produce(OUT, value.upper(), partition=len(out) % 2)
        position = [TopicPartition(IN, 0, start + 3)]
        producer.send_offsets_to_transaction(
            position, consumer.consumer_group_metadata(), TIMEOUT_S
        )
        if end == "commit":
            producer.commit_transaction(TIMEOUT_S)
        elif end == "abort":
            producer.abort_transaction(TIMEOUT_S)
        else:
            assert producer.flush(TIMEOUT_S) == 0
            with contextlib.suppress(KafkaException):
                producer.commit_transaction(TIMEOUT_S)
        return out
    finally:
        consumer.close()


def test_offsets_of_a_group_on_another_broker_follow_the_transaction(
    cluster: Cluster,
) -> None:
    """Commit shows the group's offsets at its coordinator (another broker than
    the transaction's, or the same one); abort leaves them; a commit whose
    coordinator dies after PrepareCommit is completed by the next one, offsets
    included."""
    cluster.create_topic(1, IN, 1, replication_factor=3)
    cluster.create_topic(1, OUT, 2, replication_factor=3)
    cluster.wait_leaders(OUT, 2)
    feeder = Producer({"bootstrap.servers": cluster.bootstrap(min(cluster.live))})
    for i in range(9):
        feeder.produce(IN, f"r{i}".encode(), partition=0)
    assert feeder.flush(TIMEOUT_S) == 0
    txn_id, txn_node, local_group, group, group_node = _groups(cluster)
    assert txn_node != group_node
    # the transaction coordinator leads local_group's offsets partition: it writes
    # that marker in-process, and the same writer completes the offsets
    committed = _transform(cluster, txn_id, local_group, 0, "commit")
    assert _stable_offset(cluster, txn_node, local_group) == 3

    committed += _transform(cluster, txn_id, group, 0, "commit")
    assert _stable_offset(cluster, group_node, group) == 3
    _transform(cluster, txn_id, group, 3, "abort")
    assert _stable_offset(cluster, group_node, group) == 3
    assert _read_committed(cluster, OUT, 2) == sorted(committed)

    flag = cluster.root / "crash-flag"
    flag.touch()
    recovered = _transform(cluster, txn_id, group, 3, "crash")
    assert cluster.brokers[txn_node].proc.wait(TIMEOUT_S) == CRASH_EXIT_STATUS
    assert not flag.exists()
    wait_for(
        "a new transaction coordinator",
        lambda: _coordinator(cluster, txn_id, 1) not in (0, txn_node),
        timeout=TIMEOUT_S,
    )
    now = wait_for("the group's coordinator", lambda: _coordinator(cluster, group, 0))
    assert _stable_offset(cluster, now, group) == 6
    assert _read_committed(cluster, OUT, 2) == sorted(committed + recovered)
