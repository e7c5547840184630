"""Fixtures of the cluster tests: a real etcd per test (free ports, own data dir)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.etcd import ETCD, EtcdProcess


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    """One event loop for every async cluster test: grpc's asyncio completion
    queue stays bound to the loop it started on while any channel is open, so a
    loop per test would hand a later test's gRPC events to a closed loop."""
    return "asyncio"


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[EtcdProcess]:
    """A running etcd, killed at the end of the test."""
    if not Path(ETCD).exists():
        pytest.skip("etcd is not installed (make test installs etcd-server)")
    e = EtcdProcess(tmp_path / "etcd", tmp_path / "etcd.log")
    try:
        e.start()
        yield e
    finally:
        e.kill()
