"""Cluster benchmark: one single-node broker beside a three-broker cluster over etcd.

Run: ``python bench/cluster_bench.py [--quick] [--repeat R] [--part PART]
[--catchup-mib MIB] [--markdown FILE] [--json FILE]``. Needs ``etcd``
(etcd-server 3.4+; ``make clients``) and ``rdkafka_performance`` (librdkafka's C
load generator, ``--perf``; default /work/shared/tools/rdkafka_performance).

One real etcd (``tests/cluster/etcd.py``) on free 127.0.0.1 ports, one single-node
broker and three cluster brokers (``python -m broker serve``, fresh data dirs, log
level warning; four brokers at most at a time), then, every figure the median of
``--repeat`` rounds (default 3):

- **produce**: ``rdkafka_performance`` produces N records of 1 KiB, acks=all,
  uncompressed, linger 5 ms, random partitions of a fresh 12-partition RF=1 topic,
  to the single node and to the cluster (bootstrap: all three), alternating; the
  ratio cluster/single (target ≥ 0.8);
- **Metadata latency** with 1,000 partitions (100 topics × 10) in the cluster: a
  full Metadata v12 request (every topic) over a raw socket to one broker, answered
  and read as bytes (decoded once to check it lists 1,000 partitions); p50/p99 of
  ``--samples`` round trips, first with etcd up (with the count of etcd's Range and
  Txn calls handled meanwhile, from etcd's own ``/metrics``), then with **etcd
  stopped** (Metadata never touches etcd: it answers from the broker's cache);
- **controlled shutdown**: seconds from SIGTERM of a broker that is not the
  controller until Metadata from another broker shows none of a fresh topic's 12
  partitions led by it, for an RF=1 topic (its partitions go leaderless when it
  leaves) and an RF=3 topic (the controller moves their leadership to another
  in-sync replica before it leaves); also the seconds until its process exited.
  The broker is started again (same node id and data dir) before the next round.

``--part replication`` (also part of the default ``all``) then starts a second etcd
and three brokers with ``broker.session.timeout.ms=3000`` (the cluster tests'
session), the first set stopped, and measures replication, RF=1 and RF=3 alternating
where they are compared:

- **produce RF=3 vs RF=1**: ``rdkafka_performance`` as above to fresh 6-partition
  topics (bootstrap: all three), MB/s (10^6 payload bytes) and records/s, and the
  three brokers' CPU seconds per MB (user + system from ``/proc/<pid>/stat`` before
  and after); then **consume** of the same records from each topic (an assigned
  ``rdkafka_performance`` consumer of all six partitions, from the beginning);
- **failover**: a confluent-kafka producer (idempotent, acks=all, 1,000 records/s
  of 1 KiB) writes to a partition of a 3-partition RF=3 topic whose leader is not the
  controller; SIGKILL of that leader: seconds until the first record enqueued after
  the kill is acknowledged (only a new leader can); SIGTERM (controlled shutdown):
  seconds until another broker's Metadata names a new leader and the longest time
  without an acknowledgement; both: deliveries the application saw fail and
  requests librdkafka retried (``txretries``). The broker is started again and the
  partition back in sync before the next round;
- **follower catch-up**: a follower of a one-partition RF=3 topic is stopped
  (SIGTERM: it leaves the ISR at once), ``--catchup-mib`` MiB (default 1,024) are
  produced to the partition, the follower is started again: seconds from its ready
  file until its segment files hold the leader's bytes and until the leader's
  Metadata shows it in the ISR; its copy rate in MB/s beside the rate of reading
  the leader's segment files in 1 MiB reads (page cache as it is, nothing dropped).

Prints JSON lines per round and a table of medians; ``--markdown`` writes the table
with the command, date, machine and load average for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import functools
import itertools
import json
import mmap
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the test suite's launchers, run as a script

from protocol.codec import decode_response, encode_request  # noqa: E402
from protocol.headers import RequestHeader  # noqa: E402
from protocol.messages.metadata import (  # noqa: E402
    MetadataRequest,
    MetadataRequestTopic,
)
from tests._broker import (  # noqa: E402
    BrokerProcess,
    recv_frame,
    start_broker,
    start_cluster_broker,
)
from tests.cluster.etcd import EtcdProcess, missing_etcd  # noqa: E402

PERF = Path("/work/shared/tools/rdkafka_performance")
RECORD_SIZE = 1024
PARTITIONS = 12
METADATA_VERSION = 12
PREFIX = "/bench"
QUIET = ("--log-level", "warning")


@dataclasses.dataclass(frozen=True, slots=True)
class Sizes:
    records: int  # produced per round and target
    topics: int  # Metadata: topics of ...
    topic_partitions: int  # ... this many partitions each
    samples: int  # Metadata round trips per phase
    failover_rate: int  # records a second the failover producer writes
    catchup_mib: int  # written to one partition while a follower is stopped


FULL = Sizes(
    records=300_000,
    topics=100,
    topic_partitions=10,
    samples=3_000,
    failover_rate=1_000,
    catchup_mib=1024,
)
QUICK = Sizes(
    records=20_000,
    topics=10,
    topic_partitions=10,
    samples=200,
    failover_rate=500,
    catchup_mib=32,
)


class Cluster:
    """etcd and three brokers; single-node broker beside it."""

    def __init__(self, tmp: Path, session_ms: int | None = None) -> None:
        self.tmp = tmp
        self.session_ms = session_ms  # None: the broker's default
        self.etcd = EtcdProcess(tmp / "etcd", tmp / "etcd.log")
        self.brokers: dict[int, BrokerProcess] = {}

    def start(self) -> None:
        self.etcd.start()
        for node in (1, 2, 3):
            self.start_broker(node)

    def start_broker(self, node: int) -> BrokerProcess:
        b = start_cluster_broker(
            self.tmp / f"data-{node}",
            node,
            self.etcd.url(PREFIX),
            *QUIET,
            session_timeout_ms=self.session_ms,
            log_dir=self.tmp / f"logs-{node}",
            timeout=60,
        )
        self.brokers[node] = b
        return b

    @property
    def bootstrap(self) -> str:
        return ",".join(b.bootstrap for b in self.brokers.values())

    def close(self) -> None:
        for b in self.brokers.values():
            b.stop(timeout=10)
        self.etcd.kill()


# -- produce throughput ----------------------------------------------------------------


def create_topics(
    bootstrap: str, names: Sequence[str], partitions: int, rf: int = 1
) -> None:
    """Create topics and wait until Metadata shows every partition with a leader."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(n, num_partitions=partitions, replication_factor=rf) for n in names],
        request_timeout=60,
    )
    for f in futures.values():
        f.result(timeout=120)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        md = admin.list_topics(timeout=10).topics
        if all(
            n in md
            and len(md[n].partitions) == partitions
            and all(p.leader >= 0 for p in md[n].partitions.values())
            for n in names
        ):
            return
        time.sleep(0.1)
    raise RuntimeError(f"topics {names[:3]}... not led in time")


