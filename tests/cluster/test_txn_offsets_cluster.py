"""Transactional offsets in cluster mode: records of ``__consumer_offsets`` until a marker.

One cluster (etcd and three brokers) for the module. The full path by protocol, as
a transaction coordinator drives it: TxnOffsetCommit to the group's coordinator
(a transactional batch in the group's offsets partition), OffsetFetch (invisible;
UNSTABLE_OFFSET_COMMIT with require_stable), WriteTxnMarkers COMMIT or ABORT to
that partition's leader, then OffsetFetch shows the offset or the last committed
one. A pending offset also survives its coordinator: the next leader of the
offsets partition rebuilds it from the log and the marker it then receives
completes it. librdkafka's read_committed consumer (``committed()``, OffsetFetch
with require_stable) sees no offset while it is pending and the committed one
after the marker.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from kafka import KafkaAdminClient
from kafka.protocol.admin.topics import ElectionType
from kafka.structs import TopicPartition as KafkaTopicPartition

from broker.cluster.view import OFFSETS_TOPIC, offsets_partition
from protocol.error_codes import ErrorCode
from protocol.messages.write_txn_markers import (
    WritableTxnMarker,
    WritableTxnMarkerTopic,
    WriteTxnMarkersRequest,
    WriteTxnMarkersResponse,
)
from tests._broker import request
from tests._txn import producer_id
from tests.cluster.e2e_cluster import OFFSETS_PARTITIONS, Cluster, wait_for
from tests.cluster.etcd import missing_etcd
from tests.handlers.test_txn_offset_commit import fetch, plain_commit, txn_commit

TOPIC = "txn-offsets"  # the topic tests/handlers/test_txn_offset_commit.py commits to
UNSTABLE = ErrorCode.UNSTABLE_OFFSET_COMMIT


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if (why := missing_etcd()) is not None:
        pytest.fail(why, pytrace=False)
    c = Cluster(tmp_path_factory.mktemp("txnoffsets"))
    try:
        c.start()
        c.create_topic(min(c.live), TOPIC, 2, replication_factor=3)
        c.wait_leaders(TOPIC, 2)
        yield c
    finally:
        c.close()


def _coordinator(cluster: Cluster, group: str) -> int:
    """The group's coordinator, once its offsets are loaded there."""

    def found() -> int | None:
        code, node = cluster.find_coordinator(min(cluster.live), group)
        return node if code == ErrorCode.NONE and node in cluster.live else None

    return int(wait_for(f"the coordinator of {group}", found, timeout=30))


def _offsets_state(cluster: Cluster, partition: int) -> tuple[int, list[int]]:
    md = cluster.metadata(min(cluster.live), OFFSETS_TOPIC).topics[OFFSETS_TOPIC]
    p = md.partitions[partition]
    return p.leader, sorted(p.isrs)


def _on_rf3(cluster: Cluster, group: str) -> None:
    """Three in-sync replicas for the group's offsets partition (placed perhaps
    before every broker joined), led by its preferred replica."""
    p = offsets_partition(group, OFFSETS_PARTITIONS)
    leader, _ = _offsets_state(cluster, p)
    wanted = [leader, *(n for n in (1, 2, 3) if n != leader)]
    admin = KafkaAdminClient(
        bootstrap_servers=[b.bootstrap for b in cluster.live.values()],
        request_timeout_ms=30000,
    )
    try:
        admin.alter_partition_reassignments(
            {KafkaTopicPartition(OFFSETS_TOPIC, p): wanted}
        )
        wait_for(
            f"three in-sync replicas of {OFFSETS_TOPIC}-{p}",
            lambda: _offsets_state(cluster, p)[1] == [1, 2, 3],
            timeout=30,
        )
        if _offsets_state(cluster, p)[0] != leader:
            admin.elect_leaders(ElectionType.PREFERRED, {OFFSETS_TOPIC: [p]})
    finally:
        admin.close()


def _marker(sock: socket.socket, pid: int, partition: int, commit: bool) -> int:
    """WriteTxnMarkers v1 for one ``__consumer_offsets`` partition; its error."""
    resp = request(
        sock,
        27,
        1,
        WriteTxnMarkersRequest(
            markers=(
                WritableTxnMarker(
                    producer_id=pid,
                    producer_epoch=0,
                    transaction_result=commit,
                    topics=(
                        WritableTxnMarkerTopic(
                            name=OFFSETS_TOPIC, partition_indexes=(partition,)
                        ),
                    ),
                    coordinator_epoch=0,
                ),
            )
        ),
    )
    assert isinstance(resp, WriteTxnMarkersResponse)
    return resp.markers[0].topics[0].partitions[0].error_code


