"""Every real client carries on through a partition leader's failover.

One cluster (etcd and three brokers) serves the module. Each case creates its own
topic (one partition, three replicas, ``min.insync.replicas=2``); the client
produces a first half of keyed records (acks=all, idempotent where it can be),
the harness stops the partition's leader (SIGTERM: a controlled shutdown; SIGKILL:
the session expires and the controller elects), the same client produces the second
half bootstrapped on all three brokers, as users configure it, and reads the
partition from the start: every acknowledged record once, in order, from a new
leader at a higher leader epoch. A consumer following the partition while its
leader dies reads on without a gap or a duplicate, and one long-lived idempotent
producer with records in flight at the stop gets each acknowledged once. Each case
restarts the stopped broker (same data dir and port) and waits for the full ISR
before the next. Every client is tried with one signal here; the other signal, and
more following consumers, are marked slow (``make soak``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import kafka
import pytest
from confluent_kafka import Producer
from confluent_kafka import TopicPartition as CkTopicPartition

from protocol.messages.metadata import (
    MetadataRequest,
    MetadataRequestTopic,
    MetadataResponse,
)
from tests._broker import request
from tests._kafka_python import survive_departed_broker
from tests.cluster.e2e_cluster import Cluster, wait_for
from tests.integration._cli_drivers import KCAT_HEADERS, KafkajsDriver, KcatDriver
from tests.integration._client_drivers import (
    AiokafkaDriver,
    ConfluentDriver,
    Driver,
    Follower,
    KafkaPythonDriver,
    Rec,
)

HALF = 20  # records per half: kcat and kafkajs start a process per call


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """etcd and brokers 1, 2, 3, settled; killed at the end of the module."""
    c = Cluster(tmp_path_factory.mktemp("failover"))
    try:
        c.start()
        yield c
    finally:
        c.close()


def _records(tag: str, first: int, n: int) -> list[Rec]:
    return [
        Rec(
            partition=0,
            key=f"k{i}".encode(),
            value=f"{tag}-{i}".encode(),
            headers=KCAT_HEADERS,
            timestamp=None,
        )
        for i in range(first, first + n)
    ]


def _all_bootstraps(cluster: Cluster) -> str:
    return ",".join(cluster.bootstrap(i) for i in sorted(cluster.brokers))


def _leader_and_epoch(cluster: Cluster, node_id: int, topic: str) -> tuple[int, int]:
    """(leader, leader epoch) of partition 0 as broker ``node_id``'s Metadata v9
    answers; (-1, -1) while it knows no leader."""
    with cluster.brokers[node_id].connect() as sock:
        resp = request(
            sock,
            3,
            9,
            MetadataRequest(
                topics=(MetadataRequestTopic(name=topic),),
                allow_auto_topic_creation=False,
            ),
        )
    assert isinstance(resp, MetadataResponse)
    [t] = resp.topics
    if t.error_code != 0 or not t.partitions:
        return -1, -1
    [p] = t.partitions
    if p.error_code != 0:
        return -1, -1
    return p.leader_id, p.leader_epoch


def _high_watermark(bootstrap: str, topic: str) -> int:
    consumer = ConfluentDriver.consumer(bootstrap)
    try:
        _, high = consumer.get_watermark_offsets(
            CkTopicPartition(topic, 0), timeout=10, cached=False
        )
    finally:
        consumer.close()
    return int(high)


def _wait_full_isr(cluster: Cluster, topic: str) -> None:
    wait_for(
        f"{topic}'s ISR to hold 1, 2, 3",
        lambda: sorted(cluster.partition(topic, 0).get("isr", [])) == [1, 2, 3],
        timeout=30,
    )


def _new_topic(cluster: Cluster, tag: str) -> tuple[str, int, int]:
    """A one-partition RF=3 topic with min.insync.replicas=2 and a full ISR; its
    name, leader and leader epoch."""
    topic = f"failover-{tag}-{uuid.uuid4().hex[:8]}"
    cluster.create_topic(1, topic, 1, 3, {"min.insync.replicas": "2"})
    cluster.wait_leaders(topic, 1)
    _wait_full_isr(cluster, topic)
    leader, epoch = _leader_and_epoch(cluster, 1, topic)
    assert leader in (1, 2, 3)
    return topic, leader, epoch


def _stop(cluster: Cluster, node_id: int, how: str) -> None:
    if how == "sigkill":
        cluster.kill(node_id)
    else:
        assert cluster.stop(node_id) == 0  # a controlled shutdown exits cleanly


def _restore(cluster: Cluster, node_id: int, topic: str) -> None:
    """Restart the stopped broker and wait until it is back in the ISR."""
    if cluster.brokers[node_id].proc.poll() is not None:
        cluster.start_broker(node_id)
    cluster.wait_settled()
    _wait_full_isr(cluster, topic)


def _moved_leader(
    cluster: Cluster, survivor: int, topic: str, old: int
) -> tuple[int, int]:
    """The new leader and its epoch, once the survivor's Metadata names one."""

    def moved() -> tuple[int, int] | None:
        leader, epoch = _leader_and_epoch(cluster, survivor, topic)
        return None if leader in (-1, old) else (leader, epoch)

    leader, epoch = wait_for(f"a new leader of {topic}", moved)
    return int(leader), int(epoch)


