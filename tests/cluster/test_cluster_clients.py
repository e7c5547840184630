"""Every real client against a three-broker cluster over a real etcd.

One cluster for the module (the tests use their own topics and groups and stop no
broker): kafka-python, aiokafka, confluent-kafka, kcat and kafkajs each bootstrap
from ONE broker, produce keyed records to partitions led by all three and read
every one back exactly once, in order; a consumer group commits and a second
member resumes; topics are created, grown, auto-created and deleted through
non-controller brokers; ``ailurus cluster info|health`` and the admin API describe
the cluster.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import kafka
import kafka.admin
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import NewPartitions

from protocol.messages.create_topics import (
    CreatableTopic,
    CreateTopicsRequest,
    CreateTopicsResponse,
)
from tests._broker import request
from tests._kafka_python import group_consumer
from tests.cluster.e2e_cluster import Cluster, wait_for
from tests.integration._cli_drivers import KCAT_HEADERS, KafkajsDriver, KcatDriver
from tests.integration._client_drivers import (
    AiokafkaDriver,
    ConfluentDriver,
    Driver,
    KafkaPythonDriver,
    Rec,
    without_offset,
)

AILURUS = Path(sys.executable).parent / "ailurus"
DRIVERS: list[Driver] = [
    KafkaPythonDriver(),
    AiokafkaDriver(),
    ConfluentDriver(),
    KcatDriver(),
    KafkajsDriver(),
]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """etcd and brokers 1, 2, 3, settled; killed at the end of the module."""
    c = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        c.start()
        yield c
    finally:
        c.close()


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _records(tag: str, partitions: int, per_partition: int) -> list[Rec]:
    return [
        Rec(
            partition=p,
            key=f"k{p}-{i}".encode(),
            value=f"{tag}-{p}-{i}".encode(),
            headers=KCAT_HEADERS,
            timestamp=None,
        )
        for p in range(partitions)
        for i in range(per_partition)
    ]


def _assert_read_back(
    sent: list[Rec], got: dict[int, list[Rec]], partitions: int
) -> None:
    """Every record read once, in order per partition, at offsets 0..n-1."""
    for p in range(partitions):
        want = [(r.key, r.value) for r in sent if r.partition == p]
        have = got[p]
        assert [(r.key, r.value) for r in have] == want, f"partition {p}"
        assert [r.offset for r in have] == list(range(len(want)))
        assert all(r.partition == p for r in have)


def test_partitions_are_led_by_all_three_brokers(cluster: Cluster) -> None:
    """A 12- and a 60-partition topic are led by all three brokers, and every
    broker's Metadata lists the three brokers and the same leaders and controller."""
    for partitions in (12, 60):
        topic = _name(f"spread{partitions}")
        cluster.create_topic(1, topic, partitions)
        leaders = cluster.wait_leaders(topic, partitions)
        assert set(leaders.values()) == {1, 2, 3}
        controller = cluster.controller()
        for i in (1, 2, 3):
            md = cluster.metadata(i, topic)
            assert sorted(md.brokers) == [1, 2, 3]
            assert md.controller_id == controller
            assert cluster.leaders(i, topic) == leaders


@pytest.mark.parametrize("driver", DRIVERS, ids=lambda d: d.name)
def test_client_produces_and_consumes_across_brokers(
    cluster: Cluster, driver: Driver
) -> None:
    """Bootstrapped from one broker, the client follows Metadata to all three
    leaders: every keyed record is read back once, in order per partition."""
    node = 1 + DRIVERS.index(driver) % 3
    bootstrap = cluster.bootstrap(node)
    topic = _name(f"clients-{driver.name}")
    driver.create_topic(bootstrap, topic, 12)
    leaders = cluster.wait_leaders(topic, 12)
    assert set(leaders.values()) == {1, 2, 3}
    sent = _records(driver.name, 12, 5)
    driver.produce(bootstrap, topic, "none", sent)
    got = driver.read(bootstrap, topic, dict.fromkeys(range(12), ("earliest", 5)))
    _assert_read_back(sent, got, 12)
    for p, recs in got.items():
        assert [without_offset(r).key for r in recs] == [
            f"k{p}-{i}".encode() for i in range(5)
        ]


def test_sixty_partitions_take_records_through_one_bootstrap_broker(
    cluster: Cluster,
) -> None:
    """confluent-kafka bootstrapped from broker 3 produces to and reads all 60
    partitions of a topic spread over the cluster."""
    bootstrap = cluster.bootstrap(3)
    topic = _name("sixty")
    driver = ConfluentDriver()
    driver.create_topic(bootstrap, topic, 60)
    assert set(cluster.wait_leaders(topic, 60).values()) == {1, 2, 3}
    sent = _records("sixty", 60, 3)
    driver.produce(bootstrap, topic, "lz4", sent)
    got = driver.read(bootstrap, topic, dict.fromkeys(range(60), ("earliest", 3)))
    _assert_read_back(sent, got, 60)


