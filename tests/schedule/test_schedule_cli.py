"""``ailurus snapshot schedule`` reads the broker's schedule through the admin API."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests._broker import start_broker


def _cli(admin_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "broker", "--admin-url", admin_url, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_schedule_command_shows_the_configured_schedule(tmp_path: Path) -> None:
    """A broker started with a schedule reports it as text and as JSON; one without
    a schedule says so."""
    scheduled = start_broker(
        tmp_path / "scheduled",
        "--set",
        "snapshot.schedule.topics=orders-*",
        "--set",
        "snapshot.schedule.interval=1h",
        "--set",
        "snapshot.retention.keep_last=3",
    )
    plain = start_broker(tmp_path / "plain")
    try:
        as_json = _cli(scheduled.admin_url, "--format", "json", "snapshot", "schedule")
        assert as_json.returncode == 0, as_json.stderr
        shown = json.loads(as_json.stdout)
        assert shown["enabled"] is True
        assert shown["topics"] == ["orders-*"]
        assert shown["interval_s"] == 3600.0
        assert shown["keep_last"] == 3
        assert set(shown) >= {"rounds", "next_round_ms", "pending_push", "last_round"}

        as_text = _cli(scheduled.admin_url, "snapshot", "schedule")
        assert as_text.returncode == 0, as_text.stderr
        lines = dict(line.split(None, 1) for line in as_text.stdout.splitlines())
        assert lines["enabled"] == "True"
        assert lines["interval_s"] == "3600.0"

        off = _cli(plain.admin_url, "snapshot", "schedule")
        assert off.returncode == 0, off.stderr
        assert off.stdout.startswith("no snapshot schedule")
    finally:
        assert scheduled.stop() == 0
        assert plain.stop() == 0
