"""Fixtures of the cluster tests: a real etcd per test (free ports, own data dir).

A missing etcd fails the test and says how to install it: these are the cluster's
real tests, and a skipped one would let a run pass that proved nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.etcd import EtcdProcess, missing_etcd


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
