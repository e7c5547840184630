"""Error texts a person reads: one line each, naming what was wrong, nothing twice."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from broker.cli.main import _register_commands, cli
from tests.cli.conftest import Target, invoke, unique


def _one_line(stderr: bytes) -> str:
    lines = stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_deleting_a_missing_topic_says_so_once(target: Target) -> None:
    """The error name is not repeated as the broker's message."""
    topic = unique("missing")
    res = invoke(target, "topic", "delete", topic)
    assert res.exit_code == 1
    line = _one_line(res.stderr)
    assert line.count("UNKNOWN_TOPIC_OR_PARTITION") == 1, line
    assert "no such topic" in line
    assert line.count(topic) == 1


def test_bad_topic_config_value_names_the_config(target: Target) -> None:
    """retention.ms=abc: the error names retention.ms."""
    res = invoke(target, "topic", "create", unique("cfg"), "-c", "retention.ms=abc")
    assert res.exit_code == 1
    line = _one_line(res.stderr)
    assert "retention.ms" in line
    assert "int()" not in line
    assert "'abc' is not an integer" in line


def test_admin_url_on_the_kafka_port_is_named(ailurus: Target) -> None:
    """An --admin-url that answers with Kafka, not HTTP, is one line saying so."""
    res = invoke(
        ailurus, "--admin-url", f"http://{ailurus.bootstrap}", "snapshot", "list"
    )
    assert res.exit_code == 1
    line = _one_line(res.stderr)
    assert "does not speak the admin HTTP API" in line
    assert ailurus.bootstrap in line
    assert "RemoteDisconnected" not in line.split("(")[0]


def test_snapshot_pull_from_a_missing_location_fails(tmp_path: Path) -> None:
    """A pull from a location that does not exist exits 1 with one line."""
    _register_commands()
    missing = tmp_path / "no-such-backup"
    for source in (str(missing), missing.as_uri()):
        for extra in ([], ["--list"]):
            result = CliRunner().invoke(
                cli,
                [
                    "snapshot",
                    "pull",
                    "--from",
                    source,
                    "--data-dir",
                    str(tmp_path / "d"),
                    *extra,
                ],
            )
            assert result.exit_code == 1, result.output
            line = _one_line(result.stderr_bytes)
            assert "does not exist" in line
    assert not (tmp_path / "d").exists()


def test_acl_errors_list_the_valid_choices(tmp_path: Path) -> None:
    """Unknown ACL operations and resources are named, with the valid ones as text."""
    _register_commands()
    runner = CliRunner()
    d = str(tmp_path)
    made = runner.invoke(
        cli, ["user", "create", "alice", "--password", "pw-123456", "--data-dir", d]
    )
    assert made.exit_code == 0, made.output
    for spec, wanted in (
        ("topic:orders:fly,read", "unknown operation fly"),
        ("table:orders:read", "unknown resource 'table'"),
    ):
        result = runner.invoke(cli, ["user", "grant", "alice", spec, "--data-dir", d])
        assert result.exit_code == 1
        line = _one_line(result.stderr_bytes)
        assert wanted in line
        assert "[" not in line
        assert "{" not in line
    result = runner.invoke(
        cli, ["user", "grant", "alice", "topic:orders:fly", "--data-dir", d]
    )
    assert (
        "read, write, create, describe, delete, alter, alter_configs, all"
        in result.stderr
    )
