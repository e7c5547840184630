"""Fixtures that start the broker the way a user does: ``python -m broker serve``.

``broker`` gives a running broker on 127.0.0.1 with free ports (port 0; the bound
ports come from ``--ready-file``), a fresh data dir, and stops it with SIGTERM.
``broker_factory`` starts more (or restarts on the same data dir).
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests._broker import BrokerProcess, recv_frame, start_broker


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


@pytest.fixture
def frames() -> Callable[[socket.socket], bytes]:
    return recv_frame
