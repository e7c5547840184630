"""Consumer-group benchmarks: durable commit throughput and time to stabilise.

    .venv/bin/python bench/groups_bench.py [--seconds 3]

1. Offset commits/s with durability on (each commit answered after its fsync), via
   the broker's own group commit (broker.durability.group_commit.GroupCommit) and OffsetStore, at
   several numbers of concurrent committers (each commits, waits, commits again).
2. A real broker (``python -m broker serve``) and 3 confluent-kafka consumers on a
   6-partition topic: seconds from the last consumer's subscribe until every
   partition has exactly one owner.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio

from broker.durability.group_commit import GroupCommit, PartitionWaiters
from broker.groups.offsets import CommitPartition
from broker.groups.service import GroupService
from storage.offset_store import OffsetStore

ROOT = Path(__file__).resolve().parents[1]


async def _commits(
    data_dir: Path, committers: int, seconds: float
) -> tuple[float, int]:
    rounds: list[int] = []
    gc = GroupCommit(PartitionWaiters(), on_round=rounds.append)
    store = OffsetStore(data_dir)
    svc = GroupService(store, durability=gc)
    done = 0

    async def committer(i: int, deadline: float) -> None:
        nonlocal done
        offset = 0
        part = [CommitPartition(topic="t", partition=i % 6, offset=0)]
        while time.perf_counter() < deadline:
            offset += 1
            part = [CommitPartition(topic="t", partition=i % 6, offset=offset)]
            await svc.commit_offsets(f"g{i}", "", -1, None, part)
            done += 1

    async with anyio.create_task_group() as tg:
        tg.start_soon(gc.run)
        tg.start_soon(svc.run)
        start = time.perf_counter()
        async with anyio.create_task_group() as workers:
            for i in range(committers):
                workers.start_soon(committer, i, start + seconds)
        elapsed = time.perf_counter() - start
        tg.cancel_scope.cancel()
    store.close()
    return done / elapsed, len(rounds)


def bench_commits(seconds: float) -> None:
    for committers in (1, 8, 64):
        with tempfile.TemporaryDirectory() as tmp:
            rate, rounds = anyio.run(_commits, Path(tmp), committers, seconds)
        print(
            f"commits durable: {committers:3d} committers  {rate:9.0f} commits/s"
            f"  ({rounds} fsync rounds)"
        )


def bench_stabilise() -> None:
    from confluent_kafka import Consumer
    from confluent_kafka.admin import AdminClient, NewTopic

    with tempfile.TemporaryDirectory() as tmp:
        ready = Path(tmp) / "ready.json"
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
                f"{tmp}/data",
                "--ready-file",
                str(ready),
                "--log-format",
                "json",
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 20
            while not ready.exists() and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(0.05)
            info = json.loads(ready.read_text())
            port = next(iter(info["kafka"].values()))["port"]
            bootstrap = f"127.0.0.1:{port}"
            admin = AdminClient({"bootstrap.servers": bootstrap})
            for f in admin.create_topics([NewTopic("bench", 6, 1)]).values():
                f.result(10)
            owners: dict[int, set[int]] = {}
            consumers = []
            for i in range(3):

                def on_assign(c: object, parts: list, i: int = i) -> None:
                    owners[i] = {p.partition for p in parts}

                c = Consumer(
                    {
                        "bootstrap.servers": bootstrap,
                        "group.id": "bench",
                        "session.timeout.ms": 6000,
                        "heartbeat.interval.ms": 200,
                    }
                )
                c.subscribe(["bench"], on_assign=on_assign)
                consumers.append(c)
            start = time.perf_counter()
            while time.perf_counter() - start < 30:
                for c in consumers:
                    c.poll(0.005)
                parts = sorted(p for s in owners.values() for p in s)
                if (
                    len(owners) == 3
                    and all(owners.values())
                    and parts == list(range(6))
                ):
                    break
            took = time.perf_counter() - start
            print(
                f"3 consumers / 6 partitions stable after {took:.2f} s"
                " (librdkafka, heartbeat.interval.ms=200)"
            )
            for c in consumers:
                c.close()
        finally:
            proc.terminate()
            proc.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    bench_commits(args.seconds)
    bench_stabilise()


if __name__ == "__main__":
    main()
