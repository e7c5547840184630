"""Descriptor limit, partition caps, capped auto-create, creates off the event loop,
and accept() errors (EMFILE) that the broker survives."""

from __future__ import annotations

import os
import resource
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from protocol.error_codes import ErrorCode
from protocol.messages.api_versions import ApiVersionsRequest, ApiVersionsResponse
from protocol.messages.create_partitions import (
    CreatePartitionsRequest,
    CreatePartitionsResponse,
    CreatePartitionsTopic,
)
from protocol.messages.create_topics import (
    CreatableTopic,
    CreateTopicsRequest,
    CreateTopicsResponse,
)
from protocol.messages.describe_cluster import (
    DescribeClusterRequest,
    DescribeClusterResponse,
)
from protocol.messages.metadata import (
    MetadataRequest,
    MetadataRequestTopic,
    MetadataResponse,
)
from tests._broker import BrokerProcess, request

pytestmark = pytest.mark.integration

Factory = Callable[..., BrokerProcess]


def create_topics(
    sock: socket.socket, topics: dict[str, int], *, timeout_ms: int = 60_000
) -> dict[str, tuple[int, str | None]]:
    resp = request(
        sock,
        19,
        5,
        CreateTopicsRequest(
            topics=tuple(
                CreatableTopic(name=n, num_partitions=p, replication_factor=1)
                for n, p in topics.items()
            ),
            timeout_ms=timeout_ms,
        ),
    )
    assert isinstance(resp, CreateTopicsResponse)
    return {t.name: (t.error_code, t.error_message) for t in resp.topics}


def create_partitions(sock: socket.socket, topic: str, count: int) -> tuple[int, str]:
    resp = request(
        sock,
        37,
        2,
        CreatePartitionsRequest(
            topics=(CreatePartitionsTopic(name=topic, count=count),),
            timeout_ms=30_000,
        ),
    )
    assert isinstance(resp, CreatePartitionsResponse)
    [result] = resp.results
    return result.error_code, result.error_message or ""


def metadata(
    sock: socket.socket, names: list[str], *, auto_create: bool = True
) -> dict[str, int]:
    resp = request(
        sock,
        3,
        9,
        MetadataRequest(
            topics=tuple(MetadataRequestTopic(name=n) for n in names),
            allow_auto_topic_creation=auto_create,
        ),
    )
    assert isinstance(resp, MetadataResponse)
    return {str(t.name): t.error_code for t in resp.topics}


def api_versions(sock: socket.socket) -> None:
    resp = request(sock, 18, 3, ApiVersionsRequest())
    assert isinstance(resp, ApiVersionsResponse)
    assert resp.error_code == ErrorCode.NONE


def topic_dirs(b: BrokerProcess) -> set[str]:
    return {p.name for p in (b.data_dir / "kafka").iterdir()}


