"""Broker lifecycle: readiness, admin API, listeners, long poll, shutdown, crash durability."""

from __future__ import annotations

import contextlib
import json
import random
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from protocol.codec import decode_response, encode_request
from protocol.headers import RequestHeader
from protocol.messages.fetch import (
    FetchPartition,
    FetchRequest,
    FetchResponse,
    FetchTopic,
)
from protocol.messages.metadata import (
    MetadataRequest,
    MetadataRequestTopic,
    MetadataResponse,
)
from protocol.messages.produce import (
    PartitionProduceData,
    ProduceRequest,
    TopicProduceData,
)
from protocol.record_builder import RecordInput, build_batch, iter_records
from tests._broker import BrokerProcess, recv_frame

pytestmark = pytest.mark.integration


def _send(
    sock: socket.socket, api_key: int, version: int, body: object, corr: int = 1
) -> None:
    header = RequestHeader(
        request_api_key=api_key,
        request_api_version=version,
        correlation_id=corr,
        client_id="t",
    )
    sock.sendall(encode_request(header, body))


def _metadata(sock: socket.socket, topic: str | None = None) -> MetadataResponse:
    topics = None if topic is None else (MetadataRequestTopic(name=topic),)
    _send(sock, 3, 12, MetadataRequest(topics=topics, allow_auto_topic_creation=True))
    _, resp = decode_response(3, 12, recv_frame(sock))
    assert isinstance(resp, MetadataResponse)
    return resp


def _produce_one(broker: BrokerProcess, topic: str, value: bytes) -> None:
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    producer.produce(topic, value=value, partition=0)
    assert producer.flush(10) == 0


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, clock ticks


def test_admin_api_reports_ready_topics_and_metrics(broker: BrokerProcess) -> None:
    """The admin API serves readiness, topics with offsets, and Prometheus metrics."""
    assert broker.http("/v1/status/ready") == (200, b'{"status": "ready"}\n')
    _produce_one(broker, "adm", b"x")
    status, body = broker.http("/v1/topics/adm")
    assert status == 200
    topic = json.loads(body)
    assert topic["partitions"][0]["log_end_offset"] == 1
    assert topic["partitions"][0]["high_watermark"] == 1
    assert [t["name"] for t in json.loads(broker.http("/v1/topics")[1])] == ["adm"]
    assert broker.http("/v1/topics/nope")[0] == 404
    status, metrics = broker.http("/metrics")
    text = metrics.decode()
    assert status == 200
    assert 'ailurus_requests_total{api="produce"}' in text
    assert 'ailurus_request_latency_seconds_bucket{api="produce",le="+Inf"}' in text
    assert 'ailurus_partition_log_end_offset{topic="adm",partition="0"} 1' in text
    assert "ailurus_connections_active " in text


def test_long_poll_is_woken_by_an_append_and_idles_without_cpu(
    broker: BrokerProcess,
) -> None:
    """A Fetch waiting up to 10 s returns soon after a produce; while idle it uses no CPU."""
    with broker.connect() as sock:
        _metadata(sock, "lp")
    request = FetchRequest(
        max_wait_ms=10_000,
        min_bytes=1,
        max_bytes=1 << 20,
        topics=(
            FetchTopic(
                topic="lp",
                partitions=(
                    FetchPartition(
                        partition=0, fetch_offset=0, partition_max_bytes=1 << 20
                    ),
                ),
            ),
        ),
    )
    with broker.connect() as sock:
        _send(sock, 1, 11, request, corr=9)
        time.sleep(0.3)  # the fetch is parked now
        cpu_before = _cpu_seconds(broker.proc.pid)
        time.sleep(2.0)
        cpu_idle = _cpu_seconds(broker.proc.pid) - cpu_before
        started = time.monotonic()
        _produce_one(broker, "lp", b"wake up")
        sock.settimeout(10)
        header, resp = decode_response(1, 11, recv_frame(sock))
        elapsed = time.monotonic() - started
    assert header.correlation_id == 9
    assert isinstance(resp, FetchResponse)
    part = resp.responses[0].partitions[0]
    records = part.records
    assert isinstance(records, bytes | memoryview)
    assert [r.value for r in iter_records(records)] == [b"wake up"]
    assert part.high_watermark == 1
    assert elapsed < 3.0  # far below the 10 s max_wait
    assert cpu_idle < 0.1


def test_fetch_out_of_range_and_from_latest(broker: BrokerProcess) -> None:
    """Fetching past the log end gets OFFSET_OUT_OF_RANGE at once."""
    _produce_one(broker, "oor", b"a")
    request = FetchRequest(
        max_wait_ms=5000,
        min_bytes=1,
        topics=(
            FetchTopic(
                topic="oor",
                partitions=(
                    FetchPartition(
                        partition=0, fetch_offset=5, partition_max_bytes=1024
                    ),
                ),
            ),
        ),
    )
    with broker.connect() as sock:
        started = time.monotonic()
        _send(sock, 1, 11, request)
        _, resp = decode_response(1, 11, recv_frame(sock))
    assert isinstance(resp, FetchResponse)
    assert resp.responses[0].partitions[0].error_code == 1  # OFFSET_OUT_OF_RANGE
    assert time.monotonic() - started < 2