_PRODUCED = re.compile(r"(\d+) messages produced .*? (\d+) delivered.*? in (\d+)ms")
_CONSUMED = re.compile(r"(\d+) messages \((\d+) bytes\) consumed in (\d+)ms")


def produce_rps(
    perf: Path, bootstrap: str, topic: str, records: int, partition: int | None = None
) -> float:
    """Records per second ``rdkafka_performance`` reports for ``records`` 1 KiB
    records, acks=all, uncompressed (its last summary line; every one delivered),
    to random partitions or to ``partition``."""
    cmd = [
        str(perf),
        "-P",
        "-t",
        topic,
        *(() if partition is None else ("-p", str(partition))),
        "-b",
        bootstrap,
        "-s",
        str(RECORD_SIZE),
        "-c",
        str(records),
        "-a",
        "-1",
        "-z",
        "none",
        "-X",
        "linger.ms=5",
        "-X",
        "batch.size=1000000",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    found = _PRODUCED.findall(r.stdout)
    if r.returncode != 0 or not found:
        raise RuntimeError(f"rdkafka_performance failed:\n{r.stdout}\n{r.stderr}")
    produced, delivered, ms = (int(x) for x in found[-1])
    if delivered != records or produced != records:
        raise RuntimeError(f"{delivered} of {records} delivered:\n{r.stdout}")
    return records / (int(ms) / 1000)


def consume_rps(
    perf: Path, bootstrap: str, topic: str, partitions: int, records: int
) -> float:
    """Records per second ``rdkafka_performance`` reports for reading ``records``
    records from the beginning of the topic's partitions 0..partitions-1 (no
    group: an assigned consumer)."""
    cmd = [str(perf), "-C", "-t", topic, "-b", bootstrap]
    for p in range(partitions):
        cmd += ["-p", str(p)]
    cmd += ["-o", "beginning", "-c", str(records), "-q"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    found = _CONSUMED.findall(r.stdout + r.stderr)
    if r.returncode != 0 or not found:
        raise RuntimeError(f"rdkafka_performance failed:\n{r.stdout}\n{r.stderr}")
    consumed, _, ms = (int(x) for x in found[-1])
    if consumed < records:
        raise RuntimeError(f"{consumed} of {records} consumed:\n{r.stdout}")
    if consumed > records:
        # rdkafka_performance's producer is not idempotent: a request it retried
        # (a timeout on a loaded machine) is written twice. Counted, not fatal.
        print(
            json.dumps({"consume_extra_records": consumed - records, "topic": topic}),
            file=sys.stderr,
            flush=True,
        )
    return consumed / (int(ms) / 1000)


# -- Metadata latency ---------------------------------------------------------------


def metadata_frame() -> bytes:
    """A full Metadata request (every topic, no auto-creation), one frame."""
    header = RequestHeader(
        request_api_key=3,
        request_api_version=METADATA_VERSION,
        correlation_id=1,
        client_id="cluster-bench",
    )
    return encode_request(
        header, MetadataRequest(topics=None, allow_auto_topic_creation=False)
    )


def metadata_partitions(broker: BrokerProcess) -> int:
    """Partitions the broker's Metadata answer lists (decoded once)."""
    with broker.connect() as sock:
        sock.sendall(metadata_frame())
        _, resp = decode_response(3, METADATA_VERSION, recv_frame(sock))
    return sum(len(t.partitions) for t in resp.topics)  # type: ignore[attr-defined]


def metadata_latencies(broker: BrokerProcess, samples: int) -> list[float]:
    """Milliseconds per full Metadata round trip, ``samples`` of them in a row on
    one connection (the answer read as bytes, not decoded)."""
    frame = metadata_frame()
    out = []
    with broker.connect() as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(20):  # warm-up
            sock.sendall(frame)
            recv_frame(sock)
        for _ in range(samples):
            t0 = time.perf_counter()
            sock.sendall(frame)
            recv_frame(sock)
            out.append((time.perf_counter() - t0) * 1000)
    return out


def etcd_calls(etcd: EtcdProcess) -> int:
    """Range and Txn calls etcd has handled (its own ``/metrics``)."""
    url = f"http://{etcd.endpoint}/metrics"
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    total = 0
    for line in text.splitlines():
        if line.startswith("grpc_server_handled_total{") and (
            'grpc_method="Range"' in line or 'grpc_method="Txn"' in line
        ):
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- controlled shutdown -----------------------------------------------------------


def partition_states(
    sock: socket.socket, topic: str
) -> list[tuple[int, tuple[int, ...]]]:
    """(leader, ISR) of each of the topic's partitions in a Metadata answer on
    ``sock``, by partition index."""
    header = RequestHeader(
        request_api_key=3,
        request_api_version=METADATA_VERSION,
        correlation_id=2,
        client_id="cluster-bench",
    )
    body = MetadataRequest(
        topics=(MetadataRequestTopic(name=topic),), allow_auto_topic_creation=False
    )
    sock.sendall(encode_request(header, body))
    _, resp = decode_response(3, METADATA_VERSION, recv_frame(sock))
    [t] = resp.topics  # type: ignore[attr-defined]
    return [
        (p.leader_id, tuple(p.isr_nodes))
        for p in sorted(t.partitions, key=lambda p: p.partition_index)
    ]


def leaders(sock: socket.socket, topic: str) -> list[int]:
    """The topic's partition leaders in a Metadata answer on ``sock``."""
    return [leader for leader, _ in partition_states(sock, topic)]


def controller_id(broker: BrokerProcess) -> int:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    return int(admin.list_topics(timeout=10).controller_id)


def shutdown_seconds(
    cluster: Cluster, topics: Sequence[str], stamp: str
) -> dict[str, float]:
    """SIGTERM a broker that is not the controller and leads something; seconds
    until another broker's Metadata shows none of each topic's partitions led by
    it, and until it exited. Started again afterwards."""
    ctrl = controller_id(cluster.brokers[1])
    with cluster.brokers[1].connect() as sock:
        led = leaders(sock, topics[0])
    victim = max((n for n in cluster.brokers if n != ctrl), key=lambda n: led.count(n))
    observer = cluster.brokers[next(n for n in cluster.brokers if n != victim)]
    gone: dict[str, float] = {}
    b = cluster.brokers[victim]
    exited: float | None = None
    with observer.connect() as sock:
        t0 = time.perf_counter()
        b.proc.send_signal(signal.SIGTERM)
        deadline = t0 + 60
        while len(gone) < len(topics) or exited is None:
            now = time.perf_counter()
            if now > deadline:
                raise RuntimeError(f"broker {victim} did not hand over in 60 s")
            if exited is None and b.proc.poll() is not None:
                exited = now - t0
            for t in topics:
                if t not in gone and victim not in leaders(sock, t):
                    gone[t] = time.perf_counter() - t0
            time.sleep(0.005)
    if b.proc.returncode != 0:
        raise RuntimeError(f"broker {victim} exited with {b.proc.returncode}")
    cluster.start_broker(victim)
    out = {f"shutdown_{stamp}_{t.split('-')[1]}_s": s for t, s in gone.items()}
    out[f"shutdown_{stamp}_exit_s"] = exited
    return out


# -- replication ----------------------------------------------------------------------


MB = 1_000_000  # throughput and CPU figures count payload bytes in 10^6-byte MB
REPLICATION_PARTITIONS = 6
SESSION_MS = 3000  # broker.session.timeout.ms of the replication cluster


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU seconds the processes (every thread) have used so far,
    from ``/proc/<pid>/stat`` (utime and stime, fields 14 and 15)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()  # field 3 onwards
        total += int(fields[11]) + int(fields[12])
    return total / tick


def broker_pids(cluster: Cluster) -> list[int]:
    return [b.proc.pid for b in cluster.brokers.values()]


def wait_until(what: str, cond: Callable[[], bool], timeout: float = 60) -> float:
    """Poll ``cond`` every 10 ms until it holds; the monotonic time it first held."""
    deadline = time.perf_counter() + timeout
    while True:
        if cond():
            return time.perf_counter()
        if time.perf_counter() > deadline:
            raise RuntimeError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


def state_of(
    broker: BrokerProcess, topic: str, partition: int
) -> tuple[int, tuple[int, ...]]:
    """(leader, ISR) of one partition as ``broker`` answers Metadata."""
    with broker.connect() as sock:
        return partition_states(sock, topic)[partition]


def wait_in_sync(cluster: Cluster, topic: str, partition: int, rf: int = 3) -> int:
    """Until every broker reports the partition led with all ``rf`` replicas in
    its ISR; the leader."""

    def synced() -> bool:
        states = [state_of(b, topic, partition) for b in cluster.brokers.values()]
        return all(leader >= 0 and len(isr) == rf for leader, isr in states) and (
            len({leader for leader, _ in states}) == 1
        )

    wait_until(f"{topic}-{partition} in sync", synced)
    return state_of(cluster.brokers[1], topic, partition)[0]


def delete_topic(bootstrap: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.delete_topics([topic], request_timeout=60)[topic].result(timeout=120)


def produce_measured(
    perf: Path, cluster: Cluster, topic: str, records: int
) -> dict[str, float]:
    """``rdkafka_performance`` produce of ``records`` 1 KiB records: MB/s,
    records/s and the three brokers' CPU seconds per MB."""
    pids = broker_pids(cluster)
    before = cpu_seconds(pids)
    rps = produce_rps(perf, cluster.bootstrap, topic, records)
    cpu = cpu_seconds(pids) - before
    mb = records * RECORD_SIZE / MB
    return {"rps": rps, "mbps": rps * RECORD_SIZE / MB, "cpu_s_per_mb": cpu / mb}


def produce_and_consume(
    cluster: Cluster,
    perf: Path,
    sizes: Sizes,
    repeat: int,
    note: Callable[[str, float], None],
) -> None:
    """RF=1 and RF=3 acks=all produce to fresh 6-partition topics, then consume of
    what was produced; RF=1 and RF=3 alternate so that outside load hits both
    alike."""
    for i in range(repeat):
        note("repl_load_produce", os.getloadavg()[0])
        topics = {rf: f"repl-rf{rf}-{i}" for rf in (1, 3)}
        for rf, topic in topics.items():
            create_topics(cluster.bootstrap, [topic], REPLICATION_PARTITIONS, rf=rf)
        produced: dict[int, float] = {}
        for rf, topic in topics.items():
            figures = produce_measured(perf, cluster, topic, sizes.records)
            for key, value in figures.items():
                note(f"repl_produce_rf{rf}_{key}", value)
            produced[rf] = figures["mbps"]
        note("repl_produce_ratio", produced[3] / produced[1])
        consumed: dict[int, float] = {}
        for rf, topic in topics.items():
            rps = consume_rps(
                perf, cluster.bootstrap, topic, REPLICATION_PARTITIONS, sizes.records
            )
            consumed[rf] = rps * RECORD_SIZE / MB
            note(f"repl_consume_rf{rf}_mbps", consumed[rf])
        note("repl_consume_ratio", consumed[3] / consumed[1])
        for topic in topics.values():
            delete_topic(cluster.bootstrap, topic)


class ContinuousProducer:
    """An idempotent acks=all confluent-kafka producer writing ``rate`` 1 KiB
    records a second to one partition, in a thread; every acknowledgement timed."""

    def __init__(self, bootstrap: str, topic: str, partition: int, rate: int) -> None:
        self.topic = topic
        self.partition = partition
        self.rate = rate
        self.producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "message.timeout.ms": 120_000,
                "statistics.interval.ms": 200,
                "stats_cb": self._on_stats,
            }
        )
        self.sent_at: list[float] = []  # by sequence number
        self.acks: list[tuple[float, int]] = []  # (when, sequence), in report order
        self.failed: list[str] = []
        self.stats: dict[str, object] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _on_stats(self, raw: str) -> None:
        self.stats = json.loads(raw)

    def _on_delivery(self, seq: int, err: object, _msg: object) -> None:
        if err is not None:
            self.failed.append(str(err))
        else:
            self.acks.append((time.perf_counter(), seq))

    def _run(self) -> None:
        burst = max(1, self.rate // 100)  # every 10 ms
        pad = b"x" * (RECORD_SIZE - 8)
        due = time.perf_counter()
        while not self._stop.is_set():
            now = time.perf_counter()
            if now >= due:
                for _ in range(burst):
                    seq = len(self.sent_at)
                    self.sent_at.append(now)
                    self.producer.produce(
                        self.topic,
                        value=seq.to_bytes(8, "big") + pad,
                        partition=self.partition,
                        on_delivery=functools.partial(self._on_delivery, seq),
                    )
                due += burst / self.rate
            self.producer.poll(0.001)

    def first_ack_sent_after(self, t0: float) -> float | None:
        """When the first record enqueued after ``t0`` was acknowledged."""
        for when, seq in list(self.acks):
            if self.sent_at[seq] > t0:
                return when
        return None

    def longest_gap(self, start: float, end: float) -> float:
        """The longest time without an acknowledgement between ``start`` and ``end``."""
        times = [start, *sorted(w for w, _ in self.acks if start < w < end), end]
        return max(b - a for a, b in itertools.pairwise(times))

    def retries(self) -> int:
        """Requests librdkafka sent again (``txretries`` over its brokers)."""
        brokers = self.stats.get("brokers", {})
        assert isinstance(brokers, dict)
        return sum(int(b.get("txretries", 0)) for b in brokers.values())

    def __enter__(self) -> ContinuousProducer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        left = self.producer.flush(60)
        if left:
            self.failed.append(f"{left} records not delivered at the end")
        end = time.perf_counter() + 0.5  # a last statistics report
        while time.perf_counter() < end:
            self.producer.poll(0.05)


def failover_round(
    cluster: Cluster, topic: str, sig: signal.Signals, rate: int
) -> dict[str, float]:
    """While a :class:`ContinuousProducer` writes to a partition led by a broker
    that is not the controller, send that leader ``sig``.

    SIGKILL: seconds from the kill until the first record enqueued after it is
    acknowledged (only a new leader can). SIGTERM (controlled shutdown): seconds
    until another broker's Metadata names a new leader, and the longest time the
    producer went without an acknowledgement. Both: delivery failures the
    application saw and requests librdkafka retried. The broker is started again
    and the partition back in sync afterwards."""
    create_topics(cluster.bootstrap, [topic], 3, rf=3)
    ctrl = controller_id(cluster.brokers[1])
    led = {p: wait_in_sync(cluster, topic, p) for p in range(3)}
    partition = next((p for p, n in led.items() if n != ctrl), 0)
    victim = led[partition]
    observer = cluster.brokers[next(n for n in cluster.brokers if n != victim)]
    out: dict[str, float] = {}
    with ContinuousProducer(cluster.bootstrap, topic, partition, rate) as load:
        wait_until("acknowledged records", lambda: len(load.acks) >= rate // 2, 30)
        t0 = time.perf_counter()
        cluster.brokers[victim].proc.send_signal(sig)
        moved = wait_until(
            "a new leader",
            lambda: state_of(observer, topic, partition)[0] not in (victim, -1),
        )
        if sig == signal.SIGKILL:
            wait_until(
                "an acknowledgement from the new leader",
                lambda: load.first_ack_sent_after(t0) is not None,
            )
            out["failover_sigkill_ack_s"] = (load.first_ack_sent_after(t0) or t0) - t0
            out["failover_sigkill_metadata_s"] = moved - t0
        else:
            out["failover_sigterm_move_s"] = moved - t0
        time.sleep(2)  # let the producer run on the new leader
        end = time.perf_counter()
    stamp = sig.name.lower()
    out[f"failover_{stamp}_stall_s"] = load.longest_gap(t0, end)
    out[f"failover_{stamp}_failed"] = len(load.failed)
    out[f"failover_{stamp}_retries"] = load.retries()
    if load.failed:
        print(json.dumps({"failed": load.failed[:5]}), flush=True)
    cluster.brokers[victim].stop(timeout=10)
    cluster.start_broker(victim)
    wait_in_sync(cluster, topic, partition)
    delete_topic(cluster.bootstrap, topic)
    return out


def segment_bytes(broker: BrokerProcess, topic: str, partition: int) -> int:
    """Bytes in the partition's ``.log`` segment files on the broker's disk."""
    folder = broker.data_dir / "kafka" / topic / str(partition)
    total = 0
    for path in folder.glob("*.log"):
        with contextlib.suppress(FileNotFoundError):
            total += path.stat().st_size
    return total


def read_rate(broker: BrokerProcess, topic: str, partition: int, direct: bool) -> float:
    """MB/s of reading the partition's segment files in 1 MiB reads: with
    ``direct``, O_DIRECT (from the disk, past the page cache), else through the
    page cache as it is (nothing dropped)."""
    folder = broker.data_dir / "kafka" / topic / str(partition)
    chunk = 1 << 20
    buf = mmap.mmap(-1, chunk)  # page-aligned, as O_DIRECT needs
    flags = os.O_RDONLY | (os.O_DIRECT if direct else 0)
    total = 0
    t0 = time.perf_counter()
    for path in sorted(folder.glob("*.log")):
        fd = os.open(path, flags)
        try:
            while n := os.readv(fd, [buf]):
                total += n
        finally:
            os.close(fd)
    return total / MB / (time.perf_counter() - t0)


def catch_up_round(
    cluster: Cluster, perf: Path, topic: str, records: int
) -> dict[str, float]:
    """Stop a follower of a one-partition RF=3 topic (SIGTERM: it leaves the ISR at
    once), produce ``records`` 1 KiB records to the partition, start the follower
    again and time it until its log has the leader's bytes and until it is back in
    the ISR; beside it the MB/s of reading the leader's segment files."""
    create_topics(cluster.bootstrap, [topic], 1, rf=3)
    leader = wait_in_sync(cluster, topic, 0)
    ctrl = controller_id(cluster.brokers[1])
    follower = next(
        (n for n in sorted(cluster.brokers) if n not in (leader, ctrl)),
        next(n for n in sorted(cluster.brokers) if n != leader),
    )
    lead = cluster.brokers[leader]
    cluster.brokers[follower].stop(timeout=30)
    wait_until(
        "the stopped follower out of the ISR",
        lambda: follower not in state_of(lead, topic, 0)[1],
    )
    rps = produce_rps(perf, cluster.bootstrap, topic, records, partition=0)
    total = segment_bytes(lead, topic, 0)
    disk_mbps = read_rate(lead, topic, 0, direct=True)
    cached_mbps = read_rate(lead, topic, 0, direct=False)
    t_start = time.perf_counter()
    back = cluster.start_broker(follower)
    t_ready = time.perf_counter()
    at_ready = segment_bytes(back, topic, 0)
    copied_at: float | None = None
    with lead.connect() as sock:
        while True:
            now = time.perf_counter()
            if now - t_ready > 600:
                raise RuntimeError(f"follower {follower} not back in the ISR in 600 s")
            if copied_at is None and segment_bytes(back, topic, 0) >= total:
                copied_at = now
            if follower in partition_states(sock, topic)[0][1]:
                in_isr = time.perf_counter()
                break
            time.sleep(0.02)
    copied_at = copied_at or in_isr
    delete_topic(cluster.bootstrap, topic)
    copy_mbps = (total - at_ready) / MB / max(copied_at - t_ready, 1e-3)
    return {
        "catchup_mb": total / MB,
        "catchup_produce_mbps": rps * RECORD_SIZE / MB,
        "catchup_start_s": t_ready - t_start,
        "catchup_copied_s": copied_at - t_ready,
        "catchup_isr_s": in_isr - t_ready,
        "catchup_mbps": copy_mbps,
        "catchup_leader_disk_mbps": disk_mbps,
        "catchup_leader_cached_mbps": cached_mbps,
        "catchup_ratio": copy_mbps / disk_mbps,
    }


def run_replication(
    tmp: Path, sizes: Sizes, repeat: int, perf: Path, note: Callable[[str, float], None]
) -> None:
    """The replication figures on their own cluster (session timeout
    ``SESSION_MS``): produce and consume RF=3 vs RF=1, failover, catch-up."""
    tmp.mkdir(parents=True)
    cluster = Cluster(tmp, session_ms=SESSION_MS)
    try:
        cluster.start()
        create_topics(cluster.bootstrap, ["warm-up"], REPLICATION_PARTITIONS, rf=3)
        produce_rps(perf, cluster.bootstrap, "warm-up", sizes.records // 10)
        delete_topic(cluster.bootstrap, "warm-up")
        produce_and_consume(cluster, perf, sizes, repeat, note)
        for i in range(repeat):
            note("repl_load_failover", os.getloadavg()[0])
            for sig in (signal.SIGKILL, signal.SIGTERM):
                topic = f"failover-{sig.name.lower()}-{i}"
                for key, value in failover_round(
                    cluster, topic, sig, sizes.failover_rate
                ).items():
                    note(key, value)
        for i in range(repeat):
            records = sizes.catchup_mib * 1024 * 1024 // RECORD_SIZE
            note("repl_load_catchup", os.getloadavg()[0])
            for key, value in catch_up_round(
                cluster, perf, f"catchup-{i}", records
            ).items():
                note(key, value)
    finally:
        cluster.close()


# -- the run ------------------------------------------------------------------------


PARTS = ("cluster", "replication")


def run(
    sizes: Sizes, repeat: int, perf: Path, parts: Sequence[str] = PARTS
) -> dict[str, list[float]]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    numbers: dict[str, list[float]] = {}

    def note(key: str, value: float) -> None:
        numbers.setdefault(key, []).append(value)
        print(json.dumps({key: round(value, 4)}), flush=True)

    try:
        if "cluster" in parts:
            run_single_vs_cluster(tmp / "cluster", sizes, repeat, perf, note)
        if "replication" in parts:
            run_replication(tmp / "replication", sizes, repeat, perf, note)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return numbers


def run_single_vs_cluster(
    tmp: Path,
    sizes: Sizes,
    repeat: int,
    perf: Path,
    note: Callable[[str, float], None],
) -> None:
    """Produce single node vs cluster, Metadata latency, controlled shutdown."""
    tmp.mkdir(parents=True)
    single: BrokerProcess | None = None
    cluster = Cluster(tmp)
    try:
        single = start_broker(tmp / "single", *QUIET, log_dir=tmp / "logs-single")
        cluster.start()
        for i in range(repeat):
            topic = f"produce-{i}"
            create_topics(single.bootstrap, [topic], PARTITIONS)
            create_topics(cluster.bootstrap, [topic], PARTITIONS)
            s = produce_rps(perf, single.bootstrap, topic, sizes.records)
            c = produce_rps(perf, cluster.bootstrap, topic, sizes.records)
            note("produce_single_rps", s)
            note("produce_cluster_rps", c)
            note("produce_ratio", c / s)
        single.stop()
        single = None

        names = [f"meta{i:03d}" for i in range(sizes.topics)]
        for chunk in range(0, len(names), 25):
            create_topics(
                cluster.bootstrap, names[chunk : chunk + 25], sizes.topic_partitions
            )
        target = cluster.brokers[2]
        listed = metadata_partitions(target)
        want = sizes.topics * sizes.topic_partitions
        if listed < want:
            raise RuntimeError(f"Metadata lists {listed} partitions, want {want}+")
        note("metadata_partitions", listed)
        for _ in range(repeat):
            before = etcd_calls(cluster.etcd)
            lat = metadata_latencies(target, sizes.samples)
            note("metadata_etcd_calls", etcd_calls(cluster.etcd) - before)
            note("metadata_p50_ms", statistics.median(lat))
            note("metadata_p99_ms", percentile(lat, 0.99))
        cluster.etcd.stop()
        try:
            for _ in range(repeat):
                lat = metadata_latencies(target, sizes.samples)
                note("metadata_etcd_down_p50_ms", statistics.median(lat))
                note("metadata_etcd_down_p99_ms", percentile(lat, 0.99))
        finally:
            cluster.etcd.start()

        for i in range(repeat):
            rf1, rf3 = f"shut-rf1-{i}", f"shut-rf3-{i}"
            create_topics(cluster.bootstrap, [rf1], PARTITIONS, rf=1)
            create_topics(cluster.bootstrap, [rf3], PARTITIONS, rf=3)
            for key, value in shutdown_seconds(cluster, [rf1, rf3], "sigterm").items():
                note(key, value)
    finally:
        if single is not None:
            single.stop()
        cluster.close()


ROWS: list[tuple[str, str, Callable[[float], str]]] = [
    ("produce_single_rps", "produce, single node (records/s)", "{:,.0f}".format),
    ("produce_cluster_rps", "produce, 3-broker cluster (records/s)", "{:,.0f}".format),
    ("produce_ratio", "cluster / single (target ≥ 0.8)", "{:.2f}×".format),
    ("metadata_partitions", "partitions in the Metadata answer", "{:,.0f}".format),
    ("metadata_p50_ms", "full Metadata p50 (ms)", "{:.2f}".format),
    ("metadata_p99_ms", "full Metadata p99 (ms; target < 2)", "{:.2f}".format),
    ("metadata_etcd_calls", "etcd Range+Txn calls meanwhile", "{:.0f}".format),
    ("metadata_etcd_down_p50_ms", "with etcd stopped: p50 (ms)", "{:.2f}".format),
    ("metadata_etcd_down_p99_ms", "with etcd stopped: p99 (ms)", "{:.2f}".format),
    ("shutdown_sigterm_rf1_s", "SIGTERM → none led by it, RF=1 (s)", "{:.2f}".format),
    ("shutdown_sigterm_rf3_s", "SIGTERM → none led by it, RF=3 (s)", "{:.2f}".format),
    ("shutdown_sigterm_exit_s", "SIGTERM → process exited (s)", "{:.2f}".format),
]
REPLICATION_ROWS: list[tuple[str, str, Callable[[float], str]]] = [
    ("repl_load_produce", "load average (1 min) before the round", "{:.2f}".format),
    ("repl_produce_rf1_mbps", "produce RF=1 acks=all (MB/s)", "{:.1f}".format),
    ("repl_produce_rf3_mbps", "produce RF=3 acks=all (MB/s)", "{:.1f}".format),
    ("repl_produce_rf1_rps", "produce RF=1 (records/s)", "{:,.0f}".format),
    ("repl_produce_rf3_rps", "produce RF=3 (records/s)", "{:,.0f}".format),
    ("repl_produce_ratio", "RF=3 / RF=1 (target ≥ 0.4)", "{:.2f}×".format),
    ("repl_produce_rf1_cpu_s_per_mb", "broker CPU s per MB, RF=1", "{:.3f}".format),
    ("repl_produce_rf3_cpu_s_per_mb", "broker CPU s per MB, RF=3", "{:.3f}".format),
    ("repl_consume_rf1_mbps", "consume RF=1 topic (MB/s)", "{:.1f}".format),
    ("repl_consume_rf3_mbps", "consume RF=3 topic (MB/s)", "{:.1f}".format),
    ("repl_consume_ratio", "consume RF=3 / RF=1", "{:.2f}×".format),
    ("repl_load_failover", "load average before the failover round", "{:.2f}".format),
    (
        "failover_sigkill_ack_s",
        "SIGKILL leader → first ack by new leader (s)",
        "{:.2f}".format,
    ),
    (
        "failover_sigkill_metadata_s",
        "SIGKILL → Metadata names new leader (s)",
        "{:.2f}".format,
    ),
    ("failover_sigkill_failed", "SIGKILL: deliveries failed", "{:.0f}".format),
    (
        "failover_sigkill_retries",
        "SIGKILL: requests retried (txretries)",
        "{:.0f}".format,
    ),
    (
        "failover_sigterm_move_s",
        "SIGTERM leader → Metadata names new leader (s)",
        "{:.2f}".format,
    ),
    (
        "failover_sigterm_stall_s",
        "SIGTERM: longest time without an ack (s)",
        "{:.2f}".format,
    ),
    (
        "failover_sigterm_failed",
        "SIGTERM: deliveries failed (target 0)",
        "{:.0f}".format,
    ),
    (
        "failover_sigterm_retries",
        "SIGTERM: requests retried (txretries)",
        "{:.0f}".format,
    ),
    ("repl_load_catchup", "load average before the catch-up round", "{:.2f}".format),
    ("catchup_mb", "written while the follower was stopped (MB)", "{:,.0f}".format),
    ("catchup_produce_mbps", "that produce, RF=3 with ISR 2 (MB/s)", "{:.1f}".format),
    ("catchup_start_s", "follower start until ready (s)", "{:.2f}".format),
    (
        "catchup_copied_s",
        "ready → follower has the leader's bytes (s)",
        "{:.2f}".format,
    ),
    ("catchup_isr_s", "ready → follower back in the ISR (s)", "{:.2f}".format),
    ("catchup_mbps", "follower catch-up (MB/s)", "{:.1f}".format),
    (
        "catchup_leader_disk_mbps",
        "leader's segments read, O_DIRECT (MB/s)",
        "{:.0f}".format,
    ),
    ("catchup_leader_cached_mbps", "the same, page cache (MB/s)", "{:.0f}".format),
    ("catchup_ratio", "catch-up / O_DIRECT read (target ≥ 0.5)", "{:.2f}×".format),
]


def table(
    numbers: dict[str, list[float]],
    rows: Sequence[tuple[str, str, Callable[[float], str]]] = ROWS,
) -> str:
    lines = ["| metric | median | runs |", "|---|---:|---|"]
    for key, label, fmt in rows:
        values = numbers.get(key)
        if not values:
            continue
        runs = ", ".join(fmt(v) for v in values)
        lines.append(f"| {label} | {fmt(statistics.median(values))} | {runs} |")
    return "\n".join(lines)


def machine() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    keep = ("Model name", "CPU(s)", "Hypervisor vendor")
    picked = [
        " ".join(line.split())
        for line in out.splitlines()
        if line.split(":")[0].strip() in keep
    ]
    mem = " ".join(Path("/proc/meminfo").read_text().splitlines()[0].split())
    return "; ".join([*picked, mem, f"Linux {platform.release()}"])


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a check)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--perf", type=Path, default=PERF)
    parser.add_argument("--markdown", type=Path, help="write the docs table here")
    parser.add_argument("--json", type=Path, help="write the raw numbers here")
    parser.add_argument(
        "--part",
        choices=("all", *PARTS),
        default="all",
        help="cluster: single node vs cluster; replication: RF=3 figures",
    )
    parser.add_argument(
        "--catchup-mib",
        type=int,
        help="MiB written while a follower is stopped (default 1024, --quick 32)",
    )
    args = parser.parse_args()
    if (why := missing_etcd()) is not None:
        sys.exit(why)
    if not os.access(args.perf, os.X_OK):
        sys.exit(f"{args.perf} is not an executable rdkafka_performance (--perf)")
    sizes = QUICK if args.quick else FULL
    if args.catchup_mib is not None:
        sizes = dataclasses.replace(sizes, catchup_mib=args.catchup_mib)
    parts = PARTS if args.part == "all" else (args.part,)
    load = os.getloadavg()
    started = time.perf_counter()
    numbers = run(sizes, args.repeat, args.perf, parts)
    print(f"done in {time.perf_counter() - started:.0f}s", file=sys.stderr)
    tables = "\n\n".join(
        table(numbers, rows)
        for part, rows in zip(PARTS, (ROWS, REPLICATION_ROWS), strict=True)
        if part in parts
    )
    print(tables)
    if args.json:
        args.json.write_text(json.dumps(numbers, indent=1))
    if args.markdown:
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        flags = " ".join(sys.argv[1:])
        per_run = [f"{sizes.records:,} records per produce run"]
        if "cluster" in parts:
            per_run.append(f"{sizes.samples:,} Metadata samples per run")
        if "replication" in parts:
            per_run.append(f"{sizes.catchup_mib:,} MiB per catch-up round")
        args.markdown.write_text(
            f"Command: `python bench/cluster_bench.py {flags}` "
            f"(medians of {args.repeat}; {', '.join(per_run)})  \n"
            f"Date: {now}; load average before: {load[0]:.2f}  \n"
            f"Machine: {machine()}\n\n{tables}\n"
        )


if __name__ == "__main__":
    main()