def _produce_keyed(bootstrap: str, topic: str, values: list[str]) -> None:
    producer = Producer(
        {"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all"}
    )
    errors: list[object] = []
    for v in values:
        producer.produce(
            topic,
            v.encode(),
            key=v.encode(),
            on_delivery=lambda err, _m: err is not None and errors.append(err),
        )
    assert producer.flush(30) == 0
    assert errors == []


def _group_consumer(bootstrap: str, group: str, topic: str) -> kafka.KafkaConsumer:
    return group_consumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=3000,
        heartbeat_interval_ms=500,
    )


def _consume(consumer: kafka.KafkaConsumer, n: int) -> list[tuple[int, int, bytes]]:
    out: list[tuple[int, int, bytes]] = []
    deadline = time.monotonic() + 60
    while len(out) < n:
        assert time.monotonic() < deadline, f"read {len(out)} of {n}"
        for tp, msgs in consumer.poll(timeout_ms=500).items():
            out.extend((tp.partition, m.offset, m.value) for m in msgs)
    return out


def test_a_group_member_resumes_from_committed_offsets(cluster: Cluster) -> None:
    """Every broker names the same coordinator; a kafka-python member reads and
    commits, and the next member of the group reads only what came after."""
    topic = _name("group")
    group = _name("g")
    bootstrap = cluster.bootstrap(2)
    ConfluentDriver().create_topic(bootstrap, topic, 12)
    cluster.wait_leaders(topic, 12)
    answers = {cluster.find_coordinator(i, group) for i in (1, 2, 3)}
    assert len(answers) == 1
    [(error, coordinator)] = answers
    assert error == 0
    assert coordinator in (1, 2, 3)

    first = [f"a{i}" for i in range(120)]
    _produce_keyed(bootstrap, topic, first)
    consumer = _group_consumer(bootstrap, group, topic)
    try:
        got = _consume(consumer, 120)
        consumer.commit()
        committed = {
            p: consumer.committed(kafka.TopicPartition(topic, p)) for p in range(12)
        }
    finally:
        consumer.close()
    assert sorted(v.decode() for _, _, v in got) == sorted(first)
    assert len(got) == 120
    assert sum(o or 0 for o in committed.values()) == 120
    per_partition: dict[int, list[int]] = {}
    for p, o, _ in got:
        per_partition.setdefault(p, []).append(o)
    assert all(
        offsets == list(range(len(offsets))) for offsets in per_partition.values()
    )
    assert len(per_partition) > 1  # keys spread over partitions

    second = [f"b{i}" for i in range(60)]
    _produce_keyed(bootstrap, topic, second)
    resumed = _group_consumer(cluster.bootstrap(3), group, topic)
    try:
        got2 = _consume(resumed, 60)
        extra = resumed.poll(timeout_ms=1000)
    finally:
        resumed.close()
    assert sorted(v.decode() for _, _, v in got2) == sorted(second)
    assert not any(extra.values())


# -- topic administration from any broker ---------------------------------------


def test_create_topics_through_a_non_controller_broker(cluster: Cluster) -> None:
    """CreateTopics sent to a broker that is not the controller creates the topic
    on every broker; so do confluent's AdminClient and kafka-python's admin
    bootstrapped on it (they send theirs to the controller Metadata names)."""
    node = cluster.non_controller()
    assert node != cluster.controller()
    raw_topic = _name("raw-admin")
    with cluster.brokers[node].connect() as sock:
        created = request(
            sock,
            19,
            5,
            CreateTopicsRequest(
                topics=(
                    CreatableTopic(
                        name=raw_topic, num_partitions=5, replication_factor=1
                    ),
                ),
                timeout_ms=20_000,
            ),
        )
    assert isinstance(created, CreateTopicsResponse)
    [answer] = created.topics
    assert (answer.name, answer.error_code, answer.num_partitions) == (raw_topic, 0, 5)
    assert set(cluster.wait_leaders(raw_topic, 5).values()) == {1, 2, 3}
    ck_topic = _name("ck-admin")
    cluster.create_topic(node, ck_topic, 6)
    assert len(cluster.wait_leaders(ck_topic, 6)) == 6

    kp_topic = _name("kp-admin")
    admin = kafka.KafkaAdminClient(bootstrap_servers=cluster.bootstrap(node))
    try:
        admin.create_topics(
            [kafka.admin.NewTopic(kp_topic, num_partitions=4, replication_factor=1)]
        )
        with pytest.raises(kafka.errors.TopicAlreadyExistsError):
            admin.create_topics(
                [kafka.admin.NewTopic(kp_topic, num_partitions=4, replication_factor=1)]
            )
    finally:
        admin.close()
    assert len(cluster.wait_leaders(kp_topic, 4)) == 4


def test_producing_to_a_new_topic_through_a_non_controller_creates_it(
    cluster: Cluster,
) -> None:
    """A producer's Metadata for an unknown topic, sent to a non-controller,
    auto-creates it cluster-wide and the record is delivered."""
    node = cluster.non_controller()
    topic = _name("auto")
    _produce_keyed(cluster.bootstrap(node), topic, ["hello"])
    leaders = cluster.wait_leaders(topic, 1)
    got = ConfluentDriver().read(cluster.bootstrap(node), topic, {0: ("earliest", 1)})
    assert [r.value for r in got[0]] == [b"hello"]
    assert leaders[0] in (1, 2, 3)


