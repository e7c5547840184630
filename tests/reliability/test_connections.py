"""Clients that vanish, churn, or sit idle by the thousand: memory bounded, others served.

- Clients vanish mid-request (half a frame, a size prefix only, an RST) and
  mid-response (a 1 MiB fetch or 50 pipelined requests, then an RST before reading).
- 1,000 connections are opened and dropped in a loop (half send a request first).
- 10,000 idle connections are held open (RLIMIT_NOFILE raised to fit both ends).

Throughout, a separate client produces and fetches with normal latency, the broker's
open-connection gauge returns to where it was, and its RSS stays bounded: at most
``IDLE_RSS_BOUND`` more for the 10,000 idle connections and ``CHURN_RSS_BOUND`` after
the churn (figures reported in docs/reliability.md).
"""

from __future__ import annotations

import contextlib
import resource
import socket
import struct
import time
from pathlib import Path

import pytest

from protocol.codec import encode_request
from protocol.headers import RequestHeader
from protocol.messages.api_versions import ApiVersionsRequest
from tests.reliability._harness import (
    BrokerProcess,
    create_topic,
    fetch_all,
    fetch_once,
    launch,
    metric,
    produce,
    rss_bytes,
    wait_for,
)

MIB = 1024 * 1024
IDLE = 10_000
IDLE_RSS_BOUND = 120 * MIB  # measured ≈ see docs/reliability.md
CHURN_RSS_BOUND = 24 * MIB

API_VERSIONS = encode_request(
    RequestHeader(
        request_api_key=18, request_api_version=3, correlation_id=1, client_id="c"
    ),
    ApiVersionsRequest(client_software_name="c", client_software_version="1"),
)


def _rst_close(sock: socket.socket) -> None:
    """Close with an RST (SO_LINGER 0), as a crashed client's kernel does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _served(b: BrokerProcess, topic: str, n: int) -> float:
    """Produce one record and fetch it back; returns the round trip in seconds."""
    start = time.monotonic()
    with b.connect() as sock:
        code, offset = produce(sock, topic, 0, [b"alive-%d" % n])
        assert code == 0
        code, _, records = fetch_once(sock, topic, 0, offset)
        assert code == 0
        assert records[0].value == b"alive-%d" % n
    return time.monotonic() - start


def _connections(b: BrokerProcess) -> float:
    value = metric(b, "ailurus_connections_active")
    assert value is not None
    return value


def test_clients_vanishing_mid_request_and_mid_response(tmp_path: Path) -> None:
    """Half frames, RSTs and unread responses cost only their own connection."""
    b = launch(tmp_path)
    create_topic(b, "vanish", 1)
    with b.connect() as sock:
        assert produce(sock, "vanish", 0, [b"x" * 100_000] * 10)[0] == 0
    for i in range(50):
        s = b.connect()
        kind = i % 5
        if kind == 0:  # half a frame
            s.sendall(API_VERSIONS[: len(API_VERSIONS) // 2])
        elif kind == 1:  # a size prefix promising 1 MiB that never comes
            s.sendall(struct.pack(">i", MIB))
        elif kind == 2:  # a big response nobody reads
            req = _fetch_frame()
            s.sendall(req)
        elif kind == 3:  # 50 pipelined requests, then gone
            s.sendall(API_VERSIONS * 50)
        else:  # mid-request then a plain FIN
            s.sendall(API_VERSIONS[:7])
            s.close()
            continue
        _rst_close(s)
    assert _served(b, "vanish", 0) < 2
    wait_for(lambda: _connections(b) == 0, 10, "connections to drain")
    assert b.proc.poll() is None
    assert b.stop() == 0


def _fetch_frame() -> bytes:
    from protocol.messages.fetch import FetchPartition, FetchRequest, FetchTopic

    return encode_request(
        RequestHeader(
            request_api_key=1, request_api_version=11, correlation_id=9, client_id="v"
        ),
        FetchRequest(
            max_wait_ms=0,
            min_bytes=0,
            max_bytes=4 * MIB,
            isolation_level=0,
            session_id=0,
            session_epoch=-1,
            topics=(
                FetchTopic(
                    topic="vanish",
                    partitions=(
                        FetchPartition(
                            partition=0, fetch_offset=0, partition_max_bytes=4 * MIB
                        ),
                    ),
                ),
            ),
        ),
    )


def test_thousand_connections_churn_without_leaking(tmp_path: Path) -> None:
    """1,000 connect/drop cycles leave no connection behind and RSS bounded."""
    b = launch(tmp_path)
    create_topic(b, "churn", 1)
    _served(b, "churn", 0)
    rss_before = rss_bytes(b.proc.pid)
    for i in range(1000):
        s = socket.create_connection((b.host, b.port), timeout=10)
        if i % 2:
            s.sendall(API_VERSIONS)
        if i % 3 == 0:
            _rst_close(s)
        else:
            s.close()
        if i % 250 == 0:
            assert _served(b, "churn", i) < 2
    wait_for(lambda: _connections(b) == 0, 15, "connections to drain")
    grown = rss_bytes(b.proc.pid) - rss_before
    print(f"churn: 1000 connections, rss grew {grown / MIB:.1f} MiB")
    assert grown < CHURN_RSS_BOUND
    total = metric(b, "ailurus_connections_accepted_total")
    assert total is not None
    assert total >= 1000
    assert len(fetch_all(b, "churn", 0)[1]) == 5
    assert b.stop() == 0


@pytest.mark.timeout(180)
def test_ten_thousand_idle_connections_bounded_memory_others_served(
    tmp_path: Path,
) -> None:
    """10,000 idle connections are held with bounded RSS while another client is served."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = IDLE + 1000  # each process holds one end
    if hard < want:
        # Use what the machine allows if it refuses (asserted below).
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
    else:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    target = min(IDLE, limit - 500)
    socks: list[socket.socket] = []
    b = launch(tmp_path, "--set", f"max.connections={IDLE + 100}")
    try:
        create_topic(b, "idle", 1)
        _served(b, "idle", 0)
        rss_before = rss_bytes(b.proc.pid)
        started = time.monotonic()
        for i in range(target):
            socks.append(socket.create_connection((b.host, b.port), timeout=10))
            if i % 2000 == 1999:
                assert _served(b, "idle", i) < 5  # served while connections pile up
        opened_s = time.monotonic() - started
        wait_for(lambda: _connections(b) >= target, 30, "all connections accepted")
        held_rss = rss_bytes(b.proc.pid)
        worst = max(_served(b, "idle", 100_000 + i) for i in range(20))
        print(
            f"idle: {target} connections held (RLIMIT_NOFILE {limit}), opened in "
            f"{opened_s:.1f}s, rss {rss_before / MIB:.1f} -> {held_rss / MIB:.1f} MiB "
            f"(+{(held_rss - rss_before) / target:.0f} B/conn), worst round trip "
            f"{worst * 1000:.1f} ms"
        )
        assert target == IDLE, f"only {target} connections fit RLIMIT_NOFILE {limit}"
        assert held_rss - rss_before < IDLE_RSS_BOUND
        assert worst < 1.0
        for s in socks:
            s.close()
        socks.clear()
        wait_for(lambda: _connections(b) == 0, 60, "connections to drain")
        assert len(fetch_all(b, "idle", 0)[1]) == 1 + target // 2000 + 20
        assert b.stop() == 0
    finally:
        for s in socks:
            s.close()
        if b.proc.poll() is None:  # a failed assertion leaves it running
            b.kill()
