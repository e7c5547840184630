"""Transaction benchmarks: what transactions cost a producer and a consumer.

    .venv/bin/python bench/txn_bench.py [--records 100000] [--rounds 3]
        [--perf /work/shared/tools/rdkafka_performance]

One broker (``python -m broker serve``, a fresh data dir in a temp dir), then:

1. **Produce.** confluent-kafka in Python produces ``--records`` 1 KiB records
   (acks=all, idempotent, uncompressed, ``linger.ms=5``, an 8 MiB send queue so
   that producing is paced by the broker) to a fresh 3-partition
   topic, once without transactions and once transactional, committing every
   100 ms; rounds alternate the two. The Python client caps both (librdkafka's C
   load generator has no transactions), so the non-transactional case is also run
   with ``rdkafka_performance`` (idempotent, acks=all) for scale.
2. **Consume.** A 3-partition topic is filled by a transactional producer in
   transactions of 1,000 records, every fifth one aborted; then
   ``rdkafka_performance -C`` reads the whole log from the beginning with
   ``isolation.level=read_uncommitted`` and with ``read_committed``, alternating.
   Both read the same log; the figure is the log drained per second (records the
   log holds, aborted and markers aside, over the time to reach its end).

Prints one JSON line per run and a summary with medians and ratios: the ratio of
the medians, and the median of each round's ratio (its two cases ran back to back,
under the same load).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests._broker import BrokerProcess, start_broker

PERF = Path("/work/shared/tools/rdkafka_performance")
RECORD = b"x" * 1024
PARTITIONS = 3
TXN_RECORDS = 1000
ABORT_EVERY = 5
_PRODUCED = re.compile(r"(\d+) messages produced .*? (\d+) delivered.*? in (\d+)ms")
_CONSUMED = re.compile(r"(\d+) messages \((\d+) bytes\) consumed in (\d+)ms")


def _topic(broker: BrokerProcess, name: str) -> str:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(name, PARTITIONS, 1)])[name].result(60)
    return name


def _producer(broker: BrokerProcess, **extra: object) -> Producer:
    return Producer(
        {
            "bootstrap.servers": broker.bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "compression.type": "none",
            # A bounded queue (8 MiB) for both cases: produce() blocks once it is
            # full, so a transaction spans 100 ms of producing, not of enqueueing.
            "queue.buffering.max.kbytes": 8192,
            **extra,
        }
    )


def produce_plain(broker: BrokerProcess, topic: str, records: int) -> float:
    """Records/s of an idempotent confluent-kafka producer, no transactions."""
    producer = _producer(broker)
    producer.produce(topic, RECORD)  # warm: connection, metadata, producer id
    if producer.flush(60) != 0:
        raise RuntimeError("undelivered records")
    start = time.perf_counter()
    for _ in range(records):
        while True:
            try:
                producer.produce(topic, RECORD)
                break
            except BufferError:
                producer.poll(0.005)
    if producer.flush(120) != 0:
        raise RuntimeError("undelivered records")
    return records / (time.perf_counter() - start)


def produce_txn(
    broker: BrokerProcess, topic: str, records: int, commit_ms: float = 100.0
) -> tuple[float, int, float, float]:
    """Records/s of a transactional confluent-kafka producer committing every
    ``commit_ms``; how many transactions it committed, and the median times of a
    commit's two halves: flushing the queue, then commit_transaction() (EndTxn), ms."""
    producer = _producer(broker, **{"transactional.id": f"bench-{topic}"})
    producer.init_transactions(60)
    producer.begin_transaction()  # warm: connection, metadata, coordinator
    producer.produce(topic, RECORD)
    producer.commit_transaction(60)
    start = time.perf_counter()
    commits = 0
    sent = 0
    flush_s: list[float] = []
    end_s: list[float] = []
    while sent < records:
        producer.begin_transaction()
        until = time.perf_counter() + commit_ms / 1000
        while sent < records and time.perf_counter() < until:
            try:
                producer.produce(topic, RECORD)
                sent += 1
            except BufferError:
                producer.poll(0.005)
        began = time.perf_counter()
        if producer.flush(60) != 0:  # what commit_transaction() does first
            raise RuntimeError("undelivered records")
        flushed = time.perf_counter()
        producer.commit_transaction(60)
        flush_s.append(flushed - began)
        end_s.append(time.perf_counter() - flushed)
        commits += 1
    elapsed = time.perf_counter() - start
    return (
        records / elapsed,
        commits,
        statistics.median(flush_s) * 1000,
        statistics.median(end_s) * 1000,
    )


