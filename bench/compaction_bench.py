"""Log compaction benchmarks: cleaner throughput, and produce latency while it runs.

1. Cleaner throughput [>= 100 MB/s of segment]: a partition log of SIZE MiB in
   SEGMENT MiB segments, batches of 100 records with 1 KiB values, is cleaned in
   one round by :class:`storage.log_cleaner.LogCleaner` (no io cap), in two shapes:
   ``overwrites`` (KEYS distinct keys: most records are removed, every batch is
   rebuilt) and ``unique`` (every key once: batches are copied as they are).
2. p99 produce latency (confluent-kafka, acks=1, 1 KiB, one in flight) on a
   ``delete`` topic of a live broker while its cleaner compacts a LIVE MiB
   partition of another topic, vs the same broker with ``log.cleaner.enable=false``
   [during <= 2x without]; runs alternate (disabled, enabled) ROUNDS times and the
   samples are pooled.

Run: ``.venv/bin/python bench/compaction_bench.py [--size-mib 256] [--live-mib 128]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from protocol.record_builder import RecordInput, build_batch
from storage.config import TopicConfig
from storage.fileops import FileOps
from storage.log_cleaner import LogCleaner
from storage.partition_log import PartitionLog

ROOT = Path(__file__).resolve().parents[1]


def build_log(
    path: Path, size_mib: int, segment_mib: int, keys: int | None
) -> PartitionLog:
    cfg = TopicConfig.from_overrides(
        {"segment.bytes": str(segment_mib << 20), "cleanup.policy": "compact"}, {}
    )
    log = PartitionLog.open(
        str(path), topic="bench", partition=0, config=cfg, fileops=FileOps(), clean=True
    )
    value = os.urandom(1024)
    n = 0
    while log.size_bytes < size_mib << 20:
        records = []
        for _ in range(100):
            key = n % keys if keys else n
            records.append(RecordInput(key=b"key-%09d" % key, value=value, timestamp=1))
            n += 1
        log.append(build_batch(records), leader_epoch=0)
    log.roll()
    log.sync()
    return log


def bench_cleaner(
    work: Path, size_mib: int, segment_mib: int, keys: int | None
) -> dict[str, float]:
    log = build_log(work, size_mib, segment_mib, keys)
    subprocess.run(["sync"], check=True)
    cleaner = LogCleaner()
    started = time.perf_counter()
    cpu = time.thread_time()
    result = cleaner.clean(log, force=True)
    cpu = time.thread_time() - cpu
    elapsed = time.perf_counter() - started
    assert result.cleaned
    log.close()
    return {
        "read_mb": result.stats.bytes_read / 1e6,
        "written_mb": result.stats.bytes_written / 1e6,
        "seconds": elapsed,
        "mb_s": result.stats.bytes_read / 1e6 / elapsed,
        "mb_cpu_s": result.stats.bytes_read / 1e6 / cpu,
    }


def _latencies(producer: object, n: int) -> list[float]:
    from confluent_kafka import Producer

    assert isinstance(producer, Producer)
    payload = b"x" * 1024
    out = []
    for _ in range(n):
        started = time.perf_counter()
        producer.produce("lat", payload, partition=0)
        producer.flush(10)
        out.append(time.perf_counter() - started)
    return out


def _admin_json(admin_url: str, path: str) -> object:
    with urllib.request.urlopen(admin_url + path, timeout=10) as resp:
        return json.loads(resp.read())


def live_run(
    work: Path, live_mib: int, enabled: bool, samples: int, io_cap: int
) -> dict[str, float]:
    """One broker: fill the compacted topic, then measure produce latency on the
    other one while the cleaner (if ``enabled``) compacts it."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    data = work / f"data-{enabled}-{time.monotonic_ns()}"
    ready = work / f"ready-{time.monotonic_ns()}.json"
    log = (work / "broker.log").open("ab")
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "broker", "serve",
            "--kafka-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0",
            "--data-dir", str(data), "--ready-file", str(ready), "--log-format", "json",
            "--set", f"log.cleaner.enable={'true' if enabled else 'false'}",
            "--set", "log.cleaner.backoff.ms=100",
            "--set", f"log.cleaner.io.max.bytes.per.second={io_cap}",
        ],
        stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
    )  # fmt: skip
    try:
        while not ready.exists():
            time.sleep(0.05)
        time.sleep(0.1)
        info = json.loads(ready.read_text())
        bootstrap = f"127.0.0.1:{info['kafka']['default']['port']}"
        admin_url = f"http://127.0.0.1:{info['admin']['port']}"
        admin = AdminClient({"bootstrap.servers": bootstrap})
        topics = [
            NewTopic(
                "cmp", 1, 1,
                config={"cleanup.policy": "compact", "segment.bytes": str(8 << 20)},
            ),
            NewTopic("lat", 1, 1),
        ]  # fmt: skip
        for fut in admin.create_topics(topics).values():
            fut.result(10)
        # fill: 1 KiB values over 20,000 keys (most records get compacted away)
        filler = Producer(
            {"bootstrap.servers": bootstrap, "acks": "1", "linger.ms": 20,
             "batch.size": 1 << 20, "queue.buffering.max.kbytes": 1 << 20}
        )  # fmt: skip
        value = os.urandom(1024)
        for i in range(live_mib * 1000):
            while True:
                try:
                    filler.produce(
                        "cmp", value, key=b"key-%06d" % (i % 20_000), partition=0
                    )
                    break
                except BufferError:
                    filler.poll(0.05)
        filler.flush(60)
        producer = Producer(
            {"bootstrap.servers": bootstrap, "acks": "1", "linger.ms": 0}
        )
        _latencies(producer, 200)  # warm up
        out: list[float] = []
        started = time.perf_counter()
        cleaned_s = 0.0
        while len(out) < samples or (enabled and not cleaned_s):
            out += _latencies(producer, 50)
            if enabled and not cleaned_s:
                topic = _admin_json(admin_url, "/v1/topics/cmp")
                assert isinstance(topic, dict)
                status = topic["partitions"][0]["compaction"]
                if status["rounds"] >= 1:
                    cleaned_s = time.perf_counter() - started
                    cleaned_mb = status["bytes_cleaned"] / 1e6
            if time.perf_counter() - started > 300:
                break
        result = {"latencies": out, "cleaned_s": cleaned_s}
        if cleaned_s:
            result["cleaned_mb"] = cleaned_mb
        del producer, filler  # before the broker goes: no reconnect noise
        return result  # type: ignore[return-value]
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--segment-mib", type=int, default=64)
    ap.add_argument("--keys", type=int, default=20_000)
    ap.add_argument("--live-mib", type=int, default=128)
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--io-cap-mib", type=int, default=0, help="0: unlimited")
    ap.add_argument("--skip-storage", action="store_true")
    ap.add_argument("--skip-live", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(
        prefix="compactbench-", dir=os.environ.get("BENCH_DIR")
    ) as tmp:
        work = Path(tmp)
        if not args.skip_storage:
            for name, keys in (("overwrites", args.keys), ("unique", None)):
                r = bench_cleaner(work / name, args.size_mib, args.segment_mib, keys)
                print(
                    f"cleaner {name}: {r['read_mb']:.0f} MB read, {r['written_mb']:.0f} MB "
                    f"written in {r['seconds']:.2f} s = {r['mb_s']:.0f} MB/s "
                    f"({r['mb_cpu_s']:.0f} MB per CPU second)"
                )
        if args.skip_live:
            return
        base: list[float] = []
        during: list[float] = []
        speeds = []
        for _ in range(args.rounds):
            base += live_run(work, args.live_mib, False, args.samples, 0)["latencies"]  # type: ignore[operator]
            run = live_run(
                work, args.live_mib, True, args.samples, args.io_cap_mib << 20
            )
            during += run["latencies"]  # type: ignore[operator]
            if run["cleaned_s"]:
                speeds.append(run["cleaned_mb"] / run["cleaned_s"])  # type: ignore[operator]

        def p(values: list[float], q: int) -> float:
            return statistics.quantiles(values, n=100)[q - 1] * 1000

        print(
            f"produce latency on another topic: p50 {p(base, 50):.2f} / p99 {p(base, 99):.2f} ms "
            f"cleaner off; p50 {p(during, 50):.2f} / p99 {p(during, 99):.2f} ms while cleaning "
            f"({len(during)} samples); p99 ratio {p(during, 99) / p(base, 99):.2f}x; "
            f"live rounds {', '.join(f'{s:.0f}' for s in speeds)} MB/s (incl. the backoff)"
        )


if __name__ == "__main__":
    main()
