"""Faults for a real cluster, and the workload that records a history through them.

:class:`Nemesis` breaks a :class:`~tests.cluster.e2e_cluster.Cluster` one fault at a
time, each bounded in time and logged (``nemesis_*`` events, and ``events`` for an
assertion message): SIGKILL of a partition's leader (then its restart), SIGSTOP of a
follower past ``replica.lag.time.max.ms`` (then SIGCONT), an etcd restart, and a
rolling restart (SIGTERM and start, one broker at a time); and harsher ones for the
soak: etcd SIGKILLed, a leader and its successor both SIGKILLed, a leader SIGKILLed
while a follower is stopped. Each fault returns once
every partition of the topic again has a leader and its whole replica set in the ISR.

:class:`Workload` runs idempotent acks=all confluent-kafka producers whose delivery
callbacks feed a :class:`~tests.faults.checker.History`, live confluent-kafka
readers that observe every record they read during the faults, and a final read by
a kafka-python consumer group from the earliest offsets.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer
from confluent_kafka import TopicPartition as CTopicPartition
from kafka.structs import TopicPartition

from tests._kafka_python import group_consumer
from tests.cluster.e2e_cluster import Cluster, wait_for
from tests.faults.checker import History

log = structlog.get_logger("nemesis")


@dataclass
class Nemesis:
    """One fault at a time on ``cluster``, watched through ``topic``'s partitions."""

    cluster: Cluster
    topic: str
    partitions: int
    replicas: int = 3
    timeout: float = 30.0  # for each wait of each fault
    events: list[str] = field(default_factory=list)

    def _log(self, event: str, **kw: Any) -> None:
        log.info(event, **kw)
        self.events.append(
            f"{time.strftime('%H:%M:%S')} {event} "
            + " ".join(f"{k}={v}" for k, v in kw.items())
        )

    def states(self) -> dict[int, dict[str, Any]]:
        return {
            p: self.cluster.partition(self.topic, p) for p in range(self.partitions)
        }

    def wait_in_sync(self) -> None:
        """Until every partition has a leader and all its replicas in the ISR."""

        def in_sync() -> bool:
            states = self.states()
            return all(
                s.get("leader", -1) >= 0 and len(s.get("isr", ())) == self.replicas
                for s in states.values()
            )

        started = time.monotonic()
        try:
            wait_for("every replica in the ISR", in_sync, self.timeout)
        except AssertionError as e:
            raise AssertionError(f"{e}: {self.states()}") from None
        self._log("nemesis_in_sync", seconds=round(time.monotonic() - started, 2))

    def kill_leader(self, partition: int) -> int:
        """SIGKILL the partition's leader, wait for another, restart it; its id."""
        leader = int(self.cluster.partition(self.topic, partition)["leader"])
        self._log("nemesis_kill_leader", partition=partition, node=leader)
        self.cluster.kill(leader)
        self._new_leader(partition, leader)
        self.cluster.start_broker(leader)
        self._log("nemesis_restarted", node=leader)
        self.wait_in_sync()
        return leader

    def pause_follower(self, partition: int, lag_ms: int) -> int:
        """SIGSTOP a follower of the partition until it has left the ISR and
        ``lag_ms`` have passed, then SIGCONT it; its id."""
        state = self.cluster.partition(self.topic, partition)
        controller = self.cluster.controller()
        followers = [n for n in state["isr"] if n != state["leader"]]
        # the controller's own failover is another fault: spare it when we can
        follower = next((n for n in followers if n != controller), followers[0])
        self._log("nemesis_pause", partition=partition, node=follower)
        self.cluster.pause(follower)
        try:
            started = time.monotonic()
            wait_for(
                f"broker {follower} to leave the ISR of partition {partition}",
                lambda: (
                    follower
                    not in self.cluster.partition(self.topic, partition).get(
                        "isr", [follower]
                    )
                ),
                self.timeout,
            )
            self._log(
                "nemesis_left_isr",
                partition=partition,
                node=follower,
                seconds=round(time.monotonic() - started, 2),
            )
            time.sleep(max(0.0, lag_ms / 1000 - (time.monotonic() - started)))
        finally:
            self.cluster.resume(follower)
        self._log("nemesis_resume", node=follower)
        self.wait_in_sync()
        return follower

    def restart_etcd(self) -> None:
        """SIGTERM etcd and start it again on the same data dir."""
        self._log("nemesis_restart_etcd")
        self.cluster.etcd.restart()
        self.cluster.wait_settled(self.timeout)
        self.wait_in_sync()

    def kill_etcd(self, down_s: float = 2.0) -> None:
        """SIGKILL etcd, leave it down ``down_s`` seconds, start it again."""
        self._log("nemesis_kill_etcd", down_s=down_s)
        self.cluster.etcd.kill()
        time.sleep(down_s)
        self.cluster.etcd.start()
        self._log("nemesis_etcd_started")
        self.cluster.wait_settled(self.timeout)
        self.wait_in_sync()

    def kill_leader_and_successor(self, partition: int, down_s: float = 2.0) -> None:
        """SIGKILL the partition's leader and, once another is elected, that one
        too (two of three replicas down: the partition waits, losing nothing),
        then restart both."""
        first = int(self.cluster.partition(self.topic, partition)["leader"])
        self._log("nemesis_kill_leader", partition=partition, node=first)
        self.cluster.kill(first)
        second = int(self._new_leader(partition, first))
        self._log("nemesis_kill_leader", partition=partition, node=second)
        self.cluster.kill(second)
        time.sleep(down_s)
        for node in (first, second):
            self.cluster.start_broker(node)
            self._log("nemesis_restarted", node=node)
        self.wait_in_sync()

    def kill_leader_while_follower_paused(self, partition: int, lag_ms: int) -> None:
        """SIGSTOP a follower past ``lag_ms``, SIGKILL the leader while it is
        stopped, SIGCONT it, restart the leader: the paused one may return
        behind a new leader and must truncate to it."""
        state = self.cluster.partition(self.topic, partition)
        leader = int(state["leader"])
        follower = next(n for n in state["isr"] if n != leader)
        self._log("nemesis_pause", partition=partition, node=follower)
        self.cluster.pause(follower)
        try:
            time.sleep(lag_ms / 1000 + 1)
            self._log("nemesis_kill_leader", partition=partition, node=leader)
            self.cluster.kill(leader)
            time.sleep(1)
        finally:
            self.cluster.resume(follower)
        self._log("nemesis_resume", node=follower)
        self._new_leader(partition, leader)
        self.cluster.start_broker(leader)
        self._log("nemesis_restarted", node=leader)
        self.wait_in_sync()

    def _new_leader(self, partition: int, old: int) -> int:
        new = int(
            wait_for(
                f"a new leader of partition {partition}",
                lambda: (
                    (
                        n := self.cluster.partition(self.topic, partition).get(
                            "leader", -1
                        )
                    )
                    not in (-1, old)
                    and n
                ),
                self.timeout,
            )
        )
        self._log("nemesis_new_leader", partition=partition, node=new)
        return new

    def rolling_restart(self) -> None:
        """SIGTERM and start each broker in turn, waiting for the ISR between."""
        for node in sorted(self.cluster.brokers):
            self._log("nemesis_stop", node=node)
            code = self.cluster.stop(node)
            self._log("nemesis_stopped", node=node, exit_code=code)
            self.cluster.start_broker(node)
            self.wait_in_sync()