def test_create_partitions_adds_led_partitions_that_take_records(
    cluster: Cluster,
) -> None:
    """CreatePartitions grows a topic from 3 to 9 partitions; every broker sees
    the new ones with leaders, and they take records."""
    node = cluster.non_controller()
    topic = _name("grow")
    admin = cluster.admin(node)
    cluster.create_topic(node, topic, 3)
    cluster.wait_leaders(topic, 3)
    admin.create_partitions([NewPartitions(topic, 9)])[topic].result(timeout=30)
    leaders = cluster.wait_leaders(topic, 9)
    assert set(leaders.values()) == {1, 2, 3}
    driver = ConfluentDriver()
    sent = _records("grow", 9, 2)
    driver.produce(cluster.bootstrap(1), topic, "none", sent)
    got = driver.read(
        cluster.bootstrap(2), topic, dict.fromkeys(range(9), ("earliest", 2))
    )
    _assert_read_back(sent, got, 9)


def test_delete_topics_removes_it_from_every_broker(cluster: Cluster) -> None:
    """DeleteTopics through one broker removes the topic from every broker's
    Metadata and its partitions from every data dir."""
    topic = _name("gone")
    driver = ConfluentDriver()
    driver.create_topic(cluster.bootstrap(1), topic, 6)
    cluster.wait_leaders(topic, 6)
    driver.produce(cluster.bootstrap(1), topic, "none", _records("gone", 6, 2))

    def on_disk(i: int) -> list[Path]:
        return list(cluster.brokers[i].data_dir.rglob(f"{topic}*"))

    assert all(on_disk(i) for i in (1, 2, 3))
    driver.delete_topic(cluster.bootstrap(cluster.non_controller()), topic)
    for i in (1, 2, 3):
        wait_for(
            f"broker {i} to drop {topic}",
            lambda i=i: topic not in cluster.metadata(i).topics,
        )
        wait_for(f"broker {i} to delete {topic} on disk", lambda i=i: not on_disk(i))


# -- the CLI and the admin API ----------------------------------------------------


def _cli(cluster: Cluster, node: int, *args: str) -> subprocess.CompletedProcess[str]:
    b = cluster.brokers[node]
    return subprocess.run(
        [
            str(AILURUS),
            "--brokers",
            b.bootstrap,
            "--admin-url",
            b.admin_url,
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )


def test_cluster_info_and_health_describe_three_brokers(cluster: Cluster) -> None:
    """``cluster info`` lists the three brokers with the controller marked;
    ``cluster health`` is healthy and exits 0."""
    controller = cluster.controller()
    res = _cli(cluster, 2, "--format", "json", "cluster", "info")
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout)
    assert info["controller_id"] == controller
    assert sorted(b["node_id"] for b in info["brokers"]) == [1, 2, 3]
    assert [b["node_id"] for b in info["brokers"] if b["is_controller"]] == [controller]
    assert all(b["leader_partitions"] > 0 for b in info["brokers"])
    health = _cli(cluster, 3, "cluster", "health")
    assert health.returncode == 0, health.stdout + health.stderr
    assert "Healthy:" in health.stdout
    assert "true" in health.stdout.split("Healthy:")[1].splitlines()[0]
    assert f"Controller ID:                    {controller}" in health.stdout
    report = json.loads(
        _cli(cluster, 1, "--format", "json", "cluster", "health").stdout
    )
    assert report["healthy"] is True
    assert report["all_nodes"] == [1, 2, 3]
    assert report["controller_id"] == controller


def test_admin_api_describes_the_cluster_from_any_broker(cluster: Cluster) -> None:
    """``/v1/brokers``, ``/v1/cluster`` and ``/v1/partitions/{topic}`` answer the
    same brokers, controller and leaders from every broker."""
    topic = _name("api")
    cluster.create_topic(1, topic, 6)
    leaders = cluster.wait_leaders(topic, 6)
    controller = cluster.controller()
    for i in (1, 2, 3):
        b = cluster.brokers[i]
        brokers = b.admin("GET", "/v1/brokers")
        rows = brokers if isinstance(brokers, list) else brokers["brokers"]
        assert sorted(r["node_id"] for r in rows) == [1, 2, 3]
        assert [r["node_id"] for r in rows if r["is_controller"]] == [controller]
        state = b.admin("GET", "/v1/cluster")
        assert state["clustered"] is True
        assert state["controller_id"] == controller
        assert sorted(state["broker_ids"]) == [1, 2, 3]
        assert state["healthy"] is True
        assert state["leaderless_partitions"] in (0, [])
        parts = b.admin("GET", f"/v1/partitions/{topic}")
        prow = parts if isinstance(parts, list) else parts["partitions"]
        assert {r["partition"]: r["leader"] for r in prow} == leaders
        assert not any(r["leaderless"] for r in prow)
