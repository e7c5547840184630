"""Brokers started as users start them (``python -m broker serve``), plus helpers.

Every broker binds 127.0.0.1 port 0, scans data/snapshots every 200 ms and treats
files untouched for 700 ms as settled, so tests run in seconds.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests._broker import ROOT, BrokerProcess
from tests._broker import start_broker as _start_broker

ENV = {
    "AILURUS_SNAPSHOT_SCAN_INTERVAL_MS": "200",
    "AILURUS_SNAPSHOT_SETTLE_MS": "700",
}


class Broker(BrokerProcess):
    """A broker with the snapshot tests' views: CLI, snapshot statuses, partitions."""

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "broker",
                "--brokers",
                self.bootstrap,
                "--admin-url",
                self.admin_url,
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )
        if check and out.returncode != 0:
            raise AssertionError(f"ailurus {args} failed: {out.stderr}")
        return out

    def statuses(self) -> dict[str, dict[str, Any]]:
        return {row["path"]: row for row in self.admin("GET", "/v1/snapshots")}

    def partition(self, topic: str, index: int) -> dict[str, Any]:
        summary = self.admin("GET", f"/v1/topics/{topic}")
        return summary["partitions"][index]


def start_broker(data_dir: Path, env: dict[str, str] | None = None) -> Broker:
    """A broker on ``data_dir``; its log (appended across restarts) and ready file
    sit beside it. ``AILURUS_*`` variables of this process pass through."""
    data_dir.mkdir(parents=True, exist_ok=True)
    return _start_broker(
        data_dir,
        log_path=data_dir.parent / f"{data_dir.name}.log",
        ready_path=data_dir.parent / f"{data_dir.name}.ready.json",
        env={**ENV, **(env or {})},
        inherit_ailurus_env=True,
        timeout=20,
        cls=Broker,
    )


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A data dir for storage-level snapshot tests, with its ``snapshots/``."""
    (tmp_path / "snapshots").mkdir()
    return tmp_path


@pytest.fixture
def brokers(tmp_path: Path) -> Iterator[Callable[..., Broker]]:
    started: list[Broker] = []

    def factory(name: str, env: dict[str, str] | None = None) -> Broker:
        b = start_broker(tmp_path / name, env)
        started.append(b)
        return b

    yield factory
    for b in started:
        b.stop()


def wait_for(
    cond: Callable[[], Any], timeout: float = 15.0, what: str = "condition"
) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = cond()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; last={last!r}")


def wait_status(
    b: Broker, rel: str, status: str, timeout: float = 15.0
) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        row = b.statuses().get(rel)
        return row if row is not None and row["status"] == status else None

    try:
        return wait_for(check, timeout, f"{rel} {status}")
    except AssertionError:
        raise AssertionError(f"{rel} never {status}: {b.statuses().get(rel)}") from None


def cp_r(src: Path, dest: Path) -> None:
    """Copy like a user does: ``cp -r`` in a subprocess."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-r", str(src), str(dest)], check=True, timeout=60)