class Workload:
    """Producers, live readers and a final group read of one topic, into ``history``."""

    def __init__(
        self,
        cluster: Cluster,
        topic: str,
        partitions: int,
        history: History,
        *,
        producers: int = 2,
        rate: float = 100.0,
        readers: int = 1,
        log_path: Path | None = None,
        debug: str = "",
    ) -> None:
        """``rate``: records per second per producer. ``log_path``: where the
        clients' own logs go, with librdkafka's ``debug`` contexts if any (None:
        nowhere)."""
        self.cluster = cluster
        self.topic = topic
        self.partitions = partitions
        self.history = history
        self.producers = producers
        self.interval = 1.0 / rate
        self.readers = readers
        self.client_log = logging.getLogger(f"faults.clients.{uuid.uuid4().hex[:8]}")
        self.client_log.propagate = False
        self.client_log.setLevel(logging.DEBUG)
        if log_path is None:
            self.client_log.addHandler(logging.NullHandler())
        else:
            handler = logging.FileHandler(log_path)
            handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
            self.client_log.addHandler(handler)
        self.debug = debug
        self.live_reads = 0  # records the live readers saw
        self._flush_s = 90.0  # how long stopped producers wait for deliveries
        self.errors: list[str] = []  # producer-level errors (fatal, queue full)
        self.unflushed = 0  # records still queued when the producers stopped
        self._stop_producing = threading.Event()
        self._stop_reading = threading.Event()
        self._threads: list[threading.Thread] = []
        self._reader_threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    @property
    def bootstrap(self) -> str:
        return ",".join(b.bootstrap for b in self.cluster.brokers.values())

    # -- producing -------------------------------------------------------------

    def _produce(self, name: str) -> None:
        producer = Producer(
            {
                "bootstrap.servers": self.bootstrap,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "message.timeout.ms": 60_000,
                "topic.metadata.refresh.interval.ms": 1000,
                "reconnect.backoff.max.ms": 500,
                **({"debug": self.debug} if self.debug else {}),
            },
            logger=self.client_log,
        )

        def on_delivery(err: Any, msg: Any) -> None:
            value = msg.value().decode()
            if err is not None:
                self.history.fail(value, str(err))
            else:
                self.history.ack(value, msg.partition(), msg.offset())

        seq = 0
        while not self._stop_producing.is_set():
            value = f"{name}-{seq}"
            partition = seq % self.partitions
            seq += 1
            self.history.send(value, partition)
            try:
                producer.produce(
                    self.topic,
                    value.encode(),
                    partition=partition,
                    on_delivery=on_delivery,
                )
            except (BufferError, KafkaException) as e:
                self.history.fail(value, repr(e))
                with self._lock:
                    self.errors.append(f"{name}: {e!r}")
                if isinstance(e, KafkaException):
                    break  # fatal: this producer can do no more
            producer.poll(0)
            time.sleep(self.interval)
        left = producer.flush(self._flush_s)
        with self._lock:
            self.unflushed += left

    # -- reading -----------------------------------------------------------------

    def _read_live(self, n: int) -> None:
        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": f"live-{n}-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "topic.metadata.refresh.interval.ms": 1000,
                "reconnect.backoff.max.ms": 500,
            },
            logger=self.client_log,
        )
        consumer.assign(
            [
                CTopicPartition(self.topic, p, OFFSET_BEGINNING)
                for p in range(self.partitions)
            ]
        )
        try:
            while not self._stop_reading.is_set():
                msg = consumer.poll(0.2)
                if msg is None or msg.error() is not None:
                    continue
                self.history.observe(
                    msg.partition(), msg.offset(), msg.value().decode()
                )
                with self._lock:
                    self.live_reads += 1
        finally:
            consumer.close()

    def __enter__(self) -> Workload:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop every client thread, without waiting long for deliveries (a
        failed test leaves no client behind)."""
        self._flush_s = 1.0
        self._stop_producing.set()
        self._stop_reading.set()
        for t in self._threads + self._reader_threads:
            t.join(10)
        for handler in list(self.client_log.handlers):
            handler.close()
            self.client_log.removeHandler(handler)

    def start(self) -> None:
        """Start the producers and the live readers."""
        for n in range(self.readers):
            t = threading.Thread(target=self._read_live, args=(n,), daemon=True)
            t.start()
            self._reader_threads.append(t)
        for n in range(self.producers):
            t = threading.Thread(target=self._produce, args=(f"p{n}",), daemon=True)
            t.start()
            self._threads.append(t)

    def acked_per_partition(self) -> Counter[int]:
        return Counter(p for p, _ in self.history.acked().values())

    def wait_progress(self, records: int, timeout: float) -> None:
        """Until every partition has ``records`` more acknowledgements than now:
        no partition is stuck."""
        before = self.acked_per_partition()
        wait_for(
            f"{records} more acked records on every partition (from {dict(before)})",
            lambda: all(
                self.acked_per_partition()[p] >= before[p] + records
                for p in range(self.partitions)
            ),
            timeout,
        )

    def stop(self) -> None:
        """Stop producing, wait for every outstanding delivery, stop the readers."""
        self._stop_producing.set()
        for t in self._threads:
            t.join(120)
            assert not t.is_alive(), "a producer did not finish flushing"
        self._stop_reading.set()
        for t in self._reader_threads:
            t.join(30)

    def final_read(self, timeout: float = 60) -> None:
        """A new consumer group reads the topic from the earliest offsets until it
        has seen every acknowledged value and reached each partition's end."""
        consumer = group_consumer(
            self.topic,
            bootstrap_servers=self.bootstrap.split(","),
            group_id=f"final-{uuid.uuid4().hex[:8]}",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            session_timeout_ms=3000,
            heartbeat_interval_ms=1000,
        )
        tps = [TopicPartition(self.topic, p) for p in range(self.partitions)]
        deadline = time.monotonic() + timeout
        ends: dict[TopicPartition, int] | None = None
        try:
            while time.monotonic() < deadline:
                for tp, msgs in consumer.poll(timeout_ms=500).items():
                    for m in msgs:
                        self.history.observe(
                            tp.partition, m.offset, m.value.decode(), final=True
                        )
                if self.history.unread():
                    continue
                if ends is None:
                    ends = consumer.end_offsets(tps)
                assigned = consumer.assignment()
                if len(assigned) == len(tps) and all(
                    consumer.position(tp) >= ends[tp] for tp in tps
                ):
                    return
        finally:
            consumer.close()
