"""Start the broker the way a user does (``python -m broker serve``) for tests.

The one launcher every test suite uses: the broker binds 127.0.0.1 (Kafka port 0
unless a test needs the same port across restarts, admin port 0), logs JSON to a
file, and reports its bound ports in ``--ready-file``, which :func:`start_broker`
waits for. :class:`BrokerProcess` is the handle: where to reach the broker, its
log events, its admin API, and stopping it; :func:`request` speaks raw Kafka to it.
Fixtures stay in each suite's conftest.
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
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from protocol.codec import decode_response, encode_request
from protocol.headers import RequestHeader

ROOT = Path(__file__).resolve().parents[1]
_correlation = iter(range(1, 1 << 30))


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
        """Send ``sig``; SIGKILL if it has not exited in ``timeout`` s. Exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=10)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)

    def logs(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def events(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.logs() if e.get("event") == name]

    def http(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.admin_url + path, timeout=5) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def admin(
        self, method: str, path: str, body: object | None = None, timeout: float = 30
    ) -> Any:
        """One admin API call; the decoded JSON answer (HTTP errors raise)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.admin_url + path, data=data, method=method)
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())

    def connect(self) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout=10)


B = TypeVar("B", bound=BrokerProcess)


def start_broker(
    data_dir: Path,
    *args: str,
    log_dir: Path | None = None,
    log_path: Path | None = None,
    ready_path: Path | None = None,
    env: Mapping[str, str] | None = None,
    inherit_ailurus_env: bool = False,
    port: int = 0,
    timeout: float = 15,
    cls: type[B] = BrokerProcess,  # type: ignore[assignment]
) -> B:
    """Start ``python -m broker serve ARGS`` and wait for its ready file.

    Log and ready file are ``broker-N.log`` / ``ready-N.json`` in ``log_dir``
    (default: the data dir's parent), numbered per start, unless ``log_path`` and
    ``ready_path`` name them (the log is appended to, so restarts keep one log).
    ``AILURUS_*`` variables of this process are dropped unless
    ``inherit_ailurus_env``; ``env`` is added on top. ``port`` is the Kafka port
    (0: any free one).
    """
    if log_path is None or ready_path is None:
        log_dir = log_dir or data_dir.parent
        log_dir.mkdir(parents=True, exist_ok=True)
        n = len(list(log_dir.glob("broker-*.log")))
        log_path = log_dir / f"broker-{n}.log"
        ready_path = log_dir / f"ready-{n}.json"
    ready_path.unlink(missing_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "broker",
        "serve",
        "--kafka-addr",
        f"127.0.0.1:{port}",
        "--admin-addr",
        "127.0.0.1:0",
        "--data-dir",
        str(data_dir),
        "--ready-file",
        str(ready_path),
        "--log-format",
        "json",
        *args,
    ]
    full_env = {
        k: v
        for k, v in os.environ.items()
        if inherit_ailurus_env or not k.startswith("AILURUS_")
    }
    full_env.update(env or {})
    with log_path.open("ab") as log_file:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=log_file, stderr=log_file, env=full_env
        )
    deadline = time.monotonic() + timeout
    while True:
        try:
            info = json.loads(ready_path.read_text())
            break
        except (OSError, ValueError):
            pass
        if proc.poll() is not None:
            raise RuntimeError(
                f"broker exited with {proc.returncode}:\n{log_path.read_text()}"
            )
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait(timeout=10)
            raise RuntimeError(
                f"broker not ready in {timeout}s:\n{log_path.read_text()}"
            )
        time.sleep(0.02)
    first = next(iter(info["kafka"].values()))
    return cls(
        proc=proc,
        data_dir=data_dir,
        log_path=log_path,
        host=str(first["host"]),
        port=int(first["port"]),
        admin_port=int(info["admin"]["port"]) if info["admin"] else 0,
        listeners=info["kafka"],
    )


def free_port() -> int:
    """A port the OS reports free on 127.0.0.1 (bound to port 0, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def request(
    sock: socket.socket,
    api_key: int,
    version: int,
    body: object,
    *,
    client_id: str = "test",
) -> object:
    """Send one request and read its response (raw protocol, blocking socket)."""
    corr = next(_correlation)
    header = RequestHeader(
        request_api_key=api_key,
        request_api_version=version,
        correlation_id=corr,
        client_id=client_id,
    )
    sock.sendall(encode_request(header, body))
    resp_header, resp = decode_response(api_key, version, recv_frame(sock))
    assert resp_header.correlation_id == corr
    return resp


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


def start_cluster_broker(
    data_dir: Path,
    node_id: int,
    cluster: str,
    *args: str,
    session_timeout_ms: int | None = None,
    **kwargs: Any,
) -> BrokerProcess:
    """Start a broker that joins the cluster at ``cluster`` (``etcd://host:port/
    prefix``) as ``node_id``; other arguments as :func:`start_broker`."""
    extra = ["--node-id", str(node_id), "--cluster", cluster]
    if session_timeout_ms is not None:
        extra += ["--set", f"broker.session.timeout.ms={session_timeout_ms}"]
    return start_broker(data_dir, *extra, *args, **kwargs)
