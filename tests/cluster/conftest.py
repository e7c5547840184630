"""Fixtures of the cluster tests: a real etcd per test (free ports, own data dir).

A missing etcd fails the test and says how to install it: these are the cluster's
real tests, and a skipped one would let a run pass that proved nothing.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
import structlog
from anyio.pytest_plugin import get_runner

from tests.cluster.e2e_cluster import Cluster
from tests.cluster.etcd import EtcdProcess, missing_etcd


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed test handed a real cluster reports each broker's exit status and
    log tail (a broker that died shows as such, not as a refused connection)."""
    report = yield
    if report.failed:
        for name, value in getattr(item, "funcargs", {}).items():
            if isinstance(value, Cluster):
                report.sections.append((f"cluster {name!r}", value.describe()))
    return report


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session", autouse=True)
def _one_event_loop(anyio_backend: str) -> Iterator[None]:
    """Hold anyio's test runner for the session: one event loop for every cluster
    test. A gRPC operation that completes after its test (the cancel of a watch
    stream) is delivered to the loop it started on, which a loop per test would
    have closed."""
    with get_runner(anyio_backend, {}):
        yield


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[EtcdProcess]:
    """A running etcd, killed at the end of the test."""
    if (why := missing_etcd()) is not None:
        pytest.fail(why, pytrace=False)
    e = EtcdProcess(tmp_path / "etcd", tmp_path / "etcd.log")
    try:
        e.start()
        yield e
    finally:
        e.kill()


@pytest.fixture(autouse=True)
def _structlog_defaults() -> None:
    """Start from structlog's defaults: these tests read log events with
    ``structlog.testing.capture_logs``, which cannot see a logger first used under
    a configuration that caches loggers, as a CLI command run in-process by an
    earlier test leaves it."""
    structlog.reset_defaults()