def test_several_listeners_advertise_their_own_addresses(
    broker_factory: Callable[..., BrokerProcess],
) -> None:
    """Metadata names the advertised address of the listener the client used."""
    b = broker_factory(
        "--kafka-addr",
        "internal://127.0.0.1:0,external://127.0.0.1:0",
        "--advertise-kafka-addr",
        "internal://broker.internal:9092",
    )
    internal, external = b.listeners["internal"], b.listeners["external"]
    with socket.create_connection(("127.0.0.1", int(internal["port"]))) as sock:
        brokers = _metadata(sock).brokers
        assert [(x.host, x.port) for x in brokers] == [("broker.internal", 9092)]
    with socket.create_connection(("127.0.0.1", int(external["port"]))) as sock:
        brokers = _metadata(sock).brokers
        assert [(x.host, x.port) for x in brokers] == [
            ("127.0.0.1", int(external["port"]))
        ]
    assert b.stop() == 0


def test_idle_connections_are_closed(
    broker_factory: Callable[..., BrokerProcess],
) -> None:
    """connections.max.idle.ms closes a connection that sends nothing."""
    b = broker_factory("--set", "connections.max.idle.ms=300")
    with b.connect() as sock:
        sock.settimeout(5)
        started = time.monotonic()
        assert sock.recv(1) == b""
        assert time.monotonic() - started < 3
    assert b.events("connection_idle_timeout")
    assert b.stop() == 0


def test_second_broker_on_the_same_data_dir_refuses_to_start(
    broker: BrokerProcess, broker_factory: Callable[..., BrokerProcess]
) -> None:
    """The data-dir lock makes a second broker exit 4 with a clear error."""
    with pytest.raises(
        RuntimeError, match=r"exited with 4:\nerror: data dir .* is locked by another"
    ):
        broker_factory(data_dir=broker.data_dir)


def test_graceful_shutdown_leaves_clean_marker_and_restart_skips_recovery(
    broker_factory: Callable[..., BrokerProcess], tmp_path: Path
) -> None:
    """SIGTERM exits 0 with the clean marker; the restart trusts the logs and keeps data."""
    b = broker_factory()
    for i in range(3):
        _produce_one(b, "keep", b"v%d" % i)
    assert b.stop() == 0
    assert (b.data_dir / ".clean_shutdown").exists()
    assert [e["event"] for e in b.logs()][-1] == "stopped"
    again = broker_factory(data_dir=b.data_dir)
    opened = again.events("storage_open")
    assert opened
    assert opened[0]["clean_start"] is True
    assert not again.events("recovery")
    consumer = Consumer(
        {
            "bootstrap.servers": again.bootstrap,
            "group.id": "g",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition("keep", 0, 0)])
    got: list[bytes] = []
    deadline = time.monotonic() + 10
    while len(got) < 3 and time.monotonic() < deadline:
        got += [m.value() for m in consumer.consume(10, timeout=1) if m.error() is None]
    consumer.close()
    assert got == [b"v0", b"v1", b"v2"]
    assert again.stop() == 0


def test_acknowledged_records_survive_sigkill(
    broker_factory: Callable[..., BrokerProcess], tmp_path: Path
) -> None:
    """acks=all records acknowledged before a SIGKILL are all there after restart, in order."""
    rng = random.Random(7)
    data_dir = tmp_path / "crash"
    acked: dict[int, bytes] = {}
    seq = 0
    for _round in range(3):
        b = broker_factory(data_dir=data_dir)
        producer = Producer(
            {
                "bootstrap.servers": b.bootstrap,
                "acks": "all",
                "linger.ms": 1,
                "message.timeout.ms": 3000,
                "retries": 0,
            }
        )

        def on_delivery(err: object, msg: object) -> None:
            if err is None:
                acked[msg.offset()] = msg.value()  # type: ignore[attr-defined]

        deadline = time.monotonic() + rng.uniform(0.3, 1.0)
        while time.monotonic() < deadline:
            producer.produce(
                "dur", value=b"r%08d" % seq, partition=0, on_delivery=on_delivery
            )
            seq += 1
            producer.poll(0)
            if seq % 200 == 0:
                time.sleep(0.001)
        b.kill()
        producer.flush(5)
    b = broker_factory(data_dir=data_dir)
    opened = b.events("storage_open")
    assert opened
    assert opened[0]["clean_start"] is False  # a crash: tails were re-verified
    consumer = Consumer(
        {"bootstrap.servers": b.bootstrap, "group.id": "g", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition("dur", 0, 0)])
    got: dict[int, bytes] = {}
    end = max(acked) + 1 if acked else 0
    deadline = time.monotonic() + 20
    while len(got) < end and time.monotonic() < deadline:
        for m in consumer.consume(1000, timeout=1):
            if m.error() is None:
                got[m.offset()] = m.value()
    consumer.close()
    assert acked, "nothing was acknowledged"
    for offset, value in acked.items():
        assert got.get(offset) == value
    offsets = sorted(got)
    assert offsets == list(range(len(offsets)))  # dense, nothing corrupt in between
    assert b.stop() == 0


