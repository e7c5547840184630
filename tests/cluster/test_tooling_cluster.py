"""The admin tools' APIs on a three-broker cluster (real etcd).

OffsetDelete goes to the group's coordinator and writes tombstones to
``__consumer_offsets``: the deletion outlives a restart of the coordinator, and
other brokers answer NOT_COORDINATOR. DescribeProducers is answered by the
partition's leader only; DescribeLogDirs shows each broker's own replicas;
DescribeTopicPartitions shows replicas and ISR from any broker. Clients:
kafka-python's KafkaAdminClient and KafkaProducer, raw requests for what a client
would route elsewhere on its own.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from protocol.error_codes import ErrorCode
from protocol.messages.describe_producers import (
    DescribeProducersRequest,
    DescribeProducersResponse,
    TopicRequest,
)
from protocol.messages.offset_delete import (
    OffsetDeleteRequest,
    OffsetDeleteRequestPartition,
    OffsetDeleteRequestTopic,
    OffsetDeleteResponse,
)
from tests._broker import request
from tests.cluster.e2e_cluster import Cluster, wait_for
from tests.cluster.etcd import ETCD


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if not Path(ETCD).exists():
        pytest.fail("etcd is not installed (make test installs etcd-server)")
    c = Cluster(tmp_path_factory.mktemp("tooling"))
    try:
        c.start()
        yield c
    finally:
        c.close()


def _admin(cluster: Cluster) -> KafkaAdminClient:
    return KafkaAdminClient(
        bootstrap_servers=[b.bootstrap for b in cluster.live.values()],
        request_timeout_ms=30000,
    )


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_offset_delete_through_the_coordinator_survives_its_restart(
    cluster: Cluster,
) -> None:
    """kafka-python deletes one committed offset at the coordinator; other brokers
    answer NOT_COORDINATOR; after the coordinator restarts the offset is still
    gone and the other one still there."""
    topic, group = _name("codel"), _name("g")
    admin = _admin(cluster)
    try:
        admin.create_topics([NewTopic(topic, 2, 3)])
        cluster.wait_leaders(topic, 2)
        p0, p1 = TopicPartition(topic, 0), TopicPartition(topic, 1)
        at = OffsetAndMetadata(3, "", -1)
        admin.alter_group_offsets(group, {p0: at, p1: at})
        result = admin.delete_group_offsets(group, [p0])
        assert {tp: e.errno for tp, e in result.items()} == {p0: 0}
        assert set(admin.list_group_offsets({group: None})[group]) == {p1}
    finally:
        admin.close()
    _, coordinator = cluster.find_coordinator(min(cluster.live), group)
    for node in sorted(set(cluster.live) - {coordinator}):
        with cluster.brokers[node].connect() as sock:
            resp = request(
                sock,
                47,
                0,
                OffsetDeleteRequest(
                    group_id=group,
                    topics=(
                        OffsetDeleteRequestTopic(
                            name=topic,
                            partitions=(
                                OffsetDeleteRequestPartition(partition_index=1),
                            ),
                        ),
                    ),
                ),
            )
        assert isinstance(resp, OffsetDeleteResponse)
        assert resp.error_code == ErrorCode.NOT_COORDINATOR
    assert cluster.stop(coordinator) == 0
    cluster.start_broker(coordinator)
    cluster.wait_settled()

    def committed() -> dict[TopicPartition, int] | None:
        client = _admin(cluster)
        try:
            offsets = client.list_group_offsets({group: None})[group]
        except KafkaError:
            return None
        finally:
            client.close()
        return {tp: o.offset for tp, o in offsets.items()} or None

    assert wait_for("the group's offsets", committed, timeout=40) == {p1: 3}


def test_describe_producers_only_at_the_leader(cluster: Cluster) -> None:
    """The leader describes an idempotent producer; a follower and a broker without
    a replica answer NOT_LEADER_OR_FOLLOWER."""
    replicated, single = _name("cprod"), _name("cprod1")
    admin = _admin(cluster)
    try:
        admin.create_topics([NewTopic(replicated, 1, 3), NewTopic(single, 1, 1)])
        leaders = cluster.wait_leaders(replicated, 1)
        single_leader = cluster.wait_leaders(single, 1)[0]
        producer = KafkaProducer(
            bootstrap_servers=[b.bootstrap for b in cluster.live.values()],
            enable_idempotence=True,
            acks="all",
        )
        try:
            for i in range(4):
                producer.send(replicated, f"v{i}".encode(), partition=0).get(timeout=30)
        finally:
            producer.close(timeout=10)
        tp = TopicPartition(replicated, 0)
        [active] = admin.describe_producers([tp])[tp].active_producers
        assert active.last_sequence == 3
    finally:
        admin.close()

    def ask(node: int, topic: str) -> int:
        with cluster.brokers[node].connect() as sock:
            resp = request(
                sock,
                61,
                0,
                DescribeProducersRequest(
                    topics=(TopicRequest(name=topic, partition_indexes=(0,)),)
                ),
            )
        assert isinstance(resp, DescribeProducersResponse)
        [t] = resp.topics
        [p] = t.partitions
        return p.error_code

    follower = next(n for n in cluster.live if n != leaders[0])
    assert ask(follower, replicated) == ErrorCode.NOT_LEADER_OR_FOLLOWER
    elsewhere = next(n for n in cluster.live if n != single_leader)
    assert ask(elsewhere, single) == ErrorCode.NOT_LEADER_OR_FOLLOWER
    assert ask(leaders[0], replicated) == ErrorCode.NONE


def test_log_dirs_and_topic_partitions_across_brokers(cluster: Cluster) -> None:
    """Each broker's log dir lists only its own replicas (an RF=1 topic's
    partitions once across the cluster; an RF=3 topic's on every broker, the same
    size and no lag once replicated); DescribeTopicPartitions at any broker shows
    three replicas in sync."""
    spread, replicated = _name("cdirs"), _name("cdtp")
    admin = _admin(cluster)
    try:
        admin.create_topics([NewTopic(spread, 6, 1), NewTopic(replicated, 1, 3)])
        leaders = cluster.wait_leaders(spread, 6)
        cluster.wait_leaders(replicated, 1)
        expected = {
            node: {p for p, n in leaders.items() if n == node} for node in cluster.live
        }

        def hosted() -> bool:
            held: dict[int, set[int]] = {node: set() for node in cluster.live}
            for answer in admin.describe_log_dirs(topic_partitions=[spread]):
                [log_dir] = answer["log_dirs"]
                held[answer["broker"]] = {
                    p["partition_index"]
                    for t in log_dir["topics"]
                    if t["name"] == spread
                    for p in t["partitions"]
                }
            return held == expected

        # each broker makes its local logs just after its cache shows the topic
        wait_for(f"each broker's replicas of {spread}", hosted, timeout=30)
        producer = KafkaProducer(
            bootstrap_servers=[b.bootstrap for b in cluster.live.values()], acks="all"
        )
        try:
            for i in range(3):
                producer.send(replicated, f"v{i}".encode(), partition=0).get(timeout=30)
        finally:
            producer.close(timeout=10)

        def replicas_in_step() -> bool:
            seen = {}
            for answer in admin.describe_log_dirs(topic_partitions=[replicated]):
                [log_dir] = answer["log_dirs"]
                for t in log_dir["topics"]:
                    for p in t["partitions"]:
                        seen[answer["broker"]] = (p["partition_size"], p["offset_lag"])
            sizes = {size for size, _ in seen.values()}
            lags = {lag for _, lag in seen.values()}
            return len(seen) == 3 and len(sizes) == 1 and min(sizes) > 0 and lags == {0}

        wait_for(f"three equal replicas of {replicated}", replicas_in_step, timeout=30)
        for node in cluster.live:
            one = KafkaAdminClient(
                bootstrap_servers=cluster.brokers[node].bootstrap,
                request_timeout_ms=30000,
            )
            try:

                def in_sync(client: KafkaAdminClient = one) -> bool:
                    [t] = client.describe_topic_partitions([replicated])["topics"]
                    [p] = t["partitions"]
                    return bool(sorted(p["isr_nodes"]) == [1, 2, 3])

                wait_for(f"ISR of {replicated} at broker {node}", in_sync, timeout=30)
                [t] = one.describe_topic_partitions([replicated])["topics"]
                [p] = t["partitions"]
                assert sorted(p["replica_nodes"]) == [1, 2, 3]
                assert p["offline_replicas"] == []
            finally:
                one.close()
    finally:
        admin.close()