def _settled_fetch(
    sock: socket.socket, group: str, *, stable: bool
) -> dict[int, tuple[int, int]]:
    """OffsetFetch once the coordinator has loaded the group (no load error)."""
    loading = (ErrorCode.COORDINATOR_LOAD_IN_PROGRESS, ErrorCode.NOT_COORDINATOR)

    def loaded() -> dict[int, tuple[int, int]] | None:
        got = fetch(sock, group, stable=stable)
        return None if any(e in loading for _, e in got.values()) else got

    return dict(wait_for(f"offsets of {group}", loaded, timeout=30))


@pytest.mark.parametrize("commit", [True, False])
def test_marker_completes_pending_offsets(cluster: Cluster, commit: bool) -> None:
    """TxnOffsetCommit then COMMIT shows the offset; ABORT keeps the last
    committed one; before the marker it is pending (unstable)."""
    group = f"txn-{'commit' if commit else 'abort'}"
    node = _coordinator(cluster, group)
    partition = offsets_partition(group, OFFSETS_PARTITIONS)
    with cluster.brokers[node].connect() as sock:
        sock.settimeout(30)
        assert _settled_fetch(sock, group, stable=True) == {0: (-1, 0), 1: (-1, 0)}
        plain_commit(sock, group, 0, 3)
        pid = producer_id(sock)
        assert txn_commit(sock, group, pid, {0: 10, 1: 11}) == {0: 0, 1: 0}
        assert fetch(sock, group, stable=False) == {0: (3, 0), 1: (-1, 0)}
        assert fetch(sock, group, stable=True) == {
            0: (-1, UNSTABLE),
            1: (-1, UNSTABLE),
        }
        assert _marker(sock, pid, partition, commit) == ErrorCode.NONE
        expected = {0: (10, 0), 1: (11, 0)} if commit else {0: (3, 0), 1: (-1, 0)}
        assert fetch(sock, group, stable=True) == expected


def test_pending_offsets_survive_their_coordinator(cluster: Cluster) -> None:
    """The next leader of the offsets partition rebuilds the pending offsets from
    the log (unstable there too) and commits them when the marker arrives."""
    group = "txn-failover"
    _on_rf3(cluster, group)
    node = _coordinator(cluster, group)
    partition = offsets_partition(group, OFFSETS_PARTITIONS)
    with cluster.brokers[node].connect() as sock:
        sock.settimeout(30)
        _settled_fetch(sock, group, stable=True)
        pid = producer_id(sock)
        assert txn_commit(sock, group, pid, {1: 42}) == {1: 0}
    cluster.stop(node)
    try:
        moved = wait_for(
            "a new coordinator",
            lambda: (n := _coordinator(cluster, group)) != node and n,
            timeout=40,
        )
        with cluster.brokers[moved].connect() as sock:
            sock.settimeout(30)
            assert _settled_fetch(sock, group, stable=True)[1] == (-1, UNSTABLE)
            assert fetch(sock, group, stable=False)[1] == (-1, 0)
            assert _marker(sock, pid, partition, True) == ErrorCode.NONE
            assert fetch(sock, group, stable=True)[1] == (42, 0)
    finally:
        cluster.start_broker(node)
        cluster.wait_settled()


def test_read_committed_client_waits_for_the_marker(cluster: Cluster) -> None:
    """confluent-kafka (read_committed: require_stable) gets no committed offset
    for a partition while a transactional one is pending (it retries until its
    timeout), then that offset."""
    group = "txn-librdkafka"
    node = _coordinator(cluster, group)
    partition = offsets_partition(group, OFFSETS_PARTITIONS)
    consumer = Consumer(
        {
            "bootstrap.servers": ",".join(b.bootstrap for b in cluster.live.values()),
            "group.id": group,
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    try:
        with cluster.brokers[node].connect() as sock:
            sock.settimeout(30)
            _settled_fetch(sock, group, stable=True)
            pid = producer_id(sock)
            assert txn_commit(sock, group, pid, {1: 77}) == {1: 0}
            # librdkafka retries UNSTABLE_OFFSET_COMMIT until its timeout
            with pytest.raises(KafkaException) as unstable:
                consumer.committed([TopicPartition(TOPIC, 1)], timeout=3)
            assert unstable.value.args[0].code() == KafkaError._TIMED_OUT
            assert _marker(sock, pid, partition, True) == ErrorCode.NONE
        (tp,) = consumer.committed([TopicPartition(TOPIC, 1)], timeout=30)
        assert (tp.offset, tp.error) == (77, None)
    finally:
        consumer.close()