def test_connection_limit_refuses_extra_connections(
    broker_factory: Callable[..., BrokerProcess],
) -> None:
    """max.connections: a connection beyond the limit is closed at once, others work."""
    b = broker_factory("--set", "max.connections=2")
    with b.connect() as one, b.connect() as two:
        time.sleep(0.2)
        with b.connect() as three:
            three.settimeout(5)
            with contextlib.suppress(ConnectionResetError):
                assert three.recv(1) == b""
        assert _metadata(one).brokers
        assert _metadata(two).brokers
    assert b.events("connection_rejected")
    assert b.stop() == 0


def test_a_client_that_never_reads_cannot_exhaust_memory(
    broker_factory: Callable[..., BrokerProcess],
) -> None:
    """With queued.max.request.bytes small, a pipelining client is paused, then served in order."""
    b = broker_factory(
        "--set", "queued.max.request.bytes=100000", "--log-level", "debug"
    )
    batch = build_batch([RecordInput(value=b"x" * 10_000)])
    with b.connect() as sock:
        _metadata(sock, "bp")
        frames = [
            encode_request(
                RequestHeader(
                    request_api_key=0,
                    request_api_version=9,
                    correlation_id=i,
                    client_id="bp",
                ),
                ProduceRequest(
                    acks=-1,
                    timeout_ms=30_000,
                    topic_data=(
                        TopicProduceData(
                            name="bp",
                            partition_data=(
                                PartitionProduceData(index=0, records=batch),
                            ),
                        ),
                    ),
                ),
            )
            for i in range(2000)
        ]
        payload = b"".join(frames)  # ~20 MB of acks=all produce requests
        sender_done: list[bool] = []

        def send_all() -> None:
            sock.sendall(payload)
            sender_done.append(True)

        t = threading.Thread(target=send_all)
        t.start()
        sock.settimeout(30)
        corrs = [struct.unpack_from(">i", recv_frame(sock))[0] for _ in range(2000)]
        t.join(30)
    rss_kib = int(
        next(
            line.split()[1]
            for line in Path(f"/proc/{b.proc.pid}/status").read_text().splitlines()
            if line.startswith("VmRSS")
        )
    )
    assert sender_done
    assert corrs == list(range(2000))
    assert b.events("backpressure_pause")
    assert rss_kib < 150 * 1024
    assert b.stop() == 0


def test_shutdown_answers_a_parked_long_poll_and_exits_promptly(
    broker_factory: Callable[..., BrokerProcess],
) -> None:
    """SIGTERM while a Fetch waits 30 s: the fetch is answered and the broker exits 0 fast."""
    b = broker_factory()
    with b.connect() as sock:
        _metadata(sock, "sd")
        request = FetchRequest(
            max_wait_ms=30_000,
            min_bytes=1,
            topics=(
                FetchTopic(
                    topic="sd",
                    partitions=(
                        FetchPartition(
                            partition=0, fetch_offset=0, partition_max_bytes=1024
                        ),
                    ),
                ),
            ),
        )
        _send(sock, 1, 11, request, corr=77)
        time.sleep(0.3)
        started = time.monotonic()
        b.proc.send_signal(signal.SIGTERM)
        sock.settimeout(10)
        header, resp = decode_response(1, 11, recv_frame(sock))
        assert header.correlation_id == 77
        assert isinstance(resp, FetchResponse)
        assert b.proc.wait(10) == 0
        assert time.monotonic() - started < 5
    assert (b.data_dir / ".clean_shutdown").exists()


def test_write_caching_topic_acknowledges_and_shows_records_before_fsync(
    broker: BrokerProcess,
) -> None:
    """A write.caching=true topic answers acks=all after the write and serves it at once."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    for fut in admin.create_topics(
        [NewTopic("wc", 1, 1, config={"write.caching": "true", "flush.ms": "100"})]
    ).values():
        fut.result(10)
    _produce_one(broker, "wc", b"cached")
    status, body = broker.http("/v1/topics/wc")
    part = json.loads(body)["partitions"][0]
    assert status == 200
    assert part["high_watermark"] == part["log_end_offset"] == 1
    deadline = time.monotonic() + 5
    while (
        json.loads(broker.http("/v1/topics/wc")[1])["partitions"][0]["durable_offset"]
        < 1
    ):
        assert time.monotonic() < deadline, "flush.ms never synced the partition"
        time.sleep(0.05)
