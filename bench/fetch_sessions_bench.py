"""Fetch sessions (KIP-227) bench: a consumer of 1,000 partitions, with and without.

Run: ``python bench/fetch_sessions_bench.py [--partitions 1000] [--fetches 200]
[--markdown FILE]``.

One broker (``python -m broker serve``, fresh data dir) with one topic of N
partitions, one record in each. Two parts:

- raw Fetch v12 on one connection, the consumer caught up at every partition's end:
  ``--fetches`` fetches without a session (epoch -1: every request names every
  partition, every response answers every one) against the same number through a
  session (one full fetch, then incremental ones that name nothing), while a
  producer appends one record to each of ``--hot`` random partitions before each
  fetch (the consumer moves its offset on for those, as a client does). Bytes are
  whole frames (size prefix included); the time is the round trip of each fetch
  (``max_wait_ms`` 0), median and p99.
- kafka-python (the client here that implements KIP-227) assigned all partitions,
  polling after it caught up (20 fetches, at most ``--seconds``), with sessions
  (its default) and
  with ``api_version=(1, 0)`` (Fetch v6, before sessions): bytes in and out
  according to the broker's ``ailurus_bytes_{in,out}_total``, fetches per second
  (``ailurus_requests_total{api="fetch"}``). librdkafka (confluent-kafka) does not
  implement fetch sessions: its fetches always carry session epoch -1.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import random
import shutil
import socket
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaConsumer, TopicPartition

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the test suite's launcher, run as a script

from protocol.codec import decode_response, encode_request  # noqa: E402
from protocol.headers import RequestHeader  # noqa: E402
from protocol.messages.fetch import (  # noqa: E402
    FetchPartition,
    FetchRequest,
    FetchResponse,
    FetchTopic,
)
from tests._broker import BrokerProcess, recv_frame, start_broker  # noqa: E402

TOPIC = "bench-sessions"
FETCH_VERSION = 12


@dataclass
class RawRun:
    request_bytes: list[int]
    response_bytes: list[int]
    rtt_ms: list[float]
    answered: list[int]


def _fetch(
    sock: socket.socket,
    corr: int,
    session: tuple[int, int],
    offsets: dict[int, int],
) -> tuple[FetchResponse, int, int, float]:
    request = FetchRequest(
        max_wait_ms=0,
        min_bytes=1,
        isolation_level=0,
        session_id=session[0],
        session_epoch=session[1],
        topics=(
            FetchTopic(
                topic=TOPIC,
                partitions=tuple(
                    FetchPartition(
                        partition=p, fetch_offset=o, partition_max_bytes=1 << 20
                    )
                    for p, o in offsets.items()
                ),
            ),
        )
        if offsets
        else (),
        forgotten_topics_data=(),
        rack_id="",
    )
    header = RequestHeader(
        request_api_key=1,
        request_api_version=FETCH_VERSION,
        correlation_id=corr,
        client_id="bench",
    )
    frame = encode_request(header, request)
    started = time.perf_counter()
    sock.sendall(frame)
    body = recv_frame(sock)
    rtt = (time.perf_counter() - started) * 1000
    _, response = decode_response(1, FETCH_VERSION, body)
    assert isinstance(response, FetchResponse)
    assert response.error_code == 0, response.error_code
    return response, len(frame), len(body) + 4, rtt


def _answered(response: FetchResponse) -> dict[int, int]:
    return {
        p.partition_index: p.high_watermark
        for t in response.responses
        for p in t.partitions
    }


def raw_part(
    broker: BrokerProcess,
    producer: Producer,
    partitions: int,
    fetches: int,
    hot: int,
    sessions: bool,
) -> RawRun:
    rng = random.Random(7)
    run = RawRun([], [], [], [])
    with socket.create_connection((broker.host, broker.port)) as sock:
        # catch up: the consumer's offsets are the partitions' ends
        first, _, _, _ = _fetch(sock, 1, (0, -1), dict.fromkeys(range(partitions), 0))
        offsets = _answered(first)
        session = (0, -1)
        moved: dict[int, int] = {}
        if sessions:
            full, _, _, _ = _fetch(sock, 2, (0, 0), offsets)
            session = (full.session_id, 1)
            assert full.session_id != 0
        for i in range(fetches):
            for p in rng.sample(range(partitions), hot):
                producer.produce(TOPIC, value=b"x" * 100, partition=p)
            producer.flush(30)
            # with a session the request names only the partitions whose offset
            # moved since the last one (what kafka-python and the Java client do)
            send = moved if sessions else offsets
            response, req, resp, rtt = _fetch(sock, 10 + i, session, send)
            if sessions:
                session = (session[0], session[1] + 1)
            ends = _answered(response)
            run.request_bytes.append(req)
            run.response_bytes.append(resp)
            run.rtt_ms.append(rtt)
            run.answered.append(len(ends))
            moved = {p: hw for p, hw in ends.items() if hw != offsets.get(p)}
            offsets.update(moved)
    return run


def _metric(broker: BrokerProcess, prefix: str) -> float:
    """The value of the first exposed line starting with ``prefix``."""
    status, body = broker.http("/metrics")
    assert status == 200
    for line in body.decode().splitlines():
        if line.startswith(prefix):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _fetch_requests(broker: BrokerProcess) -> float:
    return _metric(broker, 'ailurus_requests_total{api="fetch"}')


def kafka_python_part(
    broker: BrokerProcess,
    partitions: int,
    seconds: float,
    sessions: bool,
    fetches: int = 20,
) -> dict[str, float]:
    extra = {} if sessions else {"api_version": (1, 0)}
    consumer = KafkaConsumer(
        bootstrap_servers=broker.bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=100,
        **extra,
    )
    try:
        consumer.assign([TopicPartition(TOPIC, p) for p in range(partitions)])
        deadline = time.monotonic() + 60
        quiet = 0
        while quiet < 3 and time.monotonic() < deadline:
            quiet = quiet + 1 if not consumer.poll(timeout_ms=300) else 0
        # settle (the session's full fetch, kafka-python's metadata) before counting
        settle = _fetch_requests(broker) + 5
        deadline = time.monotonic() + 120
        while _fetch_requests(broker) < settle and time.monotonic() < deadline:
            consumer.poll(timeout_ms=200)
        b_in = _metric(broker, "ailurus_bytes_in_total ")
        b_out = _metric(broker, "ailurus_bytes_out_total ")
        n = _fetch_requests(broker)
        started = time.monotonic()
        while (
            _fetch_requests(broker) - n < fetches
            and time.monotonic() - started < seconds
        ):
            consumer.poll(timeout_ms=200)
        elapsed = time.monotonic() - started
        done = _fetch_requests(broker) - n
        return {
            "fetches_per_s": done / elapsed,
            "bytes_in_per_fetch": (_metric(broker, "ailurus_bytes_in_total ") - b_in)
            / max(done, 1),
            "bytes_out_per_fetch": (_metric(broker, "ailurus_bytes_out_total ") - b_out)
            / max(done, 1),
        }
    finally:
        consumer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--partitions", type=int, default=1000)
    parser.add_argument("--fetches", type=int, default=200)
    parser.add_argument("--hot", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="fetch-sessions-bench-"))
    broker = start_broker(
        root / "data",
        "--log-level",
        "warning",
        "--set",
        f"ailurus.max.partitions.per.request={max(5000, args.partitions)}",
        log_dir=root,
    )
    try:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        for future in admin.create_topics(
            [NewTopic(TOPIC, args.partitions, 1)]
        ).values():
            future.result(timeout=120)
        producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
        for p in range(args.partitions):
            producer.produce(TOPIC, value=b"x" * 100, partition=p)
        producer.flush(60)
        raw = {
            mode: raw_part(
                broker, producer, args.partitions, args.fetches, args.hot, mode
            )
            for mode in (False, True)
        }
        kp = {
            mode: kafka_python_part(broker, args.partitions, args.seconds, mode)
            for mode in (False, True)
        }
    finally:
        broker.stop()
        shutil.rmtree(root, ignore_errors=True)

    def p99(xs: list[float]) -> float:
        return sorted(xs)[max(0, int(len(xs) * 0.99) - 1)]

    lines = [
        f"Measured {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; "
        f"{platform.machine()}, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f}; {args.partitions} partitions, "
        f"{args.fetches} fetches, {args.hot} partitions appended to before each.",
        "",
        "| raw Fetch v12, caught-up consumer | without session | with session | ratio |",
        "|---|---:|---:|---:|",
    ]
    no, yes = raw[False], raw[True]
    for label, a, b in (
        (
            "request bytes per fetch (median)",
            statistics.median(no.request_bytes),
            statistics.median(yes.request_bytes),
        ),
        (
            "response bytes per fetch (median)",
            statistics.median(no.response_bytes),
            statistics.median(yes.response_bytes),
        ),
        (
            "request bytes, all fetches",
            sum(no.request_bytes),
            sum(yes.request_bytes),
        ),
        (
            "response bytes, all fetches",
            sum(no.response_bytes),
            sum(yes.response_bytes),
        ),
        (
            "partitions answered per fetch (median)",
            statistics.median(no.answered),
            statistics.median(yes.answered),
        ),
        (
            "round trip, median (ms)",
            statistics.median(no.rtt_ms),
            statistics.median(yes.rtt_ms),
        ),
        ("round trip, p99 (ms)", p99(no.rtt_ms), p99(yes.rtt_ms)),
    ):
        ratio = b / a if a else float("nan")
        lines.append(f"| {label} | {a:,.1f} | {b:,.1f} | {ratio:.3f}× |")
    lines += [
        "",
        "| kafka-python 3.0, caught up, polling | Fetch v6 (no session) | sessions | ratio |",
        "|---|---:|---:|---:|",
    ]
    for key, label in (
        ("bytes_in_per_fetch", "request bytes per fetch (broker in)"),
        ("bytes_out_per_fetch", "response bytes per fetch (broker out)"),
        ("fetches_per_s", "fetches per second"),
    ):
        a, b = kp[False][key], kp[True][key]
        lines.append(f"| {label} | {a:,.1f} | {b:,.1f} | {b / a:.3f}× |")
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")


if __name__ == "__main__":
    main()
