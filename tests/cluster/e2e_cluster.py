"""A real cluster for end-to-end tests: one etcd and three broker processes.

:class:`Cluster` starts etcd and the brokers (free ports, own data dirs, short
sessions), waits until a controller exists and every broker sees every other one,
and answers what a client sees: Metadata through confluent-kafka's AdminClient,
FindCoordinator over the raw protocol, the controller from etcd. It can kill, stop
and restart single brokers on the same data dir and Kafka port, pause and resume
them (SIGSTOP, SIGCONT), and read a partition's state (leader, ISR) from etcd.

When a test that was handed a cluster fails, the cluster tests' conftest adds
:meth:`Cluster.describe` to its report: each broker's exit status (a broker that
died by itself shows its exit code, not just a refused connection) and the end of
its log.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, ClusterMetadata, NewTopic

from protocol.messages.find_coordinator import (
    FindCoordinatorRequest,
    FindCoordinatorResponse,
)
from tests._broker import BrokerProcess, free_port, request, start_cluster_broker
from tests.cluster.etcd import EtcdProcess

PREFIX = "/ailurus"
SESSION_MS = 3000
OFFSETS_PARTITIONS = 8


def wait_for(what: str, cond: Callable[[], Any], timeout: float = 20) -> Any:
    """Poll ``cond`` until it returns something truthy; that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


