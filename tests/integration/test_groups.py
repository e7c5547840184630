"""Consumer groups, committed offsets and idempotence with real clients.

Group members run as separate processes (tests/integration/_group_member.py for the
Python clients, _group_member.js for kafkajs) so that one can be SIGKILLed without
leaving the group. The broker runs as a user runs it: ``python -m broker serve``.
"""

from __future__ import annotations

import collections
import contextlib
import json
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tests._broker import ROOT, BrokerProcess, start_broker

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent
SESSION_S = 3.0  # the members' session.timeout.ms (see _group_member.py)


# -- broker -------------------------------------------------------------------------


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., BrokerProcess]]:
    brokers: list[BrokerProcess] = []

    def factory(*args: str, data_dir: Path | None = None) -> BrokerProcess:
        b = start_broker(
            data_dir or tmp_path / "data",
            *args,
            log_dir=tmp_path / "logs",
            timeout=20,
        )
        brokers.append(b)
        return b

    yield factory
    for b in brokers:
        b.kill()


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
        fut.result(timeout=20)


def produce(bootstrap: str, topic: str, values: list[str], partitions: int) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    for i, v in enumerate(values):
        p.produce(topic, value=v.encode(), partition=i % partitions)
    assert p.flush(30) == 0


def wait_until(pred: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll ``pred`` (bounded); returns the seconds it took."""
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - t0


# -- members ------------------------------------------------------------------------


class Member:
    """A group member process and the JSON events it printed."""

    def __init__(
        self, client: str, bootstrap: str, topic: str, group: str, assignor: str
    ) -> None:
        self.client = client
        if client == "kafkajs":
            cmd = ["node", str(HERE / "_group_member.js"), bootstrap, topic, group]
        else:
            cmd = [
                sys.executable,
                str(HERE / "_group_member.py"),
                client,
                bootstrap,
                topic,
                group,
                assignor,
            ]
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT
        )
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            with self._lock:
                self.events.append(event)

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.events)

    @property
    def assignment(self) -> set[int]:
        assigned = [e for e in self.snapshot() if e["event"] == "assigned"]
        return set(assigned[-1]["partitions"]) if assigned else set()

    def records(self) -> list[dict[str, Any]]:
        return [e for e in self.snapshot() if e["event"] == "record"]

    def committed(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for e in self.snapshot():
            if e["event"] == "committed":
                out.update({int(k): v for k, v in e["offsets"].items()})
        return out

    def errors(self) -> list[str]:
        return [e["error"] for e in self.snapshot() if e["event"] == "error"]

    def _finish(self) -> None:
        self._reader.join(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def leave(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=20)
        self._finish()

    def crash(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)
        self._finish()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._finish()


def owned_once(members: list[Member], partitions: int) -> bool:
    """Every partition is assigned to exactly one live member."""
    assignments = [m.assignment for m in members]
    owners = [p for a in assignments for p in a]
    return all(assignments) and sorted(owners) == list(range(partitions))


def processed_values(members: list[Member]) -> set[str]:
    return {r["value"] for m in members for r in m.records()}


def run_three_members(
    broker: BrokerProcess,
    clients: list[str],
    assignor: str = "range",
    partitions: int = 6,
) -> tuple[list[Member], list[set[int]]]:
    """The issue's scenario: 3 members, one leaves, one crashes; returns history."""
    topic, group = "events", "workers"
    create_topic(broker.bootstrap, topic, partitions)
    members = [Member(c, broker.bootstrap, topic, group, assignor) for c in clients]
    history: list[set[int]] = []
    try:
        wait_until(
            lambda: owned_once(members, partitions),
            60,
            "3 members to share the partitions",
        )
        history.append(members[2].assignment)
        batch1 = [f"a-{i}" for i in range(120)]
        produce(broker.bootstrap, topic, batch1, partitions)
        wait_until(
            lambda: set(batch1) <= processed_values(members), 60, "batch 1 processed"
        )

        members[0].leave()  # graceful: LeaveGroup
        live = members[1:]
        wait_until(lambda: owned_once(live, partitions), 30, "2 members to take over")
        history.append(members[2].assignment)
        batch2 = [f"b-{i}" for i in range(120)]
        produce(broker.bootstrap, topic, batch2, partitions)
        wait_until(
            lambda: set(batch2) <= processed_values(members), 60, "batch 2 processed"
        )

        batch3 = [f"c-{i}" for i in range(60)]
        produce(broker.bootstrap, topic, batch3, partitions)
        members[1].crash()  # no LeaveGroup: the session must expire
        took = wait_until(
            lambda: owned_once(members[2:], partitions), 30, "the survivor to take all"
        )
        assert took < SESSION_S + 4, f"took {took:.1f}s to reassign after a crash"
        history.append(members[2].assignment)
        wait_until(
            lambda: set(batch3) <= processed_values(members), 60, "batch 3 processed"
        )
        batch4 = [f"d-{i}" for i in range(60)]
        produce(broker.bootstrap, topic, batch4, partitions)
        wait_until(
            lambda: set(batch4) <= processed_values(members), 60, "batch 4 processed"
        )
        members[2].leave()

        produced = set(batch1 + batch2 + batch3 + batch4)
        assert (
            processed_values(members) == produced
        )  # nothing skipped, nothing invented
        counts = collections.Counter(r["value"] for m in members for r in m.records())
        crashed = members[1]
        last_commit = crashed.committed()
        allowed = {
            r["value"]
            for r in crashed.records()
            if r["offset"] >= last_commit.get(r["partition"], 0)
        }
        twice = {v for v, n in counts.items() if n > 1}
        assert twice <= allowed, (
            f"processed twice beyond at-least-once: {sorted(twice - allowed)}"
        )
        assert all(n <= 2 for n in counts.values())
        for m in members:
            assert not [e for e in m.errors() if "UNKNOWN_MEMBER" in e.upper()], (
                m.errors()
            )
    finally:
        for m in members:
            m.close()
    return members, history


@pytest.mark.parametrize("client", ["kafka-python", "aiokafka", "confluent", "kafkajs"])
def test_three_members_share_partitions_survive_leave_and_crash(
    start: Callable[..., BrokerProcess], client: str
) -> None:
    """Each partition has one owner; leavers and crashed members are replaced; no record lost."""
    broker = start()
    run_three_members(broker, [client] * 3)
    broker.stop()


def test_mixed_clients_in_one_group(start: Callable[..., BrokerProcess]) -> None:
    """kafka-python and confluent-kafka members share a group with the range assignor."""
    broker = start()
    run_three_members(broker, ["kafka-python", "confluent", "kafka-python"])
    broker.stop()


def test_cooperative_sticky_keeps_survivors_partitions(
    start: Callable[..., BrokerProcess],
) -> None:
    """With cooperative-sticky (incremental rebalancing) survivors keep what they had."""
    broker = start()
    _, history = run_three_members(
        broker, ["confluent"] * 3, assignor="cooperative-sticky"
    )
    assert history[0] <= history[1] <= history[2]
    assert history[2] == set(range(6))
    broker.stop()


def test_twenty_consumers_join_at_once(start: Callable[..., BrokerProcess]) -> None:
    """20 consumers joining together converge on one generation, one partition each."""
    broker = start()
    create_topic(broker.bootstrap, "wide", 20)
    errors: list[str] = []
    assigned: dict[int, set[int]] = {}
    consumers = []

    def make(i: int) -> Consumer:
        def on_assign(c: Any, parts: list[TopicPartition]) -> None:
            assigned[i] = {p.partition for p in parts}

        c = Consumer(
            {
                "bootstrap.servers": broker.bootstrap,
                "group.id": "crowd",
                "session.timeout.ms": 6000,
                "heartbeat.interval.ms": 500,
                "error_cb": lambda e: errors.append(str(e)),
            }
        )
        c.subscribe(["wide"], on_assign=on_assign)
        return c

    consumers = [make(i) for i in range(20)]
    try:

        def converged() -> bool:
            for c in consumers:
                c.poll(0.01)
            parts = [p for s in assigned.values() for p in s]
            return len(assigned) == 20 and sorted(parts) == list(range(20))

        wait_until(converged, 60, "20 consumers to converge")
        view = broker.admin("GET", "/v1/groups/crowd", timeout=5)
        assert view["state"] == "Stable"
        assert len(view["members"]) == 20
        assert not [e for e in errors if "UNKNOWN_MEMBER" in e.upper()], errors
    finally:
        for c in consumers:
            c.close()
    broker.stop()


def test_committed_offsets_survive_sigkill(
    start: Callable[..., BrokerProcess], tmp_path: Path
) -> None:
    """After a broker SIGKILL, a restarted consumer resumes right after its last commit."""
    broker = start()
    create_topic(broker.bootstrap, "durable", 2)
    produce(broker.bootstrap, "durable", [f"v{i}" for i in range(40)], 2)
    c = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": "resume",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    c.assign([TopicPartition("durable", 0), TopicPartition("durable", 1)])
    seen = []
    deadline = time.monotonic() + 30
    while len(seen) < 26 and time.monotonic() < deadline:
        m = c.poll(0.2)
        if m is not None and not m.error():
            seen.append(m)
    commit_at = {0: 7, 1: 13}
    c.commit(
        offsets=[TopicPartition("durable", p, o) for p, o in commit_at.items()],
        asynchronous=False,
    )
    c.close()
    broker.kill()  # SIGKILL right after the acknowledged commit
    again = start(data_dir=broker_data(tmp_path))
    c2 = Consumer(
        {
            "bootstrap.servers": again.bootstrap,
            "group.id": "resume",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    committed = c2.committed(
        [TopicPartition("durable", 0), TopicPartition("durable", 1)], timeout=20
    )
    assert {tp.partition: tp.offset for tp in committed} == commit_at
    c2.subscribe(["durable"])
    first: dict[int, int] = {}
    deadline = time.monotonic() + 30
    while len(first) < 2 and time.monotonic() < deadline:
        m = c2.poll(0.2)
        if m is not None and not m.error():
            first.setdefault(m.partition(), m.offset())
    c2.close()
    assert first == commit_at
    again.stop()


def broker_data(tmp_path: Path) -> Path:
    return tmp_path / "data"


# -- idempotence: drop the connection after the append, before the response -----------


class DropFirstProduceResponse:
    """A TCP proxy that closes the client connection instead of relaying the first
    Produce response (the broker has appended; the client must retry)."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.target = 0
        self.dropped = threading.Event()
        self._stop = False
        self._socks: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def start(self, target_port: int) -> None:
        self.target = target_port
        self._thread.start()

    def _accept(self) -> None:
        self.listener.settimeout(0.2)
        while not self._stop:
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            self._socks += [client, upstream]
            produce_ids: set[int] = set()
            for target, args in (
                (self._up, (client, upstream, produce_ids)),
                (self._down, (upstream, client, produce_ids)),
            ):
                t = threading.Thread(target=target, args=args, daemon=True)
                t.start()
                self._threads.append(t)

    @staticmethod
    def _frames(sock: socket.socket) -> Iterator[bytes]:
        buf = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            while len(buf) >= 4:
                (size,) = struct.unpack(">i", buf[:4])
                if len(buf) < 4 + size:
                    break
                yield buf[: 4 + size]
                buf = buf[4 + size :]

    def _up(
        self, client: socket.socket, upstream: socket.socket, produce_ids: set[int]
    ) -> None:
        for frame in self._frames(client):
            api_key, _version, correlation = struct.unpack(">hhi", frame[4:12])
            if api_key == 0:
                produce_ids.add(correlation)
            try:
                upstream.sendall(frame)
            except OSError:
                return

    def _down(
        self, upstream: socket.socket, client: socket.socket, produce_ids: set[int]
    ) -> None:
        for frame in self._frames(upstream):
            (correlation,) = struct.unpack(">i", frame[4:8])
            if correlation in produce_ids and not self.dropped.is_set():
                self.dropped.set()
                for sock in (client, upstream):
                    # shutdown wakes the other relay thread blocked in recv().
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
                    sock.close()
                return
            try:
                client.sendall(frame)
            except OSError:
                return

    def close(self) -> None:
        self._stop = True
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self.listener.close()
        for sock in self._socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for t in self._threads:
            t.join(timeout=5)


def test_idempotent_retry_after_lost_response_appends_once(
    start: Callable[..., BrokerProcess],
) -> None:
    """The broker appends, the response is lost, the client retries: the record is there once."""
    proxy = DropFirstProduceResponse()
    broker = start("--advertise-kafka-addr", f"127.0.0.1:{proxy.port}")
    proxy.start(broker.port)
    try:
        create_topic(broker.bootstrap, "once", 1)
        p = Producer(
            {
                "bootstrap.servers": f"127.0.0.1:{proxy.port}",
                "enable.idempotence": True,
                "linger.ms": 50,
                "retry.backoff.ms": 50,
            }
        )
        delivered: list[Any] = []
        for i in range(10):
            p.produce(
                "once",
                value=f"r{i}".encode(),
                partition=0,
                on_delivery=lambda e, m: delivered.append(e),
            )
        assert p.flush(30) == 0
        assert proxy.dropped.is_set()
        assert delivered == [None] * 10
        c = Consumer(
            {
                "bootstrap.servers": broker.bootstrap,
                "group.id": "check",
                "auto.offset.reset": "earliest",
            }
        )
        c.assign([TopicPartition("once", 0, 0)])
        values = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            m = c.poll(0.3)
            if m is None:
                if len(values) >= 10:
                    break
                continue
            if not m.error():
                values.append(m.value().decode())
        c.close()
        assert values == [f"r{i}" for i in range(10)]
    finally:
        proxy.close()
    broker.stop()


def test_admin_clients_list_describe_and_delete_groups(
    start: Callable[..., BrokerProcess],
) -> None:
    """ListGroups, DescribeGroups, OffsetFetch and DeleteGroups through confluent's admin."""
    from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException

    broker = start()
    create_topic(broker.bootstrap, "adm", 2)
    produce(broker.bootstrap, "adm", [f"x{i}" for i in range(10)], 2)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    c = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": "inspect",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
        }
    )
    c.subscribe(["adm"])
    got = 0
    deadline = time.monotonic() + 30
    while got < 10 and time.monotonic() < deadline:
        m = c.poll(0.2)
        if m is not None and not m.error():
            got += 1
    c.commit(asynchronous=False)
    described = admin.describe_consumer_groups(["inspect"])["inspect"].result(10)
    assert described.state.name == "STABLE"
    assert len(described.members) == 1
    assigned = {tp.partition for tp in described.members[0].assignment.topic_partitions}
    assert assigned == {0, 1}
    with pytest.raises(KafkaException, match="NON_EMPTY_GROUP"):
        admin.delete_consumer_groups(["inspect"])["inspect"].result(10)
    view = broker.admin("GET", "/v1/groups/inspect", timeout=5)
    assert {(o["partition"], o["offset"], o["lag"]) for o in view["offsets"]} == {
        (0, 5, 0),
        (1, 5, 0),
    }
    c.close()
    listed = admin.list_consumer_groups().result(10)
    assert [(g.group_id, g.state.name) for g in listed.valid] == [("inspect", "EMPTY")]
    offsets = admin.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions("inspect")]
    )
    tps = offsets["inspect"].result(10).topic_partitions
    assert {(tp.partition, tp.offset) for tp in tps} == {(0, 5), (1, 5)}
    admin.delete_consumer_groups(["inspect"])["inspect"].result(10)
    assert admin.list_consumer_groups().result(10).valid == []
    with pytest.raises(KafkaException, match="GROUP_ID_NOT_FOUND"):
        admin.delete_consumer_groups(["inspect"])["inspect"].result(10)
    broker.stop()
