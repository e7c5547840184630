"""Static membership (KIP-345) with librdkafka: a restarted leader causes no rebalance.

Two confluent-kafka consumers with ``group.instance.id`` share a topic. The group's
leader is closed (a static member sends no LeaveGroup) and a new consumer with the
same instance id takes its place under a new member id: the other member sees no
revoke or assign callback, the generation stays, and the restarted member gets the
partitions its instance had.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from tests._broker import BrokerProcess

pytestmark = pytest.mark.integration

TOPIC = "static"
GROUP = "static-group"


class Member:
    """One static consumer and the rebalance callbacks it saw."""

    def __init__(self, bootstrap: str, instance: str) -> None:
        self.instance = instance
        self.events: list[tuple[str, list[int]]] = []
        self.assigned: list[int] = []
        self.closed = False
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": GROUP,
                "group.instance.id": instance,
                "client.id": f"static-{instance}",
                "session.timeout.ms": 20_000,
                "heartbeat.interval.ms": 500,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "partition.assignment.strategy": "range",
            }
        )
        self.consumer.subscribe(
            [TOPIC], on_assign=self._on_assign, on_revoke=self._on_revoke
        )

    def _on_assign(self, _: Any, parts: Any) -> None:
        self.assigned = sorted(p.partition for p in parts)
        self.events.append(("assign", self.assigned))

    def _on_revoke(self, _: Any, parts: Any) -> None:
        self.events.append(("revoke", sorted(p.partition for p in parts)))

    def poll(self) -> None:
        self.consumer.consume(10, timeout=0.1)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.consumer.close()


def _poll_until(
    members: list[Member], done: Callable[[], bool], seconds: float = 30
) -> None:
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, "timed out"
        for m in members:
            m.poll()


def _group(broker: BrokerProcess) -> dict[str, Any]:
    view: dict[str, Any] = broker.admin("GET", f"/v1/groups/{GROUP}", timeout=5)
    return view


def _stable_with(broker: BrokerProcess, instances: set[str]) -> bool:
    view = _group(broker)
    return (
        view["state"] == "Stable"
        and {m["group_instance_id"] for m in view["members"]} == instances
    )


def test_restarted_static_leader_rejoins_without_a_rebalance(
    broker: BrokerProcess,
) -> None:
    """The leader's consumer is replaced by a new one with the same instance id: the
    follower gets no callback, the generation and assignment stay."""
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    for fut in admin.create_topics([NewTopic(TOPIC, 4, 1)]).values():
        fut.result(10)
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(8):
        producer.produce(TOPIC, value=b"v%d" % i, partition=i % 4)
    assert producer.flush(10) == 0

    a = Member(broker.bootstrap, "a")
    opened = [a]
    try:
        _poll_until([a], lambda: bool(a.assigned))
        b = Member(broker.bootstrap, "b")
        opened.append(b)
        members = {"a": a, "b": b}
        _poll_until(
            [a, b],
            lambda: (
                _stable_with(broker, {"a", "b"})
                and len(a.assigned) == 2
                and len(b.assigned) == 2
            ),
        )
        before = _group(broker)
        leader_id = before["leader"]
        by_id = {m["member_id"]: m["group_instance_id"] for m in before["members"]}
        leader = members[by_id[leader_id]]
        other = members["b" if leader.instance == "a" else "a"]
        kept = list(leader.assigned)
        other_kept = list(other.assigned)
        other.events.clear()

        leader.close()  # a static member leaves no LeaveGroup behind
        restarted = Member(broker.bootstrap, leader.instance)
        opened.append(restarted)
        _poll_until([restarted, other], lambda: restarted.assigned == kept)
        # let heartbeats run long enough that a rebalance would have shown
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            restarted.poll()
            other.poll()

        after = _group(broker)
        assert other.events == []
        assert other.assigned == other_kept
        assert after["state"] == "Stable"
        assert after["generation_id"] == before["generation_id"]
        ids = {m["group_instance_id"]: m["member_id"] for m in after["members"]}
        assert set(ids) == {"a", "b"}
        assert ids[leader.instance] != leader_id  # the old member id was replaced
    finally:
        for m in opened:
            m.close()
