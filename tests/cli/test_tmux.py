"""Terminal UX, checked like a person would: run ``ailurus topic list`` in tmux and
read the screen (a rich table with borders and a header on a real terminal).
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import time
import uuid

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
