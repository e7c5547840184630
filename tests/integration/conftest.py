"""Fixtures that start the broker the way a user does: ``python -m broker serve``.

``broker`` gives a running broker on 127.0.0.1 with free ports (port 0; the bound
ports come from ``--ready-file``), a fresh data dir, and stops it with SIGTERM.
``broker_factory`` starts more (or restarts on the same data dir).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class BrokerProcess:
    """A broker subprocess and where to reach it."""

    proc: subprocess.Popen[bytes]
    data_dir: Path
    log_path: Path
    host: str
    port: int
    admin_port: int
    listeners: dict[str, dict[str, object]] = field(default_factory=dict)

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://{self.host}:{self.admin_port}"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)

    def logs(self) -> list[dict[str, object]]:
        out = []
        for line in self.log_path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def events(self, name: str) -> list[dict[str, object]]:
        return [e for e in self.logs() if e.get("event") == name]

    def http(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.admin_url + path, timeout=5) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def connect(self) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout=10)


def start_broker(
    data_dir: Path, *args: str, log_dir: Path | None = None, timeout: float = 15
) -> BrokerProcess:
    """Start ``python -m broker serve`` and wait for its ready file."""
    log_dir = log_dir or data_dir.parent
    log_dir.mkdir(parents=True, exist_ok=True)
    n = len(list(log_dir.glob("broker-*.log")))
    log_path = log_dir / f"broker-{n}.log"
    ready = log_dir / f"ready-{n}.json"
    cmd = [
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
        *args,
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AILURUS_")}
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=log_file, stderr=log_file, env=env
        )
    deadline = time.monotonic() + timeout
    while not ready.exists():
        if proc.poll() is not None:
            raise RuntimeError(
                f"broker exited with {proc.returncode}:\n{log_path.read_text()}"
            )
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(
                f"broker not ready in {timeout}s:\n{log_path.read_text()}"
            )
        time.sleep(0.02)
    info = json.loads(ready.read_text())
    first = next(iter(info["kafka"].values()))
    return BrokerProcess(
        proc=proc,
        data_dir=data_dir,
        log_path=log_path,
        host=str(first["host"]),
        port=int(first["port"]),
        admin_port=int(info["admin"]["port"]) if info["admin"] else 0,
        listeners=info["kafka"],
    )


@pytest.fixture
def broker_factory(tmp_path: Path) -> Iterator[Callable[..., BrokerProcess]]:
    started: list[BrokerProcess] = []

    def factory(*args: str, data_dir: Path | None = None) -> BrokerProcess:
        b = start_broker(
            data_dir or tmp_path / "data", *args, log_dir=tmp_path / "logs"
        )
        started.append(b)
        return b

    yield factory
    for b in started:
        if b.proc.poll() is None:
            b.kill()


@pytest.fixture
def broker(broker_factory: Callable[..., BrokerProcess]) -> Iterator[BrokerProcess]:
    b = broker_factory()
    yield b
    if b.proc.poll() is None:
        assert b.stop() == 0


def recv_frame(sock: socket.socket) -> bytes:
    """Read one size-prefixed frame body from a blocking socket."""
    size = struct.unpack(">i", _recv_exactly(sock, 4))[0]
    return _recv_exactly(sock, size)


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return bytes(buf)


@pytest.fixture
def frames() -> Callable[[socket.socket], bytes]:
    return recv_frame
