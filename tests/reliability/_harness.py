"""Shared helpers of the reliability tests: start the broker, speak raw Kafka, read logs.

The broker runs as ``python -m broker serve`` (the real command line, with
``AILURUS_FAULTS`` passed through when a test injects faults) on 127.0.0.1.
Tests that restart a broker under live clients need the clients' bootstrap address
to survive the restart, so ``tests._broker.free_port`` asks the OS for a free port
(bind to port 0) and :func:`launch` re-binds it (SO_REUSEADDR) on every restart.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from protocol.messages.create_topics import (
    CreatableTopic,
    CreatableTopicConfig,
    CreateTopicsRequest,
    CreateTopicsResponse,
)
from protocol.messages.fetch import (
    FetchPartition,
    FetchRequest,
    FetchResponse,
    FetchTopic,
)
from protocol.messages.produce import (
    PartitionProduceData,
    ProduceRequest,
    ProduceResponse,
    TopicProduceData,
)
from protocol.record_builder import Record, RecordInput, build_batch, iter_records
from protocol.records import read_header, verify_batch
from tests._broker import BrokerProcess, start_broker
from tests._broker import request as raw_request


def launch(
    work: Path,
    *args: str,
    data_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
    port: int = 0,
    timeout: float = 30,
) -> BrokerProcess:
    """Start the broker (``serve``) in ``work`` and wait for its ready file."""
    return start_broker(
        data_dir or work / "data",
        *args,
        log_dir=work / "logs",
        env=env,
        port=port,
        timeout=timeout,
    )


def request(sock: socket.socket, api_key: int, version: int, body: object) -> object:
    """Send one request and read its response (raw protocol, blocking socket)."""
    return raw_request(sock, api_key, version, body, client_id="reliability")


def create_topic(
    b: BrokerProcess, name: str, partitions: int, configs: Mapping[str, str] = {}
) -> None:
    """CreateTopics v5; fails the test on any error code."""
    with b.connect() as sock:
        resp = request(
            sock,
            19,
            5,
            CreateTopicsRequest(
                topics=(
                    CreatableTopic(
                        name=name,
                        num_partitions=partitions,
                        replication_factor=1,
                        configs=tuple(
                            CreatableTopicConfig(name=k, value=v)
                            for k, v in configs.items()
                        ),
                    ),
                ),
                timeout_ms=10_000,
            ),
        )
    assert isinstance(resp, CreateTopicsResponse)
    assert resp.topics[0].error_code == 0, resp


def produce(
    sock: socket.socket,
    topic: str,
    partition: int,
    values: Iterable[bytes],
    *,
    acks: int = -1,
    timeout_ms: int = 10_000,
) -> tuple[int, int]:
    """Produce one batch (v9); returns (error_code, base_offset)."""
    batch = build_batch([RecordInput(value=v) for v in values])
    resp = request(
        sock,
        0,
        9,
        ProduceRequest(
            acks=acks,
            timeout_ms=timeout_ms,
            topic_data=(
                TopicProduceData(
                    name=topic,
                    partition_data=(
                        PartitionProduceData(index=partition, records=batch),
                    ),
                ),
            ),
        ),
    )
    assert isinstance(resp, ProduceResponse)
    part = resp.responses[0].partition_responses[0]
    return part.error_code, part.base_offset


def fetch_once(
    sock: socket.socket,
    topic: str,
    partition: int,
    offset: int,
    max_bytes: int = 1 << 20,
) -> tuple[int, int, list[Record]]:
    """One Fetch (v11, no wait): (error_code, high_watermark, records); CRCs checked."""
    resp = request(
        sock,
        1,
        11,
        FetchRequest(
            max_wait_ms=0,
            min_bytes=0,
            max_bytes=max_bytes,
            isolation_level=0,
            session_id=0,
            session_epoch=-1,
            topics=(
                FetchTopic(
                    topic=topic,
                    partitions=(
                        FetchPartition(
                            partition=partition,
                            fetch_offset=offset,
                            partition_max_bytes=max_bytes,
                        ),
                    ),
                ),
            ),
        ),
    )
    assert isinstance(resp, FetchResponse)
    data = resp.responses[0].partitions[0]
    raw = data.records
    buf = (
        b"".join(bytes(x) for x in raw) if isinstance(raw, tuple) else bytes(raw or b"")
    )
    return data.error_code, data.high_watermark, records_of(buf, partial_ok=True)


def records_of(buf: bytes, *, partial_ok: bool = False) -> list[Record]:
    """Every record of the batches in ``buf``, each batch's CRC verified."""
    out: list[Record] = []
    pos = 0
    while pos < len(buf):
        if len(buf) - pos < 61:
            assert partial_ok, f"{len(buf) - pos} stray bytes at {pos}"
            break
        size = read_header(buf, pos).batch_length + 12
        if pos + size > len(buf):
            assert partial_ok, f"torn batch at {pos}"
            break
        verify_batch(buf, pos)
        out.extend(iter_records(buf, pos))
        pos += size
    return out


def fetch_all(b: BrokerProcess, topic: str, partition: int) -> tuple[int, list[Record]]:
    """Every record below the high watermark: (high_watermark, records)."""
    out: list[Record] = []
    offset = 0
    with b.connect() as sock:
        while True:
            code, hw, recs = fetch_once(sock, topic, partition, offset)
            assert code == 0, f"fetch {topic}-{partition}@{offset}: error {code}"
            recs = [r for r in recs if r.offset >= offset]
            out.extend(recs)
            if recs:
                offset = recs[-1].offset + 1
            if offset >= hw or not recs:
                return hw, out


def read_log_offline(data_dir: Path, topic: str, partition: int) -> list[Record]:
    """Every record in a stopped broker's segment files; every batch CRC-verified."""
    pdir = data_dir / "kafka" / topic / str(partition)
    out: list[Record] = []
    for seg in sorted(pdir.glob("*.log")):
        out.extend(records_of(seg.read_bytes()))
    return out


def metric(b: BrokerProcess, name: str, labels: str = "") -> float | None:
    """One sample from ``GET /metrics`` (None if absent)."""
    status, body = b.http("/metrics")
    assert status == 200
    pattern = re.escape(name) + (r"\{" + re.escape(labels) + r"\}" if labels else "")
    m = re.search(r"^" + pattern + r" (\S+)$", body.decode(), re.MULTILINE)
    return None if m is None else float(m[1])


def rss_bytes(pid: int) -> int:
    """Resident set size of a process (from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def wait_for(
    cond: Callable[[], object], timeout: float, what: str, step: float = 0.05
) -> None:
    """Poll ``cond()`` until true (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(step)
    raise AssertionError(f"timed out waiting for {what}")
