"""Brokers started as users start them (``python -m broker serve``), plus helpers.

Every broker binds 127.0.0.1 port 0, scans data/snapshots every 200 ms and treats
files untouched for 700 ms as settled, so tests run in seconds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENV = {
    "AILURUS_SNAPSHOT_SCAN_INTERVAL_MS": "200",
    "AILURUS_SNAPSHOT_SETTLE_MS": "700",
}


@dataclass
class Broker:
    proc: subprocess.Popen[bytes]
    data_dir: Path
    log_path: Path
    port: int
    admin_port: int

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def admin(self, method: str, path: str, body: object | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.admin_url + path, data=data, method=method)
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())

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

    def events(self, name: str) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text().splitlines():
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if obj.get("event") == name:
                out.append(obj)
        return out

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def start_broker(data_dir: Path, env: dict[str, str] | None = None) -> Broker:
    data_dir.mkdir(parents=True, exist_ok=True)
    ready = data_dir.parent / f"{data_dir.name}.ready.json"
    log_path = data_dir.parent / f"{data_dir.name}.log"
    ready.unlink(missing_ok=True)
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "broker",
                "serve",
                "--kafka-addr",
                "127.0.0.1:0",
                "--admin-addr",
                "127.0.0.1:0",
                "--data-dir",
                str(data_dir),
                "--ready-file",
                str(ready),
                "--log-format",
                "json",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **ENV, **(env or {})},
            cwd=ROOT,
        )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(
                f"broker exited {proc.returncode}: {log_path.read_text()[-3000:]}"
            )
        try:
            info = json.loads(ready.read_text())
        except (OSError, ValueError):
            time.sleep(0.02)
            continue
        return Broker(
            proc=proc,
            data_dir=data_dir,
            log_path=log_path,
            port=int(info["kafka"]["default"]["port"]),
            admin_port=int(info["admin"]["port"]),
        )
    proc.kill()
    raise AssertionError("broker not ready in 20 s")


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
