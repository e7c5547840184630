"""Fixtures for replica fetcher tests: a real leader broker, follower logs in-process.

The leader is ``python -m broker serve`` on 127.0.0.1 (port 0 unless a test restarts
it on the same port); the follower is a :class:`LogManager` opened in the test's own
temp dir, written by a :class:`ReplicaFetcher` running in the test's event loop.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import anyio
import pytest
import structlog

from broker.replication.fetch_round import (
    FetcherSettings,
    PartitionProgress,
    TopicPartition,
)
from broker.replication.fetcher import ReplicaFetcher
from broker.replication.follower_log import ProducerStates
from protocol.error_codes import ErrorCode
from storage.log_manager import LogManager
from storage.partition_log import PartitionLog
from tests._broker import BrokerProcess, start_broker

LeaderFactory = Callable[..., BrokerProcess]


@pytest.fixture
def leader_factory(tmp_path: Path) -> Iterator[LeaderFactory]:
    """Start leader brokers (``port`` to reuse one); all are killed at the end."""
    started: list[BrokerProcess] = []

    def factory(data_dir: Path | None = None, port: int = 0) -> BrokerProcess:
        b = start_broker(
            data_dir or tmp_path / "leader", log_dir=tmp_path / "logs", port=port
        )
        started.append(b)
        return b

    try:
        yield factory
    finally:
        for b in started:
            if b.proc.poll() is None:
                b.kill()


@pytest.fixture
def follower(tmp_path: Path) -> Iterator[LogManager]:
    """The follower's data dir, opened in-process."""
    logs = LogManager(tmp_path / "follower")
    try:
        yield logs
    finally:
        logs.close()


def all_bytes(plog: PartitionLog, start: int | None = None) -> bytes:
    """Every batch of a log from ``start`` (default: its log start), as stored."""
    out = bytearray()
    offset = plog.log_start_offset if start is None else start
    while offset < plog.log_end_offset:
        result = plog.read(offset, 1 << 30)
        out += b"".join(bytes(b) for b in result.buffers)
        offset = result.next_offset
    return bytes(out)


class Stops:
    """The fetcher's stop callback, recorded."""

    def __init__(self) -> None:
        self.calls: list[tuple[TopicPartition, ErrorCode]] = []

    def __call__(self, tp: TopicPartition, code: ErrorCode) -> None:
        self.calls.append((tp, code))


def make_fetcher(
    leader: BrokerProcess | tuple[str, int],
    stops: Stops,
    *,
    producers: ProducerStates | None = None,
    **settings: object,
) -> ReplicaFetcher:
    """A fetcher of node 2 from the leader (a broker or an address), with quick
    back-offs for tests (``producers``: the producer state it keeps)."""
    host, port = leader if isinstance(leader, tuple) else (leader.host, leader.port)
    quick = FetcherSettings(
        max_wait_ms=100, backoff_initial_s=0.05, backoff_max_s=0.2, request_timeout_s=5
    )
    return ReplicaFetcher(
        node_id=2,
        leader_id=1,
        host=host,
        port=port,
        on_stop=stops,
        settings=replace(quick, **settings),
        producers=producers,
    )


async def wait_for(cond: Callable[[], bool], within_s: float) -> None:
    """Return once ``cond()`` holds (checked every 20 ms); fail after ``within_s``."""
    with anyio.fail_after(within_s):
        for _ in itertools.count():
            if cond():
                return
            await anyio.sleep(0.02)


async def run_until(
    fetcher: ReplicaFetcher, done: Callable[[], bool], within_s: float = 15
) -> None:
    """Run ``fetcher`` until ``done()`` holds, then stop it."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(fetcher.run)
        await wait_for(done, within_s)
        tg.cancel_scope.cancel()


def caught_up(progress: PartitionProgress | None, end: int) -> bool:
    """The partition reached ``end`` and saw the leader's high watermark there."""
    return progress is not None and progress.fetch_offset >= end and progress.caught_up


@pytest.fixture(autouse=True)
def _structlog_defaults() -> None:
    """Start from structlog's defaults: these tests read log events with
    ``structlog.testing.capture_logs``, which cannot see a logger first used under
    a configuration that caches loggers, as a CLI command run in-process by an
    earlier test leaves it."""
    structlog.reset_defaults()
