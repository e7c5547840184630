"""Transactions survive a failover: followers track what their leader tracks.

Three brokers and etcd; an RF=3 partition gets an aborted transaction, a committed
one and one left open (raw transactional Produce and WriteTxnMarkers on the
leader). After the leader is killed, the new leader answers the same last stable
offset (ListOffsets read_committed) and the same aborted transaction in a
read_committed Fetch, from the state its replica fetcher built, and closes the open
transaction when a marker arrives.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from protocol.error_codes import ErrorCode
from protocol.messages.fetch import AbortedTransaction
from tests import _txn
from tests.cluster.e2e_cluster import Cluster, wait_for
from tests.cluster.etcd import missing_etcd

TOPIC = "txn-rf3"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if (why := missing_etcd()) is not None:
        pytest.fail(why, pytrace=False)
    c = Cluster(tmp_path_factory.mktemp("txn"))
    try:
        c.start()
        yield c
    finally:
        c.close()


def test_new_leader_keeps_the_lso_and_the_aborted_index(cluster: Cluster) -> None:
    """After a failover the LSO and aborted transactions are the old leader's, and
    the open transaction still closes with a marker on the new leader."""
    first = min(cluster.live)
    cluster.create_topic(first, TOPIC, 1, replication_factor=3)
    leader = cluster.wait_leaders(TOPIC, 1)[0]
    wait_for(
        "all replicas in sync", lambda: len(cluster.partition(TOPIC, 0)["isr"]) == 3
    )
    with cluster.brokers[leader].connect() as sock:
        p1, p2 = _txn.producer_id(sock), _txn.producer_id(sock)
        assert _txn.produce(sock, TOPIC, _txn.txn(p2, 0, b"a1")) == 0
        assert _txn.produce(sock, TOPIC, _txn.txn(p1, 0, b"c1")) == 1
        assert _txn.markers(sock, TOPIC, (p2, False, 0), (p1, True, 0)) == [0, 0]
        assert _txn.produce(sock, TOPIC, _txn.txn(p1, 1, b"open")) == 4
        assert _txn.produce(sock, TOPIC, _txn.plain(b"after")) == 5
        # acks=all: every ISR replica has it all
        assert _txn.latest(sock, TOPIC, 0) == 6
        assert _txn.latest(sock, TOPIC, 1) == 4
    epoch = cluster.partition(TOPIC, 0)["leader_epoch"]
    cluster.kill(leader)
    state = wait_for(
        "a new leader",
        lambda: (
            s
            if (s := cluster.partition(TOPIC, 0)).get("leader") not in (leader, -1)
            and s["leader_epoch"] > epoch
            else None
        ),
        timeout=30,
    )
    new = cluster.brokers[state["leader"]]
    aborted = (AbortedTransaction(producer_id=p2, first_offset=0),)

    def answers() -> bool:
        try:
            with new.connect() as sock:
                return _txn.latest(sock, TOPIC, 1) == 4
        except (AssertionError, OSError):
            return False  # still taking over (NOT_LEADER_OR_FOLLOWER)

    wait_for("the new leader's last stable offset", answers, timeout=30)
    with new.connect() as sock:
        part = _txn.fetch(sock, TOPIC, 1)
        assert part.error_code == ErrorCode.NONE
        assert part.last_stable_offset == 4
        assert part.aborted_transactions == aborted
        assert _txn.markers(sock, TOPIC, (p1, True, 0)) == [ErrorCode.NONE]
        assert _txn.latest(sock, TOPIC, 1) == _txn.latest(sock, TOPIC, 0) == 7