def _assert_exactly_once(got: list[Rec], sent: list[Rec], first_offset: int) -> None:
    """``got`` is ``sent`` in order, once each, at consecutive offsets."""
    assert [(r.key, r.value) for r in got] == [(r.key, r.value) for r in sent]
    assert [r.offset for r in got] == list(
        range(first_offset, first_offset + len(sent))
    )
    assert all(r.partition == 0 for r in got)


CASES = [
    pytest.param(KafkaPythonDriver(), "sigkill", id="kafka-python-sigkill"),
    pytest.param(AiokafkaDriver(), "sigterm", id="aiokafka-sigterm"),
    pytest.param(ConfluentDriver(), "sigkill", id="confluent-kafka-sigkill"),
    pytest.param(KcatDriver(), "sigterm", id="kcat-sigterm"),
    pytest.param(KafkajsDriver(), "sigkill", id="kafkajs-sigkill"),
    # the other signal for each client: `make soak`
    *(
        pytest.param(d, how, id=f"{d.name}-{how}", marks=pytest.mark.slow)
        for d, how in [
            (KafkaPythonDriver(), "sigterm"),
            (AiokafkaDriver(), "sigkill"),
            (ConfluentDriver(), "sigterm"),
            (KcatDriver(), "sigkill"),
            (KafkajsDriver(), "sigterm"),
        ]
    ),
]


@pytest.mark.parametrize(("driver", "how"), CASES)
def test_client_produces_and_reads_through_a_leader_failover(
    cluster: Cluster, driver: Driver, how: str
) -> None:
    """After the leader is stopped, the client's second half lands on the new leader
    (higher leader epoch) and the partition reads back every acknowledged record
    once, in order, at offsets 0..n-1."""
    topic, old_leader, old_epoch = _new_topic(cluster, driver.name)
    survivor = next(i for i in (1, 2, 3) if i != old_leader)
    first = _records(driver.name, 0, HALF)
    second = _records(driver.name, HALF, HALF)
    driver.produce(cluster.bootstrap(survivor), topic, "none", first, idempotent=True)
    try:
        _stop(cluster, old_leader, how)
        everyone = _all_bootstraps(cluster)
        driver.produce(everyone, topic, "none", second, idempotent=True)
        new_leader, new_epoch = _moved_leader(cluster, survivor, topic, old_leader)
        assert new_epoch > old_epoch
        assert cluster.partition(topic, 0)["leader"] == new_leader
        got = driver.read(everyone, topic, {0: ("earliest", 2 * HALF)})
        _assert_exactly_once(got[0], first + second, 0)
        assert _high_watermark(cluster.bootstrap(new_leader), topic) == 2 * HALF
    finally:
        _restore(cluster, old_leader, topic)


def _follow(follower: Follower, got: list[Rec], until: bytes | None) -> None:
    """Poll ``follower`` into ``got`` until the record with value ``until`` is in."""
    deadline = time.monotonic() + 30
    while all(r.value != until for r in got):
        assert time.monotonic() < deadline, f"the follower read {len(got)} records"
        got.extend(follower.poll(0.5))


FOLLOW_CASES = [
    pytest.param(ConfluentDriver(), "sigkill", id="confluent-kafka-sigkill"),
    pytest.param(KafkaPythonDriver(), "sigterm", id="kafka-python-sigterm"),
    *(
        pytest.param(d, how, id=f"{d.name}-{how}", marks=pytest.mark.slow)
        for d, how in [
            (ConfluentDriver(), "sigterm"),
            (KafkaPythonDriver(), "sigkill"),
            (AiokafkaDriver(), "sigkill"),
            (KcatDriver(), "sigterm"),
        ]
    ),
]