def perf_produce(perf: Path, broker: BrokerProcess, topic: str, records: int) -> float:
    """Records/s ``rdkafka_performance`` reports (idempotent, acks=all, 1 KiB)."""
    cmd = [
        str(perf),
        "-P",
        "-t",
        topic,
        "-b",
        broker.bootstrap,
        "-s",
        str(len(RECORD)),
        "-c",
        str(records),
        "-a",
        "-1",
        "-z",
        "none",
        "-X",
        "linger.ms=5",
        "-X",
        "enable.idempotence=true",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    found = _PRODUCED.findall(r.stdout)
    if r.returncode != 0 or not found:
        raise RuntimeError(f"rdkafka_performance failed:\n{r.stdout}\n{r.stderr}")
    _, delivered, ms = (int(x) for x in found[-1])
    if delivered != records:
        raise RuntimeError(f"{delivered} of {records} delivered:\n{r.stdout}")
    return records / (ms / 1000)


def fill_with_transactions(
    broker: BrokerProcess, topic: str, records: int
) -> tuple[int, int]:
    """``records`` records in transactions of TXN_RECORDS, every ABORT_EVERY-th
    aborted; (committed, aborted) record counts."""
    producer = _producer(broker, **{"transactional.id": f"fill-{topic}"})
    producer.init_transactions(60)
    committed = aborted = 0
    for n in range(0, records, TXN_RECORDS):
        size = min(TXN_RECORDS, records - n)
        producer.begin_transaction()
        for i in range(size):
            while True:
                try:
                    producer.produce(topic, RECORD, partition=(n + i) % PARTITIONS)
                    break
                except BufferError:
                    producer.poll(0.005)
        if (n // TXN_RECORDS) % ABORT_EVERY == ABORT_EVERY - 1:
            if producer.flush(60) != 0:
                raise RuntimeError("undelivered records")
            producer.abort_transaction(60)
            aborted += size
        else:
            producer.commit_transaction(60)
            committed += size
    return committed, aborted


def perf_consume(
    perf: Path, broker: BrokerProcess, topic: str, count: int, isolation: str
) -> float:
    """Seconds ``rdkafka_performance`` takes to consume ``count`` records of
    ``topic`` from the beginning with ``isolation``."""
    cmd = [str(perf), "-C", "-t", topic, "-b", broker.bootstrap]
    for p in range(PARTITIONS):
        cmd += ["-p", str(p)]
    cmd += ["-o", "beginning", "-c", str(count), "-q"]
    cmd += ["-X", f"isolation.level={isolation}"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    found = _CONSUMED.findall(r.stdout + r.stderr)
    if r.returncode != 0 or not found:
        raise RuntimeError(f"rdkafka_performance failed:\n{r.stdout}\n{r.stderr}")
    consumed, _, ms = (int(x) for x in found[-1])
    if consumed < count:
        raise RuntimeError(f"{consumed} of {count} consumed:\n{r.stdout}")
    return ms / 1000


def _emit(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--consume-records", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--perf", type=Path, default=PERF)
    parser.add_argument("--part", choices=["produce", "consume", "all"], default="all")
    args = parser.parse_args()
    if not os.access(args.perf, os.X_OK):
        sys.exit(f"{args.perf} is not an executable rdkafka_performance (--perf)")
    _emit(load_average=os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="txn-bench-") as tmp:
        broker = start_broker(Path(tmp) / "data", log_dir=Path(tmp) / "logs")
        try:
            summary: dict[str, object] = {}
            if args.part in ("produce", "all"):
                summary |= _produce_part(broker, args)
            if args.part in ("consume", "all"):
                summary |= _consume_part(broker, args)
            summary["load_average_end"] = os.getloadavg()
            _emit(summary=summary)
        finally:
            broker.stop()


def _produce_part(broker: BrokerProcess, args: argparse.Namespace) -> dict[str, object]:
    plain: list[float] = []
    txn: list[float] = []
    perf: list[float] = []
    for r in range(args.rounds):
        rps = produce_plain(broker, _topic(broker, f"plain-{r}"), args.records)
        plain.append(rps)
        _emit(case="python_plain", round=r, records_s=round(rps))
        rps, commits, flush_ms, end_ms = produce_txn(
            broker, _topic(broker, f"txn-{r}"), args.records
        )
        txn.append(rps)
        _emit(
            case="python_txn",
            round=r,
            records_s=round(rps),
            commits=commits,
            flush_ms=round(flush_ms, 1),
            end_txn_ms=round(end_ms, 1),
        )
        rps = perf_produce(args.perf, broker, _topic(broker, f"perf-{r}"), args.records)
        perf.append(rps)
        _emit(case="perf_plain", round=r, records_s=round(rps))
    return {
        "python_plain_records_s": round(statistics.median(plain)),
        "python_txn_records_s": round(statistics.median(txn)),
        "perf_plain_records_s": round(statistics.median(perf)),
        "txn_over_plain": round(statistics.median(txn) / statistics.median(plain), 3),
        # each round's two cases ran back to back, under the same load
        "txn_over_plain_per_round_median": round(
            statistics.median(t / p for t, p in zip(txn, plain, strict=True)), 3
        ),
    }


def _consume_part(broker: BrokerProcess, args: argparse.Namespace) -> dict[str, object]:
    topic = _topic(broker, "filled")
    committed, aborted = fill_with_transactions(broker, topic, args.consume_records)
    _emit(case="fill", committed=committed, aborted=aborted)
    total = committed + aborted
    unc: list[float] = []
    com: list[float] = []
    perf_consume(args.perf, broker, topic, total, "read_uncommitted")  # warm cache
    for r in range(args.rounds):
        # Alternate which isolation level goes first.
        order = ["read_uncommitted", "read_committed"][:: 1 if r % 2 == 0 else -1]
        for isolation in order:
            count = total if isolation == "read_uncommitted" else committed
            secs = perf_consume(args.perf, broker, topic, count, isolation)
            (unc if isolation == "read_uncommitted" else com).append(total / secs)
            _emit(
                case=isolation,
                round=r,
                log_records_s=round(total / secs),
                delivered_records_s=round(count / secs),
            )
    return {
        "read_uncommitted_log_records_s": round(statistics.median(unc)),
        "read_committed_log_records_s": round(statistics.median(com)),
        "committed_over_uncommitted": round(
            statistics.median(com) / statistics.median(unc), 3
        ),
        "committed_over_uncommitted_per_round_median": round(
            statistics.median(c / u for c, u in zip(com, unc, strict=True)), 3
        ),
    }


if __name__ == "__main__":
    main()
