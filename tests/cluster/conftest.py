"""Fixtures of the cluster tests: a real etcd per test (free ports, own data dir)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.etcd import ETCD, EtcdProcess


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
