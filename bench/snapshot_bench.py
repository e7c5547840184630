"""Snapshot benchmarks: create, ingest bandwidth vs ``cp``, produce latency during ingest.

Scaled for a shared 2-core machine (issue targets in brackets):

1. ``create`` of a partition of SIZE MiB in closed segments of SEGMENT MiB
   [2 GiB in under 1 s]: hard links plus one CRC pass over the linked files.
2. ingest of a SIZE MiB snapshot (validate, plan, stage the batches into segments
   beside the log + fsync, adopt them by rename: the storage path the watcher runs,
   minus the worker process it stages in) vs ``cp -r`` of the same files + ``sync``
   [>= 50% of cp's bandwidth].
3. p99 produce latency (confluent-kafka, acks=1, one message in flight) on the last
   partition of a live broker (default settings: no ingest throttle),
   without and during hot ingests of the snapshot into the other partitions, in
   ROUNDS alternating windows pooled [during <= 2x without]; and
   that live ingest's bandwidth (from the rename into data/snapshots until the admin
   API says applied) vs ``cp -r`` + ``sync`` of the same files [>= 50% of cp's].

Run: ``.venv/bin/python bench/snapshot_bench.py [--size-mib 256] [--segment-mib 64]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
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
from storage.partition_log import PartitionLog
from storage.snapshot import (
    CreateRequest,
    create_snapshot,
    inspect_snapshot,
    plan_apply,
)
from storage.snapshot_stage import StageJob, stage_snapshot

TOPIC_ID = "b0b0b0b0-1111-4222-8333-444444444444"


def build_log(
    path: Path, size_mib: int, segment_mib: int, topic: str = "bench"
) -> PartitionLog:
    cfg = TopicConfig.from_overrides({"segment.bytes": str(segment_mib << 20)}, {})
    log = PartitionLog.open(
        str(path), topic=topic, partition=0, config=cfg, fileops=FileOps(), clean=True
    )
    batch = build_batch(
        [RecordInput(value=os.urandom(1024), timestamp=1) for _ in range(1000)]
    )
    for _ in range((size_mib << 20) // len(batch)):
        log.append(batch, leader_epoch=0)
    log.roll()  # every byte in closed segments
    log.sync()
    return log


def bench_create(
    work: Path, size_mib: int, segment_mib: int
) -> tuple[Path, dict[str, float]]:
    log = build_log(work / "src", size_mib, segment_mib)
    started = time.perf_counter()
    path, meta = create_snapshot(
        log,
        CreateRequest(
            snapshots_dir=str(work / "snapshots"),
            dir_name=TOPIC_ID,
            snapshot_id="1700000000000000000",
            topic="bench",
            topic_id=TOPIC_ID,
            partition=0,
            partition_count=2,
            end_offset=log.log_end_offset,
        ),
    )
    seconds = time.perf_counter() - started
    log.close()
    return Path(path), {"create_s": seconds, "create_mib": meta.size / 2**20}


def bench_ingest(work: Path, snap_dir: Path) -> dict[str, float]:
    root = os.path.realpath(work)
    cfg = TopicConfig.from_overrides({}, {})
    dest = PartitionLog.open(
        str(work / "dst"),
        topic="bench",
        partition=0,
        config=cfg,
        fileops=FileOps(),
        clean=True,
    )
    subprocess.run(["sync"], check=True)
    started = time.perf_counter()
    snap = inspect_snapshot(str(snap_dir), root, settle_s=0)
    job = StageJob.for_plan(
        snap,
        plan_apply(snap, dest, root),
        root=root,
        staging_dir=str(work / "staging"),
        topic="bench",
        config=cfg,
    )
    written = stage_snapshot(job)
    dest.adopt(job.staging_dir)
    dest.sync()
    ingest_s = time.perf_counter() - started
    dest.close()
    subprocess.run(["sync"], check=True)
    started = time.perf_counter()
    subprocess.run(["cp", "-r", str(snap_dir), str(work / "cp-copy")], check=True)
    subprocess.run(["sync"], check=True)
    cp_s = time.perf_counter() - started
    mib = written / 2**20
    return {
        "ingest_mib": mib,
        "ingest_mib_s": mib / ingest_s,
        "cp_mib_s": mib / cp_s,
        "ratio": cp_s / ingest_s,
    }


def _latencies(producer: object, n: int, partition: int) -> list[float]:
    """``n`` produce round trips (acks=1, one in flight) to ``partition``, in seconds.

    One producer serves the whole run: a new one per batch of samples would add its
    own bootstrap (connect, ApiVersions, Metadata) to the first sample of each batch,
    and with batches of 50 that alone is 2% of the samples: the p99.
    """
    from confluent_kafka import Producer

    assert isinstance(producer, Producer)
    payload = b"x" * 1024
    out = []
    for _ in range(n):
        started = time.perf_counter()
        producer.produce("bench", payload, partition=partition)
        producer.flush(10)
        out.append(time.perf_counter() - started)
    return out


def bench_latency(
    work: Path, snap_dir: Path, n: int, rate: int = -1, rounds: int = 3
) -> dict[str, float]:
    from confluent_kafka.admin import AdminClient, NewTopic

    data = work / "broker"
    ready = work / "ready.json"
    log = open(work / "broker.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "broker",
            "serve",
            "--kafka-addr",
            "127.0.0.1:0",
            "--admin-addr",
            "127.0.0.1:0",
            "--data-dir",
            str(data),
            "--ready-file",
            str(ready),
            "--log-format",
            "json",
            "--log-level",
            "warning",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=Path(__file__).resolve().parents[1],
        env={
            **os.environ,
            "AILURUS_SNAPSHOT_SCAN_INTERVAL_MS": "100",
            "AILURUS_SNAPSHOT_SETTLE_MS": "0",
            **(
                {"AILURUS_SNAPSHOT_INGEST_BYTES_PER_SEC": str(rate)}
                if rate >= 0
                else {}
            ),
        },
    )
    try:
        while not ready.exists():
            time.sleep(0.05)
        time.sleep(0.1)
        info = json.loads(ready.read_text())
        bootstrap = f"127.0.0.1:{info['kafka']['default']['port']}"
        admin_url = f"http://127.0.0.1:{info['admin']['port']}"
        admin = AdminClient({"bootstrap.servers": bootstrap})
        for fut in admin.create_topics([NewTopic("bench", rounds + 1, 1)]).values():
            fut.result(10)
        from confluent_kafka import Producer

        producer = Producer(
            {"bootstrap.servers": bootstrap, "acks": "1", "linger.ms": 0}
        )
        _latencies(producer, 200, rounds)  # warm up: connection, metadata
        base: list[float] = []
        during: list[float] = []
        ingest_s = 0.0
        for r in range(rounds):
            # Alternate windows without and during an ingest (into partition r), so
            # both see the same background noise of a shared machine.
            base += _latencies(producer, n // rounds, rounds)
            name = str(int(snap_dir.name) + r)
            incoming = data / "snapshots" / "bench" / ".incoming"
            shutil.copytree(snap_dir, incoming)
            meta = json.loads((incoming / "meta.json").read_text())
            meta.update(partition=r, partition_count=rounds + 1, snapshot_id=name)
            (incoming / "meta.json").write_text(json.dumps(meta))
            subprocess.run(["sync"], check=True)  # the copy's writeback is not ours
            os.rename(incoming, data / "snapshots" / "bench" / name)
            started = time.perf_counter()
            applied = False
            while not applied and time.perf_counter() - started < 120:
                during += _latencies(producer, 50, rounds)
                with urllib.request.urlopen(
                    admin_url + "/v1/snapshots", timeout=10
                ) as resp:
                    rows = json.loads(resp.read())
                applied = any(
                    r["status"] == "applied" and r["path"] == f"bench/{name}"
                    for r in rows
                )
            ingest_s += time.perf_counter() - started
    finally:
        proc.terminate()
        proc.wait(20)
        log.close()

    def p(values: list[float], q: float) -> float:
        return statistics.quantiles(values, n=100)[int(q) - 1] * 1000

    return {
        "p50_ms_without": p(base, 50),
        "p99_ms_without": p(base, 99),
        "p50_ms_during": p(during, 50),
        "p99_ms_during": p(during, 99),
        "samples_during": len(during),
        "live_ingest_s": ingest_s,
        "live_mib_s": rounds
        * sum(f.stat().st_size for f in snap_dir.glob("*.log"))
        / 2**20
        / ingest_s,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--segment-mib", type=int, default=64)
    ap.add_argument("--latency-samples", type=int, default=3000)
    ap.add_argument(
        "--rounds", type=int, default=3, help="ingests, each after a window without"
    )
    ap.add_argument(
        "--ingest-rate-mib",
        type=int,
        default=-1,
        help="snapshot.ingest.bytes.per.sec in MiB (0: unlimited; default: the broker's)",
    )
    ap.add_argument("--skip-storage", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(
        prefix="snapbench-", dir=os.environ.get("BENCH_DIR")
    ) as tmp:
        work = Path(tmp)
        snap_dir, created = bench_create(work, args.size_mib, args.segment_mib)
        print(
            f"create: {created['create_mib']:.0f} MiB in closed segments: {created['create_s'] * 1000:.0f} ms"
        )
        if not args.skip_storage:
            ingest = bench_ingest(work, snap_dir)
            print(
                f"ingest: {ingest['ingest_mib']:.0f} MiB at {ingest['ingest_mib_s']:.0f} MiB/s; "
                f"cp -r + sync {ingest['cp_mib_s']:.0f} MiB/s; ingest/cp = {ingest['ratio']:.2f}"
            )
        rate = args.ingest_rate_mib << 20 if args.ingest_rate_mib >= 0 else -1
        lat = bench_latency(work, snap_dir, args.latency_samples, rate, args.rounds)
        print(
            f"produce latency on another partition: p50 {lat['p50_ms_without']:.2f} ms / "
            f"p99 {lat['p99_ms_without']:.2f} ms without; p50 {lat['p50_ms_during']:.2f} ms / "
            f"p99 {lat['p99_ms_during']:.2f} ms during ingest ({lat['samples_during']:.0f} samples, "
            f"{lat['live_ingest_s']:.1f} s)"
        )
        print(
            f"live ingest: {lat['live_mib_s']:.0f} MiB/s"
            + (
                f" = {lat['live_mib_s'] / ingest['cp_mib_s']:.2f}x cp -r + sync"
                if not args.skip_storage
                else ""
            )
        )


if __name__ == "__main__":
    main()
