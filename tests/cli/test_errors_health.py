"""Errors a person can act on (one line, exit 1, no traceback) and ``cluster health``."""

from __future__ import annotations

import json

from tests.cli.conftest import Target, invoke, run_cli, unique

DEAD = Target("dead", "127.0.0.1:1", "http://127.0.0.1:1")


def test_unreachable_broker_is_one_line_with_address_and_hint() -> None:
    """The installed script names the address tried and how to fix it; no traceback."""
    res = run_cli(DEAD, "topic", "list")
    assert res.returncode == 1
    assert res.stdout == b""
    lines = res.stderr.decode().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: broker 127.0.0.1:1 unreachable")
    assert "--brokers" in lines[0]


def test_debug_shows_the_traceback() -> None:
    """With --debug (before or after the subcommand) the traceback is shown."""
    res = run_cli(DEAD, "topic", "list", "--debug")
    assert res.returncode == 1
    assert b"Traceback" in res.stderr
    assert b"BrokerUnreachable" in res.stderr


def test_unknown_topic_and_bad_arguments_are_one_line(target: Target) -> None:
    """Unknown topic, existing topic, bad offset, bad config: one line each, exit 1."""
    topic = unique("err")
    cases = [
        ("topic", "describe", topic),
        ("topic", "consume", topic, "--num", "1"),
        ("topic", "consume", "x", "--offset", "soon"),
        ("topic", "create", topic, "-c", "novalue"),
        ("topic", "produce", "x", "--key-value", "no-colon"),
    ]
    for args in cases:
        res = invoke(target, *args)
        assert res.exit_code == 1, args
        lines = res.stderr.decode().splitlines()
        assert len(lines) == 1, (args, lines)
        assert lines[0].startswith("error: "), lines
    assert b"UNKNOWN_TOPIC_OR_PARTITION" in invoke(target, *cases[0]).stderr
    assert invoke(target, "topic", "create", topic).exit_code == 0
    again = invoke(target, "topic", "create", topic)
    assert again.exit_code == 1
    assert b"TOPIC_ALREADY_EXISTS" in again.stderr


def test_invalid_topic_config_is_reported(ailurus: Target) -> None:
    """A config value the broker rejects names INVALID_CONFIG and the config."""
    res = invoke(ailurus, "topic", "create", unique("cfg"), "-c", "no.such.config=1")
    assert res.exit_code == 1
    assert b"INVALID_CONFIG" in res.stderr
    assert b"no.such.config" in res.stderr


def test_health_is_zero_when_ready_and_online(ailurus: Target) -> None:
    """A ready broker with every partition online is healthy (exit 0)."""
    res = invoke(ailurus, "cluster", "health")
    assert res.exit_code == 0
    assert res.stdout.startswith(b"HEALTHY")
    waited = invoke(
        ailurus, "cluster", "health", "--exit-when-healthy", "--timeout", "5"
    )
    assert waited.exit_code == 0


def test_health_is_one_without_admin_api(tansu: Target) -> None:
    """Without a reachable admin API the broker is not known ready: exit 1."""
    res = invoke(tansu, "--format", "json", "cluster", "health")
    assert res.exit_code == 1
    report = json.loads(res.stdout)
    assert report["healthy"] is False
    assert report["ready"] is False
    assert report["kafka_reachable"] is True
    assert "unreachable" in report["ready_detail"]
    timed = invoke(
        tansu,
        "cluster",
        "health",
        "--exit-when-healthy",
        "--timeout",
        "0.3",
        "--interval",
        "0.1",
    )
    assert timed.exit_code == 1


def test_health_watch_prints_changes_until_timeout() -> None:
    """--watch prints a line per change and stops at --timeout with the last status."""
    res = invoke(
        DEAD, "cluster", "health", "--watch", "--timeout", "0.3", "--interval", "0.1"
    )
    assert res.exit_code == 1
    assert res.stdout.decode().splitlines()[0].startswith("UNHEALTHY")


def test_bootstrap_skips_dead_addresses(ailurus: Target) -> None:
    """--brokers with a dead address first still reaches the live one."""
    mixed = Target("mixed", f"127.0.0.1:1,{ailurus.bootstrap}", ailurus.admin_url)
    res = invoke(mixed, "--format", "json", "cluster", "info")
    assert res.exit_code == 0, res.stderr
    both_dead = Target("dead2", "127.0.0.1:1,127.0.0.1:2", ailurus.admin_url)
    res = invoke(both_dead, "topic", "list")
    assert res.exit_code == 1
    assert b"127.0.0.1:1, 127.0.0.1:2" in res.stderr
