"""Start ``python -m broker serve`` for the security tests, and a raw Kafka client.

The broker runs as a user runs it (its own process, port 0 listeners, the bound ports
read from ``--ready-file``). :class:`RawClient` speaks the protocol with our own codec
over a blocking socket (optionally TLS) so tests can send exactly the SASL frames
they mean to.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import ssl
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from protocol.codec import decode_response, encode_request
from protocol.headers import RequestHeader

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Broker:
    proc: subprocess.Popen[bytes]
    log_path: Path
    listeners: dict[str, tuple[str, int]]
    admin: tuple[str, int] | None

    def addr(self, listener: str) -> str:
        host, port = self.listeners[listener]
        return f"{host}:{port}"

    def events(self, name: str) -> list[dict[str, object]]:
        out = []
        for line in self.log_path.read_text().splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == name:
                out.append(event)
        return out

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=5)


def start_broker(
    tmp: Path,
    *args: str,
    env: dict[str, str] | None = None,
    wait: bool = True,
    timeout: float = 20,
) -> Broker:
    """Start a broker with data in ``tmp/data``; raise if it exits or hangs."""
    tmp.mkdir(parents=True, exist_ok=True)
    n = len(list(tmp.glob("broker-*.log")))
    log_path, ready = tmp / f"broker-{n}.log", tmp / f"ready-{n}.json"
    cmd = [
        sys.executable, "-m", "broker", "serve",
        "--data-dir", str(tmp / "data"),
        "--ready-file", str(ready),
        "--log-format", "json",
        *args,
    ]  # fmt: skip
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("AILURUS_")}
    full_env.update(env or {})
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=log_file, stderr=log_file, env=full_env
        )
    broker = Broker(proc=proc, log_path=log_path, listeners={}, admin=None)
    if not wait:
        return broker
    deadline = time.monotonic() + timeout
    while not ready.exists():
        if proc.poll() is not None:
            raise RuntimeError(
                f"broker exited {proc.returncode}:\n{log_path.read_text()}"
            )
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"broker not ready:\n{log_path.read_text()}")
        time.sleep(0.02)
    info = json.loads(ready.read_text())
    broker.listeners = {
        name: (str(v["advertised_host"]), int(v["advertised_port"]))
        for name, v in info["kafka"].items()
    }
    if info["admin"]:
        broker.admin = (str(info["admin"]["host"]), int(info["admin"]["port"]))
    return broker


class RawClient:
    """A blocking one-request-at-a-time Kafka client built on our codec."""

    def __init__(self, addr: str, ssl_context: ssl.SSLContext | None = None) -> None:
        host, port = addr.rsplit(":", 1)
        sock = socket.create_connection((host, int(port)), timeout=10)
        if ssl_context is not None:
            sock = ssl_context.wrap_socket(sock, server_hostname=host)
        self.sock = sock
        self._ids = itertools.count(1)

    def request(self, api_key: int, version: int, body: object) -> object:
        header = RequestHeader(
            request_api_key=api_key,
            request_api_version=version,
            correlation_id=next(self._ids),
            client_id="security-test",
        )
        self.sock.sendall(encode_request(header, body))
        size = struct.unpack(">i", self._exactly(4))[0]
        _, response = decode_response(api_key, version, self._exactly(size))
        return response

    def closed_by_peer(self) -> bool:
        """Whether the broker has closed the connection (reads EOF or reset)."""
        try:
            return self.sock.recv(1) == b""
        except (ConnectionResetError, ssl.SSLError):
            return True

    def _exactly(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("closed by the broker")
            buf += chunk
        return bytes(buf)

    def close(self) -> None:
        self.sock.close()