def wait_for(cond: Callable[[], object], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@contextmanager
def soft_nofile(limit: int) -> Iterator[None]:
    """Run with a lower soft descriptor limit (inherited by brokers started)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def nofile_of(pid: int) -> tuple[int, int]:
    return resource.prlimit(pid, resource.RLIMIT_NOFILE)


def test_start_raises_the_soft_descriptor_limit_to_the_hard_one(
    broker_factory: Factory,
) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    with soft_nofile(512):
        b = broker_factory()
    soft_now, hard_now = nofile_of(b.proc.pid)
    assert hard_now == hard
    assert soft_now == hard if hard != resource.RLIM_INFINITY else soft_now > 512
    [event] = b.events("nofile_limit")
    assert event["soft_before"] == 512
    assert event["soft"] == soft_now
    [limits] = b.events("storage_limits")
    assert limits["max_partitions"] >= 1
    assert limits["max_open_segment_files"] >= 1


def test_partition_caps_refuse_creates_with_policy_violation(
    broker_factory: Factory,
) -> None:
    b = broker_factory(
        "--set",
        "ailurus.max.partitions=50",
        "--set",
        "ailurus.max.partitions.per.request=30",
    )
    with b.connect() as sock:
        results = create_topics(sock, {"a": 20, "b": 20})
        assert results["a"] == (ErrorCode.NONE, None)
        code, message = results["b"]
        assert code == ErrorCode.POLICY_VIOLATION
        assert message is not None
        assert "ailurus.max.partitions.per.request" in message
        assert create_topics(sock, {"c": 20})["c"] == (ErrorCode.NONE, None)
        code, message = create_topics(sock, {"d": 20})["d"]
        assert code == ErrorCode.POLICY_VIOLATION
        assert message is not None
        assert "ailurus.max.partitions" in message
        code, message = create_partitions(sock, "a", 31)
        assert code == ErrorCode.POLICY_VIOLATION
        assert "limit of 50" in message
        assert create_partitions(sock, "a", 30) == (ErrorCode.NONE, "")
        # The broker is full: auto-create counts against the cap as well.
        assert metadata(sock, ["auto"]) == {"auto": ErrorCode.POLICY_VIOLATION}
    assert topic_dirs(b) == {"a", "c"}
    assert len(list((b.data_dir / "kafka" / "a").glob("[0-9]*"))) == 30
    # A real client sees the refusal with its code and message.
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    future = admin.create_topics([NewTopic("e", 5, 1)])["e"]
    with pytest.raises(KafkaException) as raised:
        future.result(timeout=30)
    error = raised.value.args[0]
    assert error.code() == KafkaError.POLICY_VIOLATION
    assert "ailurus.max.partitions" in error.str()
    assert "e" not in topic_dirs(b)
    del admin


def test_auto_create_is_capped_per_request(broker_factory: Factory) -> None:
    b = broker_factory("--set", "ailurus.auto.create.topics.per.request=5")
    names = [f"auto-{i}" for i in range(12)]
    with b.connect() as sock:
        first = metadata(sock, names)
        created = [n for n in names if first[n] == ErrorCode.NONE]
        assert created == names[:5]
        assert all(first[n] == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION for n in names[5:])
        assert topic_dirs(b) == set(names[:5])
        second = metadata(sock, names)
        assert [n for n in names if second[n] == ErrorCode.NONE] == names[:10]
    assert len(topic_dirs(b)) == 10


def test_a_large_create_does_not_stall_other_clients(broker_factory: Factory) -> None:
    """ApiVersions on another connection while CreateTopics makes 2,000 partitions."""
    b = broker_factory()
    latencies: list[float] = []
    stop = threading.Event()

    def ping() -> None:
        with b.connect() as sock:
            while not stop.is_set() and len(latencies) < 100_000:
                started = time.perf_counter()
                api_versions(sock)
                latencies.append(time.perf_counter() - started)
                time.sleep(0.002)

    with b.connect() as sock:
        api_versions(sock)  # handler modules loaded before measuring
        create_topics(sock, {"warm": 1})
        pinger = threading.Thread(target=ping)
        pinger.start()
        try:
            wait_for(lambda: len(latencies) >= 5, "first pings")
            sock.settimeout(300)
            started = time.perf_counter()
            results = create_topics(sock, {f"big-{i}": 100 for i in range(20)})
            took = time.perf_counter() - started
        finally:
            stop.set()
            pinger.join(timeout=30)
    assert all(r == (ErrorCode.NONE, None) for r in results.values())
    assert len(topic_dirs(b)) == 21
    during = sorted(latencies[5:])
    assert len(during) >= 20, f"only {len(during)} pings during a {took:.1f}s create"
    p99 = during[int(len(during) * 0.99) - 1]
    print(f"create {took:.1f}s, {len(during)} pings, p99 {p99 * 1000:.1f} ms")
    assert p99 < 0.050, f"ApiVersions p99 {p99 * 1000:.1f} ms during the create"


def test_accept_errors_are_survived_and_a_failed_create_leaves_nothing(
    broker_factory: Factory,
) -> None:
    """EMFILE in the broker: the listeners back off and recover; a create that runs
    out of descriptors part-way is refused whole."""
    b = broker_factory()
    pid = b.proc.pid
    soft, hard = nofile_of(pid)
    with b.connect() as keep:
        api_versions(keep)
        create_topics(keep, {"before": 1})
        # Metadata's codec is imported on first use, and an import needs a
        # descriptor: load it now, or a Metadata request made while none is left
        # closes this connection (as tested below for any handler that cannot load).
        assert metadata(keep, ["before"], auto_create=False) == {
            "before": ErrorCode.NONE
        }
        in_use = len(os.listdir(f"/proc/{pid}/fd"))
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (in_use + 2, hard))
        extra: list[socket.socket] = []
        try:
            extra.extend(
                socket.create_connection((b.host, port), timeout=10)
                for port in [b.port] * 8 + [b.admin_port] * 3
            )
            wait_for(
                lambda: (
                    {e["listener"] for e in b.events("accept_failed")}
                    >= {"default", "admin"}
                ),
                "accept_failed on both listeners",
            )
            for s in extra:
                s.close()
            # The open connection still works; a create needing more descriptors
            # than there are fails whole.
            code, message = create_topics(keep, {"wide": 200})["wide"]
            assert code == ErrorCode.KAFKA_STORAGE_ERROR
            assert message is not None
            assert "Too many open files" in message
            # Its directory is gone, or (when even removing it ran out of
            # descriptors) left without a manifest: not a topic, and removed by
            # the next create of that name or the next start.
            assert not (b.data_dir / "kafka" / "wide" / "topic.json").exists()
            assert metadata(keep, ["wide"], auto_create=False) == {
                "wide": ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            }
        finally:
            for s in extra:
                s.close()
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
        assert create_topics(keep, {"wide": 200})["wide"] == (ErrorCode.NONE, None)
    assert b.proc.poll() is None
    wait_for(lambda: b.events("accept_resumed"), "accept_resumed")
    with b.connect() as sock:
        api_versions(sock)
        assert metadata(sock, ["before", "wide"]) == {
            "before": ErrorCode.NONE,
            "wide": ErrorCode.NONE,
        }
    status, _ = b.http("/v1/status/ready")
    assert status == 200


def test_a_request_that_cannot_load_its_handler_closes_only_its_connection(
    broker_factory: Factory,
) -> None:
    """DescribeCluster's schema and handler load on first use; with no descriptor
    left to read their modules, that connection is closed and the broker goes on."""
    b = broker_factory()
    pid = b.proc.pid
    soft, hard = nofile_of(pid)
    with b.connect() as sock:
        api_versions(sock)
        resource.prlimit(
            pid, resource.RLIMIT_NOFILE, (len(os.listdir(f"/proc/{pid}/fd")), hard)
        )
        try:
            with pytest.raises((ConnectionError, OSError)):
                request(sock, 60, 0, DescribeClusterRequest())
        finally:
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
    wait_for(lambda: b.events("handler_failed"), "handler_failed")
    [failed] = b.events("handler_failed")
    assert "Too many open files" in failed["exception"]
    assert b.proc.poll() is None
    with b.connect() as sock:
        resp = request(sock, 60, 0, DescribeClusterRequest())
        assert isinstance(resp, DescribeClusterResponse)
        assert resp.error_code == ErrorCode.NONE
