"""Terminal UX, checked like a person would: run ``ailurus topic list`` and a long
``ailurus snapshot create`` in tmux and read the screen (a rich table with borders
and a header on a real terminal; a progress bar while the snapshot is taken, gone
once it is done).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
import uuid
from pathlib import Path

from confluent_kafka import Producer

from tests.cli.conftest import AILURUS, Target, invoke, unique


def _tmux(socket: str, *args: str) -> str:
    out = subprocess.run(
        ["tmux", "-L", socket, *args], capture_output=True, check=True, timeout=10
    )
    return out.stdout.decode()


def test_topic_list_renders_a_table_in_a_terminal(ailurus: Target) -> None:
    """On a TTY the topic list is a bordered table naming each topic."""
    assert shutil.which("tmux"), "tmux is required (apt-get install tmux)"
    topic = unique("tty")
    assert invoke(ailurus, "topic", "create", topic, "-p", "3").exit_code == 0
    socket = f"ailurus-test-{uuid.uuid4().hex[:8]}"
    command = (
        f"AILURUS_BROKERS={shlex.quote(ailurus.bootstrap)} "
        f"{shlex.quote(str(AILURUS))} topic list; echo __done__; sleep 30"
    )
    _tmux(socket, "new-session", "-d", "-x", "120", "-y", "40", "-s", "cli", command)
    try:
        screen = ""
        deadline = time.monotonic() + 15
        while "__done__" not in screen and time.monotonic() < deadline:
            time.sleep(0.1)
            screen = _tmux(socket, "capture-pane", "-p", "-t", "cli")
    finally:
        subprocess.run(["tmux", "-L", socket, "kill-server"], check=False, timeout=10)
    assert "__done__" in screen, screen
    lines = screen.splitlines()
    row = next(line for line in lines if topic in line)
    assert "│" in row  # a bordered rich table, not plain columns
    assert row.split("│")[2].strip() == "3"
    assert any(line.startswith("╭") for line in lines)
    assert any("name" in line and "partitions" in line for line in lines)
    assert "error" not in screen


def _produce(bootstrap: str, topic: str, partitions: int, mib_each: int) -> None:
    """``mib_each`` MiB of incompressible values into every partition."""
    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 5, "log_level": 3}
    )
    value = os.urandom(100_000)
    for i in range(partitions * mib_each * 10):
        producer.produce(topic, value=value, partition=i % partitions)
        producer.poll(0)
    assert producer.flush(30) == 0


def test_snapshot_create_shows_a_progress_bar_then_the_table(
    ailurus: Target, tmp_path: Path
) -> None:
    """A long ``snapshot create`` shows a pulsing bar with the elapsed time while the
    broker works; the bar is erased and one table row per partition remains."""
    assert shutil.which("tmux"), "tmux is required (apt-get install tmux)"
    topic = unique("snap-tty")
    assert invoke(ailurus, "topic", "create", topic, "-p", "2").exit_code == 0
    # 2 x 10 MiB of random bytes, gzip-compressed by the broker: about a second.
    _produce(ailurus.bootstrap, topic, partitions=2, mib_each=10)
    go, transcript = tmp_path / "go", tmp_path / "transcript"
    socket = f"ailurus-test-{uuid.uuid4().hex[:8]}"
    command = (
        f"while [ ! -e {shlex.quote(str(go))} ]; do sleep 0.05; done; "
        f"AILURUS_ADMIN_URL={shlex.quote(ailurus.admin_url)} "
        f"{shlex.quote(str(AILURUS))} snapshot create --topic {topic} "
        "--compression gzip; echo __done__; sleep 30"
    )
    _tmux(socket, "new-session", "-d", "-x", "100", "-y", "30", "-s", "cli", command)
    try:
        # every byte the command writes, escape sequences included
        _tmux(
            socket, "pipe-pane", "-t", "cli", f"cat >> {shlex.quote(str(transcript))}"
        )
        go.touch()
        screens: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            screens.append(_tmux(socket, "capture-pane", "-p", "-t", "cli"))
            if "__done__" in screens[-1]:
                break
            time.sleep(0.05)
    finally:
        subprocess.run(["tmux", "-L", socket, "kill-server"], check=False, timeout=10)
    final = screens[-1]
    assert "__done__" in final, final
    label = f"snapshotting {topic}"
    during = [s for s in screens if label in s]
    assert during, "no capture showed the progress bar"
    bar = next(line for line in during[0].splitlines() if label in line)
    assert "━" in bar  # rich's bar (pulsing: the size is unknown until the end)
    assert any(f"0:00:0{n}" in bar for n in range(10)), bar  # elapsed time
    assert label in Path(transcript).read_text(errors="replace")
    # cleared: the finished screen has the table, not the bar
    assert label not in final
    lines = final.splitlines()
    assert any(line.startswith("╭") for line in lines), final
    assert any("snapshot_id" in line and "partition" in line for line in lines)
    cells = [line.split("│")[1:-1] for line in lines if line.startswith("│")]
    rows = [[c.strip() for c in row] for row in cells if row[1].strip().isdigit()]
    assert sorted(row[0] for row in rows) == ["0", "1"], final
    assert {(row[2], row[3]) for row in rows} == {("0", "99")}  # base, last offsets
    assert "error" not in final.lower()
