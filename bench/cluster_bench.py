"""Cluster benchmark: one single-node broker beside a three-broker cluster over etcd.

Run: ``python bench/cluster_bench.py [--quick] [--repeat R] [--markdown FILE]
[--json FILE]``. Needs ``etcd`` (etcd-server 3.4+; ``make clients``) and
``rdkafka_performance`` (librdkafka's C load generator, ``--perf``; default
/work/shared/tools/rdkafka_performance).

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

Prints JSON lines per round and a table of medians; ``--markdown`` writes the table
with the command, date, machine and load average for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
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
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

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


@dataclass(frozen=True, slots=True)
class Sizes:
    records: int  # produced per round and target
    topics: int  # Metadata: topics of ...
    topic_partitions: int  # ... this many partitions each
    samples: int  # Metadata round trips per phase


FULL = Sizes(records=300_000, topics=100, topic_partitions=10, samples=3_000)
QUICK = Sizes(records=20_000, topics=10, topic_partitions=10, samples=200)


class Cluster:
    """etcd and three brokers; single-node broker beside it."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
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


def produce_rps(perf: Path, bootstrap: str, topic: str, records: int) -> float:
    """Records per second ``rdkafka_performance`` reports for ``records`` 1 KiB
    records, acks=all, uncompressed (its last summary line; every one delivered)."""
    cmd = [
        str(perf),
        "-P",
        "-t",
        topic,
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
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    found = _PRODUCED.findall(r.stdout)
    if r.returncode != 0 or not found:
        raise RuntimeError(f"rdkafka_performance failed:\n{r.stdout}\n{r.stderr}")
    produced, delivered, ms = (int(x) for x in found[-1])
    if delivered != records or produced != records:
        raise RuntimeError(f"{delivered} of {records} delivered:\n{r.stdout}")
    return records / (int(ms) / 1000)


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


def leaders(sock: socket.socket, topic: str) -> list[int]:
    """The topic's partition leaders in a Metadata answer on ``sock``."""
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
    return [p.leader_id for p in sorted(t.partitions, key=lambda p: p.partition_index)]


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


# -- the run ------------------------------------------------------------------------


def run(sizes: Sizes, repeat: int, perf: Path) -> dict[str, list[float]]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    numbers: dict[str, list[float]] = {}

    def note(key: str, value: float) -> None:
        numbers.setdefault(key, []).append(value)
        print(json.dumps({key: round(value, 4)}), flush=True)

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
        shutil.rmtree(tmp, ignore_errors=True)
    return numbers


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


def table(numbers: dict[str, list[float]]) -> str:
    lines = ["| metric | median | runs |", "|---|---:|---|"]
    for key, label, fmt in ROWS:
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
    args = parser.parse_args()
    if (why := missing_etcd()) is not None:
        sys.exit(why)
    if not os.access(args.perf, os.X_OK):
        sys.exit(f"{args.perf} is not an executable rdkafka_performance (--perf)")
    sizes = QUICK if args.quick else FULL
    load = os.getloadavg()
    started = time.perf_counter()
    numbers = run(sizes, args.repeat, args.perf)
    print(f"done in {time.perf_counter() - started:.0f}s", file=sys.stderr)
    print(table(numbers))
    if args.json:
        args.json.write_text(json.dumps(numbers, indent=1))
    if args.markdown:
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        flags = " --quick" if args.quick else ""
        args.markdown.write_text(
            f"Command: `python bench/cluster_bench.py{flags} --repeat {args.repeat}` "
            f"(medians of {args.repeat}; {sizes.records:,} records per produce run, "
            f"{sizes.samples:,} Metadata samples per run)  \n"
            f"Date: {now}; load average before: {load[0]:.2f}  \n"
            f"Machine: {machine()}\n\n{table(numbers)}\n"
        )


if __name__ == "__main__":
    main()
