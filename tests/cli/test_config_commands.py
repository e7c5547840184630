"""``ailurus topic alter-config`` and ``ailurus cluster config get|set|list``
against a running broker (the session's shared one: the broker configs these tests
set are removed again)."""

from __future__ import annotations

from tests.cli.conftest import Target, invoke, unique


def test_topic_alter_config_sets_deletes_and_dry_runs(ailurus: Target) -> None:
    """--set and --append change overrides (shown with their source), --delete
    removes one, --dry-run changes nothing, a bad value is refused by name."""
    topic = unique("ac")
    assert (
        invoke(ailurus, "topic", "create", topic, "-c", "segment.ms=600000").exit_code
        == 0
    )
    res = invoke(
        ailurus,
        "--format",
        "json",
        "topic",
        "alter-config",
        topic,
        "--set",
        "retention.ms=3600000",
        "--append",
        "cleanup.policy=compact",
        "--delete",
        "segment.ms",
    )
    assert res.exit_code == 0, res.stderr
    body = res.json()
    assert isinstance(body, dict)
    got = {c["name"]: (c["value"], c["source"]) for c in body["configs"]}
    assert got == {
        "retention.ms": ("3600000", "topic"),
        "cleanup.policy": ("delete,compact", "topic"),
        "segment.ms": ("604800000", "default"),
    }
    dry = invoke(
        ailurus, "topic", "alter-config", topic, "--set", "retention.ms=1", "--dry-run"
    )
    assert dry.exit_code == 0, dry.stderr
    assert "validated" in dry.stdout.decode()
    described = invoke(ailurus, "--format", "json", "topic", "describe", topic).json()
    assert isinstance(described, dict)
    values = {c["name"]: c["value"] for c in described["configs"]}
    assert values["retention.ms"] == "3600000"
    bad = invoke(ailurus, "topic", "alter-config", topic, "--set", "no.such.key=1")
    assert bad.exit_code != 0
    assert "Unknown topic config name: no.such.key" in bad.stderr.decode()
    none = invoke(ailurus, "topic", "alter-config", topic)
    assert none.exit_code != 0
    assert "nothing to change" in none.stderr.decode()


def test_cluster_config_set_get_list(ailurus: Target) -> None:
    """A cluster-wide value and a broker's own value are set, read back with their
    sources, listed, and deleted again; static settings are read-only."""
    key = "log.roll.jitter.ms"
    try:
        res = invoke(ailurus, "cluster", "config", "set", f"{key}=5000")
        assert res.exit_code == 0, res.stderr
        res = invoke(ailurus, "--format", "json", "cluster", "config", "get", key)
        assert res.exit_code == 0, res.stderr
        body = res.json()
        assert isinstance(body, dict)
        assert body["configs"] == [
            {
                "name": key,
                "value": "5000",
                "source": "dynamic-default-broker",
                "read_only": False,
            }
        ]
        res = invoke(
            ailurus, "cluster", "config", "set", f"{key}=7000", "--broker", "0"
        )
        assert res.exit_code == 0, res.stderr
        listed = invoke(ailurus, "--format", "json", "cluster", "config", "list").json()
        assert isinstance(listed, dict)
        assert {(r["scope"], r["name"], r["value"]) for r in listed["configs"]} >= {
            ("cluster-wide", key, "5000"),
            ("broker 0", key, "7000"),
        }
        text = invoke(ailurus, "cluster", "config", "get", "--broker", "0")
        assert text.exit_code == 0, text.stderr
        assert "dynamic-broker" in text.stdout.decode()
        assert "num.partitions" in text.stdout.decode()
        static = invoke(ailurus, "cluster", "config", "set", "num.partitions=3")
        assert static.exit_code != 0
        assert "Cannot update these configs dynamically" in static.stderr.decode()
    finally:
        for extra in ((), ("--broker", "0")):
            done = invoke(ailurus, "cluster", "config", "set", "--delete", key, *extra)
            assert done.exit_code == 0, done.stderr
    res = invoke(ailurus, "--format", "json", "cluster", "config", "get", key)
    body = res.json()
    assert isinstance(body, dict)
    assert body["configs"][0]["source"] == "default"