@pytest.mark.parametrize(("driver", "how"), FOLLOW_CASES)
def test_a_following_consumer_reads_on_through_a_leader_failover(
    cluster: Cluster, driver: Driver, how: str
) -> None:
    """A consumer following the partition from its end while the leader is stopped
    reads every record produced after, without a gap or a duplicate."""
    topic, old_leader, _ = _new_topic(cluster, f"follow-{driver.name}")
    survivor = next(i for i in (1, 2, 3) if i != old_leader)
    everyone = _all_bootstraps(cluster)
    sent = _records(driver.name, 0, 2 * HALF)
    follower = driver.follow_latest(everyone, topic, 0)
    try:
        # some clients resolve "latest" lazily: one record at a time until the
        # follower sees one, then the rest of the first half at once
        got: list[Rec] = []
        produced = 0
        while not got:
            assert produced < HALF, "the follower saw none of the first records"
            driver.produce(
                cluster.bootstrap(survivor),
                topic,
                "none",
                sent[produced : produced + 1],
                idempotent=True,
            )
            produced += 1
            got.extend(follower.poll(0.5))
        start = got[0].offset
        assert 0 <= start < produced
        if produced < HALF:
            driver.produce(
                cluster.bootstrap(survivor),
                topic,
                "none",
                sent[produced:HALF],
                idempotent=True,
            )
        _follow(follower, got, sent[HALF - 1].value)
        _stop(cluster, old_leader, how)
        driver.produce(everyone, topic, "none", sent[HALF:], idempotent=True)
        _follow(follower, got, sent[-1].value)
        got.extend(follower.poll(1.0))  # a duplicate would show up here
    finally:
        follower.close()
        _restore(cluster, old_leader, topic)
    _assert_exactly_once(got, sent[start:], start)


class _Producer(Protocol):
    """One long-lived idempotent acks=all producer of a client."""

    def send(self, records: list[Rec]) -> None: ...
    def flush(self) -> None: ...  # raises unless every record sent is acknowledged
    def close(self) -> None: ...


class _ConfluentProducer:
    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
            }
        )
        self.errors: list[object] = []
        self.sent = self.acked = 0

    def _delivered(self, err: object, _msg: object) -> None:
        if err is None:
            self.acked += 1
        else:
            self.errors.append(err)

    def send(self, records: list[Rec]) -> None:
        for r in records:
            self.producer.produce(
                self.topic,
                key=r.key,
                value=r.value,
                partition=0,
                on_delivery=self._delivered,
            )
            self.sent += 1
        self.producer.poll(0)

    def flush(self) -> None:
        assert self.producer.flush(30) == 0
        assert self.errors == []
        assert self.acked == self.sent

    def close(self) -> None:
        self.producer.flush(5)


class _KafkaPythonProducer:
    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        survive_departed_broker()  # a kafka-python 3.0 bug: see the helper
        self.producer = kafka.KafkaProducer(
            bootstrap_servers=bootstrap, acks="all", enable_idempotence=True
        )
        self.futures: list[Any] = []

    def send(self, records: list[Rec]) -> None:
        self.futures.extend(
            self.producer.send(self.topic, key=r.key, value=r.value, partition=0)
            for r in records
        )

    def flush(self) -> None:
        self.producer.flush(timeout=30)
        for f in self.futures:
            f.get(timeout=30)

    def close(self) -> None:
        self.producer.close(timeout=10)


LONG_LIVED = [
    pytest.param(_ConfluentProducer, "sigkill", id="confluent-kafka-sigkill"),
    pytest.param(_KafkaPythonProducer, "sigterm", id="kafka-python-sigterm"),
    pytest.param(
        _ConfluentProducer,
        "sigterm",
        id="confluent-kafka-sigterm",
        marks=pytest.mark.slow,
    ),
    pytest.param(
        _KafkaPythonProducer,
        "sigkill",
        id="kafka-python-sigkill",
        marks=pytest.mark.slow,
    ),
]


@pytest.mark.parametrize(("make", "how"), LONG_LIVED)
def test_one_idempotent_producer_carries_on_through_a_leader_failover(
    cluster: Cluster, make: Callable[[str, str], _Producer], how: str
) -> None:
    """One idempotent producer, with records in flight when the leader stops,
    gets every record acknowledged by the new leader, and each is in the log once,
    in order."""
    topic, old_leader, _ = _new_topic(cluster, "long-lived")
    everyone = _all_bootstraps(cluster)
    sent = _records("long-lived", 0, 2 * HALF)
    producer = make(everyone, topic)
    try:
        producer.send(sent[:HALF])
        producer.flush()
        producer.send(sent[HALF : HALF + 5])  # in flight, or queued, at the stop
        _stop(cluster, old_leader, how)
        producer.send(sent[HALF + 5 :])
        producer.flush()
        got = ConfluentDriver().read(everyone, topic, {0: ("earliest", 2 * HALF)})
        survivor = next(i for i in (1, 2, 3) if i != old_leader)
        assert _high_watermark(cluster.bootstrap(survivor), topic) == 2 * HALF
    finally:
        producer.close()
        _restore(cluster, old_leader, topic)
    _assert_exactly_once(got[0], sent, 0)
