"""Hostile size prefixes: memory follows the bytes that arrive, and the broker-wide
budget for partly received frames pauses hogs without starving real clients.

The broker runs as ``python -m broker serve`` (tests/_broker.py); its memory is read
from /proc/PID/status (VmRSS). Hostile peers are raw sockets that send a 4-byte size
prefix claiming 100 MiB and then trickle; real traffic is kafka-python.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path

import kafka
import pytest
from kafka.structs import TopicPartition

from tests._broker import BrokerProcess

pytestmark = pytest.mark.integration

KIB = 1024
MIB = 1024 * KIB
CLAIM = 100 * MIB  # the default socket.request.max.bytes: accepted as a size


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * KIB
    raise AssertionError("no VmRSS")


def bytes_in(b: BrokerProcess) -> int:
    """The broker's ailurus_bytes_in_total counter."""
    status, body = b.http("/metrics")
    assert status == 200
    for line in body.decode().splitlines():
        if line.startswith("ailurus_bytes_in_total "):
            return int(float(line.split()[1]))
    raise AssertionError("no ailurus_bytes_in_total")


def wait_for(what: str, check: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def produce_and_consume(
    bootstrap: str, topic: str, values: list[bytes], *, max_bytes: int = MIB
) -> list[bytes]:
    """Produce ``values`` with acks=all, then read them back from the start."""
    producer = kafka.KafkaProducer(
        bootstrap_servers=bootstrap,
        max_request_size=max_bytes,
        request_timeout_ms=60_000,
    )
    try:
        futures = [producer.send(topic, value=v, partition=0) for v in values]
        for f in futures:
            f.get(timeout=60)
    finally:
        producer.close(timeout=10)
    consumer = kafka.KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        max_partition_fetch_bytes=max_bytes,
        fetch_max_bytes=max_bytes,
    )
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        got: list[bytes] = []
        deadline = time.monotonic() + 60
        while len(got) < len(values) and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                got += [r.value for r in records]
        return got
    finally:
        consumer.close()


def still_open(sock: socket.socket) -> bool:
    """The broker has not closed this connection (nothing to read, no EOF)."""
    sock.setblocking(False)
    try:
        return sock.recv(1) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.setblocking(True)


def test_claimed_sizes_are_not_allocated_and_clients_keep_working(
    broker_factory: Callable[..., BrokerProcess],
) -> None:
    """24 connections claiming 100 MiB frames and trickling a few KiB grow the
    broker's RSS by under 32 MiB, while kafka-python produces and consumes."""
    b = broker_factory()
    # warm up the paths the measured phase uses, so their code and caches count
    # in the baseline
    warm = [b"w" * 100 for _ in range(10)]
    assert produce_and_consume(b.bootstrap, "warm", warm) == warm
    before = rss_bytes(b.proc.pid)
    received_before = bytes_in(b)
    hostile = [b.connect() for _ in range(24)]
    try:
        for sock in hostile:
            sock.sendall(struct.pack(">i", CLAIM))
        for _ in range(4):  # 4 KiB each, 1 KiB at a time
            for sock in hostile:
                sock.sendall(b"t" * KIB)
            time.sleep(0.05)
        sent = 24 * (4 + 4 * KIB)
        wait_for("the trickle to arrive", lambda: bytes_in(b) - received_before >= sent)
        # every hog now holds a 100 MiB claim open: a real client still works
        values = [f"v{i}".encode() * 50 for i in range(50)]
        assert produce_and_consume(b.bootstrap, "beside-hogs", values) == values
        grown = rss_bytes(b.proc.pid) - before
        assert all(still_open(s) for s in hostile)
    finally:
        for sock in hostile:
            sock.close()
    assert grown < 32 * MIB, f"RSS grew {grown / MIB:.1f} MiB"
    assert b.proc.poll() is None


def test_a_large_produce_completes_while_hostile_connections_hold_the_budget(
    broker_factory: Callable[..., BrokerProcess],
) -> None:
    """With a 4 MiB budget held by peers trickling 100 MiB claims, an 8 MiB record
    (a frame twice the whole budget) is produced and consumed; closing the peers
    gives their share back."""
    b = broker_factory(
        "--set",
        f"ailurus.partial.frames.max.bytes={4 * MIB}",
        "--set",
        f"message.max.bytes={16 * MIB}",
        "--log-level",
        "debug",
    )
    hostile = [b.connect() for _ in range(6)]
    try:
        chunk = b"h" * (64 * KIB)
        for sock in hostile:
            sock.sendall(struct.pack(">i", CLAIM))
            sock.setblocking(False)
        # up to 1 MiB each: 6 MiB against a 4 MiB budget, so some must pause
        # (what a paused connection's socket buffers cannot take is not sent)
        deadline = time.monotonic() + 10
        for sock in hostile:
            sent = 0
            while sent < MIB and time.monotonic() < deadline:
                try:
                    sent += sock.send(chunk)
                except BlockingIOError:  # paused, and its socket buffers are full
                    time.sleep(0.01)
        wait_for(
            "hostile connections to pause",
            lambda: len({e["conn"] for e in b.events("frame_budget_pause")}) >= 2,
        )
        record = bytes(range(256)) * (8 * MIB // 256)
        got = produce_and_consume(b.bootstrap, "big", [record], max_bytes=16 * MIB)
        assert got == [record]
        # small requests kept flowing beside them too
        small = [b"s" * 10 for _ in range(5)]
        assert produce_and_consume(b.bootstrap, "small", small) == small
        assert all(still_open(s) for s in hostile)
    finally:
        for sock in hostile:
            with contextlib.suppress(OSError):
                sock.close()

    def released() -> bool:
        events = b.events("frame_budget_release")
        return len(events) >= len(hostile) and events[-1]["budget_used"] == 0

    wait_for("every hostile share to be given back", released)
    assert b.proc.poll() is None
