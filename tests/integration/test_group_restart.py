"""A consumer group's membership survives a broker restart, as in Kafka.

The broker is SIGKILLed and started again on the same data dir and port: members
that heartbeat within their session carry on in the same generation with the same
assignment (no revoke or assign callback) and their next commit succeeds; a member
that never comes back is expired after its session timeout and the group
rebalances; a group that was Empty stays Empty with its offsets.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kafka
import kafka.errors
import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka.coordinator.assignors.range import RangePartitionAssignor
from kafka.structs import OffsetAndMetadata
from kafka.structs import TopicPartition as KTopicPartition

from tests._broker import ROOT, BrokerProcess, free_port, start_broker
from tests._kafka_python import subscribe_known

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent
TIMEOUT_S = 60.0


@pytest.fixture
def restartable(tmp_path: Path) -> Iterator[Callable[[], BrokerProcess]]:
    """Starts the broker, again on the same data dir and port at each call."""
    port = free_port()
    started: list[BrokerProcess] = []

    def up() -> BrokerProcess:
        b = start_broker(
            tmp_path / "data", log_dir=tmp_path / "logs", port=port, timeout=30
        )
        started.append(b)
        return b

    yield up
    for b in started:
        b.kill()


def _topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
        fut.result(15)
    producer = Producer({"bootstrap.servers": bootstrap})
    for i in range(2 * partitions):
        producer.produce(topic, value=b"v%d" % i, partition=i % partitions)
    assert producer.flush(15) == 0


def _group(broker: BrokerProcess, group: str) -> dict[str, Any]:
    view: dict[str, Any] = broker.admin("GET", f"/v1/groups/{group}", timeout=10)
    return view


class Confluent:
    """A confluent-kafka group consumer and the rebalance callbacks it saw."""

    def __init__(self, bootstrap: str, group: str, topic: str) -> None:
        self.events: list[tuple[str, list[int]]] = []
        self.assigned: list[int] = []
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": group,
                "client.id": "ck-restart",
                "session.timeout.ms": 30_000,
                "heartbeat.interval.ms": 500,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "partition.assignment.strategy": "range",
            }
        )
        self.consumer.subscribe(
            [topic], on_assign=self._on_assign, on_revoke=self._on_revoke
        )

    def _on_assign(self, _: Any, parts: Any) -> None:
        self.assigned = sorted(p.partition for p in parts)
        self.events.append(("assign", self.assigned))

    def _on_revoke(self, _: Any, parts: Any) -> None:
        self.events.append(("revoke", sorted(p.partition for p in parts)))

    def poll(self) -> None:
        self.consumer.consume(10, timeout=0.1)

    def commit(self, topic: str) -> bool:
        """Commit offset 1 of each assigned partition; whether it succeeded."""
        try:
            self.consumer.commit(
                offsets=[TopicPartition(topic, p, 1) for p in self.assigned],
                asynchronous=False,
            )
        except KafkaException:
            return False
        return True


class KafkaPython:
    """A kafka-python group consumer and the rebalance callbacks it saw."""

    def __init__(self, bootstrap: str, group: str, topic: str) -> None:
        self.events: list[tuple[str, list[int]]] = []
        self.assigned: list[int] = []
        owner = self

        class Listener(kafka.ConsumerRebalanceListener):  # type: ignore[misc]
            def on_partitions_revoked(self, revoked: Any) -> None:
                owner.events.append(("revoke", sorted(tp.partition for tp in revoked)))

            def on_partitions_assigned(self, assigned: Any) -> None:
                owner.assigned = sorted(tp.partition for tp in assigned)
                owner.events.append(("assign", owner.assigned))

        self.consumer = kafka.KafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=group,
            client_id="kp-restart",
            session_timeout_ms=30_000,
            heartbeat_interval_ms=500,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            partition_assignment_strategy=[RangePartitionAssignor],
        )
        subscribe_known(self.consumer, [topic], listener=Listener())

    def poll(self) -> None:
        self.consumer.poll(timeout_ms=100)

    def commit(self, topic: str) -> bool:
        """Commit offset 1 of each assigned partition; whether it succeeded."""
        try:
            self.consumer.commit(
                {
                    KTopicPartition(topic, p): OffsetAndMetadata(1, "", -1)
                    for p in self.assigned
                }
            )
        except kafka.errors.KafkaError:
            return False
        return True


def _poll_until(
    members: list[Confluent | KafkaPython], done: Callable[[], bool]
) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not done():
        assert time.monotonic() < deadline, "timed out"
        for m in members:
            m.poll()


def _stable(broker: BrokerProcess, group: str, members: int) -> bool:
    try:
        view = _group(broker, group)
    except urllib.error.HTTPError as e:
        if e.code == 404:  # no member joined yet
            return False
        raise
    return view["state"] == "Stable" and len(view["members"]) == members


def test_members_of_both_clients_carry_on_after_a_broker_kill(
    restartable: Callable[[], BrokerProcess],
) -> None:
    """A kafka-python and a confluent-kafka member keep their member ids, generation
    and partitions across a SIGKILL of the broker, see no rebalance callback, and
    their next commits succeed."""
    topic, group = "restart-t", "restart-g"
    broker = restartable()
    _topic(broker.bootstrap, topic, 4)
    kp = KafkaPython(broker.bootstrap, group, topic)
    ck = Confluent(broker.bootstrap, group, topic)
    members: list[Confluent | KafkaPython] = [kp, ck]
    try:
        _poll_until(
            members,
            lambda: (
                _stable(broker, group, 2)
                and len(kp.assigned) == 2
                and len(ck.assigned) == 2
            ),
        )
        before = _group(broker, group)
        assigned = (list(kp.assigned), list(ck.assigned))
        kp.events.clear()
        ck.events.clear()

        broker.kill()
        broker = restartable()
        assert _group(broker, group)["generation_id"] == before["generation_id"]
        done = {"kp": False, "ck": False}

        def committed() -> bool:
            done["kp"] = done["kp"] or kp.commit(topic)
            done["ck"] = done["ck"] or ck.commit(topic)
            return all(done.values())

        _poll_until(members, committed)
        # heartbeats run a while more: a rebalance would show now
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            for m in members:
                m.poll()
        after = _group(broker, group)
        assert after["state"] == "Stable"
        assert after["generation_id"] == before["generation_id"]
        assert sorted(m["member_id"] for m in after["members"]) == sorted(
            m["member_id"] for m in before["members"]
        )
        assert (kp.assigned, ck.assigned) == assigned
        assert kp.events == []
        assert ck.events == []
        offsets = {(o["topic"], o["partition"]): o["offset"] for o in after["offsets"]}
        assert offsets == {(topic, p): 1 for p in range(4)}
    finally:
        kp.consumer.close()
        ck.consumer.close()


def _crashable_member(bootstrap: str, topic: str, group: str) -> subprocess.Popen[str]:
    """A confluent-kafka member (3 s session) in its own process, to be SIGKILLed."""
    return subprocess.Popen(
        [
            sys.executable,
            str(HERE / "_group_member.py"),
            "confluent",
            bootstrap,
            topic,
            group,
            "range",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
        text=True,
    )


def test_member_that_never_returns_expires_and_empty_group_stays_empty(
    restartable: Callable[[], BrokerProcess],
) -> None:
    """After a restart a member killed meanwhile is expired after its session and
    the group rebalances onto the one that came back; a group that was Empty
    reloads Empty with its offsets."""
    topic, group, idle = "expire-t", "expire-g", "idle-g"
    broker = restartable()
    _topic(broker.bootstrap, topic, 2)
    # an Empty group with offsets: one member that commits and leaves
    leaver = Confluent(broker.bootstrap, idle, topic)
    _poll_until([leaver], lambda: len(leaver.assigned) == 2)
    assert leaver.commit(topic)
    leaver.consumer.close()
    assert _group(broker, idle)["state"] == "Empty"
    idle_generation = _group(broker, idle)["generation_id"]

    stays = Confluent(broker.bootstrap, group, topic)
    gone = _crashable_member(broker.bootstrap, topic, group)
    try:
        assert gone.stdout is not None
        _poll_until(
            [stays],
            lambda: _stable(broker, group, 2) and len(stays.assigned) == 1,
        )
        generation = _group(broker, group)["generation_id"]
        stays.events.clear()

        broker.kill()
        gone.kill()
        gone.wait(10)
        broker = restartable()
        view = _group(broker, idle)
        assert view["state"] == "Empty"
        assert view["generation_id"] == idle_generation
        assert [(o["partition"], o["offset"]) for o in view["offsets"]] == [
            (0, 1),
            (1, 1),
        ]
        assert _group(broker, group)["generation_id"] == generation
        _poll_until([stays], lambda: stays.assigned == [0, 1])
        after = _group(broker, group)
        assert after["state"] == "Stable"
        assert after["generation_id"] > generation
        assert len(after["members"]) == 1
        assert [kind for kind, _ in stays.events] == ["revoke", "assign"]
        assert stays.commit(topic)
    finally:
        gone.kill()
        gone.wait(10)
        if gone.stdout is not None:
            gone.stdout.close()
        stays.consumer.close()