class Cluster:
    """etcd plus brokers 1..n of one cluster, all on 127.0.0.1."""

    def __init__(
        self,
        root: Path,
        size: int = 3,
        broker_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        """``broker_args``: more arguments for every broker (``--set`` options);
        ``env``: more environment variables for every broker."""
        self.root = root
        self.broker_args = tuple(broker_args)
        self.env = dict(env or {})
        self.etcd = EtcdProcess(root / "etcd", root / "etcd.log")
        self.ports = {i: free_port() for i in range(1, size + 1)}
        self.brokers: dict[int, BrokerProcess] = {}
        # broker -> exit code (None: running) when close() came, for describe()
        self.exited_before_close: dict[int, int | None] | None = None

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> Cluster:
        self.etcd.start()
        # all at once: registration and the election race as in a real roll-out
        with ThreadPoolExecutor(len(self.ports)) as pool:
            for f in [pool.submit(self.start_broker, i) for i in self.ports]:
                f.result()
        self.wait_settled()
        return self

    def start_broker(self, node_id: int) -> BrokerProcess:
        """Start (or restart, same data dir and Kafka port) broker ``node_id``."""
        b = start_cluster_broker(
            self.root / f"data-{node_id}",
            node_id,
            self.etcd.url(PREFIX),
            "--set",
            f"offsets.topic.num.partitions={OFFSETS_PARTITIONS}",
            *self.broker_args,
            session_timeout_ms=SESSION_MS,
            log_path=self.root / f"broker-{node_id}.log",
            ready_path=self.root / f"ready-{node_id}.json",
            env=self.env,
            port=self.ports[node_id],
            timeout=30,
        )
        self.brokers[node_id] = b
        return b

    def wait_settled(self, timeout: float = 30) -> None:
        """Until a controller exists, every running broker lists every running one
        and every offsets-topic partition has a leader."""
        live = sorted(self.live)

        def settled() -> bool:
            if self.controller() is None:
                return False
            for i in live:
                md = self.metadata(i)
                if sorted(md.brokers) != live:
                    return False
                offsets = md.topics.get("__consumer_offsets")
                if offsets is None or len(offsets.partitions) != OFFSETS_PARTITIONS:
                    return False
                if any(p.leader < 0 for p in offsets.partitions.values()):
                    return False
            return True

        wait_for("the cluster to settle", settled, timeout)

    def close(self) -> None:
        self.exited_before_close = {i: b.proc.poll() for i, b in self.brokers.items()}
        for b in self.brokers.values():
            b.kill()
        self.etcd.kill()

    def describe(self, tail: int = 40) -> str:
        """Each broker's pid, exit status and log's last ``tail`` lines, and etcd's
        status: what a failing test reports."""
        out = []
        for i, b in sorted(self.brokers.items()):
            code = b.proc.poll()
            if self.exited_before_close is not None:
                code = self.exited_before_close.get(i, code)
            state = "running" if code is None else f"EXITED with code {code}"
            out.append(f"== broker {i} (pid {b.proc.pid}): {state}; log {b.log_path}")
            try:
                lines = b.log_path.read_text(errors="replace").splitlines()
            except OSError as exc:
                lines = [f"(log unreadable: {exc})"]
            out += [line[:400] for line in lines[-tail:]]
        proc = self.etcd.proc
        etcd = "not started" if proc is None else proc.poll()
        out.append(f"== etcd: {'running' if etcd is None else etcd}")
        return "\n".join(out)

    @property
    def live(self) -> dict[int, BrokerProcess]:
        return {i: b for i, b in self.brokers.items() if b.proc.poll() is None}

    def kill(self, node_id: int) -> None:
        """kill -9 one broker."""
        self.brokers[node_id].kill()

    def stop(self, node_id: int) -> int:
        """SIGTERM one broker; its exit code."""
        return self.brokers[node_id].stop(signal.SIGTERM)

    def pause(self, node_id: int) -> None:
        """SIGSTOP one broker: it holds its sockets and answers nothing."""
        self.brokers[node_id].proc.send_signal(signal.SIGSTOP)

    def resume(self, node_id: int) -> None:
        """SIGCONT a paused broker."""
        self.brokers[node_id].proc.send_signal(signal.SIGCONT)

    # -- what etcd says --------------------------------------------------------

    def partition(self, topic: str, index: int) -> dict[str, Any]:
        """The partition's state in etcd (leader, leader_epoch, isr, ...); {} when
        etcd has none or does not answer."""
        code, out = self.etcd.ctl(
            "get",
            f"{PREFIX}/partitions/{topic}/{index}",
            "--print-value-only",
            check=False,
        )
        if code != 0 or not out.strip():
            return {}
        return dict(json.loads(out))

    def controller(self) -> int | None:
        code, out = self.etcd.ctl(
            "get", f"{PREFIX}/controller", "--print-value-only", check=False
        )
        if code != 0 or not out.strip():
            return None
        return int(json.loads(out)["node_id"])

    def registered(self) -> list[int]:
        keys = self.etcd.keys(f"{PREFIX}/brokers/")
        return sorted(int(k.rsplit("/", 1)[1]) for k in keys)

    def non_controller(self) -> int:
        controller = self.controller()
        return next(i for i in sorted(self.live) if i != controller)

    # -- what a client sees ----------------------------------------------------

    def bootstrap(self, node_id: int) -> str:
        return self.brokers[node_id].bootstrap

    def admin(self, node_id: int) -> AdminClient:
        return AdminClient({"bootstrap.servers": self.bootstrap(node_id)})

    def create_topic(
        self,
        node_id: int,
        topic: str,
        partitions: int,
        replication_factor: int = 1,
        config: Mapping[str, str] | None = None,
    ) -> None:
        """CreateTopics through broker ``node_id`` (confluent's AdminClient)."""
        admin = self.admin(node_id)  # must outlive the future
        futures = admin.create_topics(
            [
                NewTopic(
                    topic, partitions, replication_factor, config=dict(config or {})
                )
            ],
            operation_timeout=20,
        )
        futures[topic].result(timeout=30)

    def metadata(self, node_id: int, topic: str | None = None) -> ClusterMetadata:
        """Metadata as broker ``node_id`` answers it (confluent's AdminClient)."""
        return self.admin(node_id).list_topics(topic, timeout=10)

    def leaders(self, node_id: int, topic: str) -> dict[int, int]:
        """Partition -> leader (-1: none) as broker ``node_id`` reports."""
        t = self.metadata(node_id, topic).topics[topic]
        return {p: m.leader for p, m in t.partitions.items()}

    def wait_leaders(
        self, topic: str, partitions: int, node_id: int | None = None
    ) -> dict[int, int]:
        """Until ``topic`` has ``partitions`` partitions, each with a leader, on
        every live broker (or only ``node_id``); the leaders."""
        nodes = [node_id] if node_id is not None else sorted(self.live)

        def ready() -> dict[int, int] | None:
            seen = None
            for i in nodes:
                md = self.metadata(i)
                t = md.topics.get(topic)
                if t is None or t.error is not None:
                    return None
                leaders = {p: m.leader for p, m in t.partitions.items()}
                if len(leaders) != partitions or min(leaders.values()) < 0:
                    return None
                seen = leaders
            return seen

        return dict(wait_for(f"leaders of {topic}", ready))

    def metric(self, node_id: int, name: str) -> float:
        """One unlabelled sample of broker ``node_id``'s ``/metrics``."""
        status, body = self.brokers[node_id].http("/metrics")
        assert status == 200
        for line in body.decode().splitlines():
            if line.startswith(f"{name} "):
                return float(line.split()[1])
        raise AssertionError(f"no {name} in /metrics")

    def find_coordinator(self, node_id: int, group: str) -> tuple[int, int]:
        """(error code, coordinator node id) from FindCoordinator v3 to a broker."""
        with self.brokers[node_id].connect() as sock:
            resp = request(sock, 10, 3, FindCoordinatorRequest(key=group, key_type=0))
        assert isinstance(resp, FindCoordinatorResponse)
        return resp.error_code, resp.node_id


class ContinuousProducer:
    """An idempotent acks=all confluent-kafka producer writing unique values
    (``{prefix}-N``, N counting up) until the ``with`` block ends, in a thread;
    what was sent, acknowledged and refused, for checking afterwards."""

    def __init__(
        self, bootstrap: str, topic: str, prefix: str, *, partition: int | None = None
    ) -> None:
        self.producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "message.timeout.ms": 60000,
            }
        )
        self.topic = topic
        self.prefix = prefix
        self.partition = partition
        self.acked: list[bytes] = []
        self.errors: list[str] = []
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is not None:
            self.errors.append(str(err))
        else:
            self.acked.append(msg.value())

    def _run(self) -> None:
        extra: dict[str, Any] = {}
        if self.partition is not None:
            extra["partition"] = self.partition
        while not self._stop.is_set():
            self.producer.produce(
                self.topic,
                f"{self.prefix}-{self.sent}".encode(),
                on_delivery=self._on_delivery,
                **extra,
            )
            self.sent += 1
            self.producer.poll(0.002)

    def __enter__(self) -> ContinuousProducer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.producer.flush(60)
