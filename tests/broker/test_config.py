"""Broker configuration: address parsing, precedence (flags > env > file > defaults)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import broker.server
from broker.cli.main import cli, hoist_global_flags
from broker.cli.serve import serve
from broker.config import (
    SCHEDULE_KEYS,
    BrokerConfig,
    ConfigError,
    ScheduleSettings,
    env_name,
    parse_address,
    parse_listeners,
    resolve,
)
from broker.fdlimits import storage_limits
from broker.snapshots.settings import SnapshotSettings
from tests._broker import start_broker


def test_parses_named_and_ipv6_addresses() -> None:
    """[name://]host:port parses, IPv6 hosts in brackets."""
    a = parse_address("external://localhost:19092", default_name="x")
    assert (a.name, a.host, a.port) == ("external", "localhost", 19092)
    b = parse_address("[::1]:0", default_name="d")
    assert (b.name, b.host, b.port, str(b)) == ("d", "::1", 0, "[::1]:0")
    assert parse_address(":9092", default_name="d").host == "0.0.0.0"


@pytest.mark.parametrize("bad", ["nohost", "h:99999", "h:port", "bad name://h:1"])
def test_rejects_malformed_addresses(bad: str) -> None:
    """A malformed address is a ConfigError naming it."""
    with pytest.raises(ConfigError):
        parse_address(bad, default_name="d")


def test_pairs_advertised_addresses_by_name_then_position() -> None:
    """Advertised addresses match listeners by name, unnamed ones by position."""
    ls = parse_listeners(
        "internal://0.0.0.0:9092,external://0.0.0.0:19092",
        "external://localhost:19092,internal://redpanda:9092",
    )
    assert [(x.name, x.advertised and x.advertised.host) for x in ls] == [
        ("internal", "redpanda"),
        ("external", "localhost"),
    ]
    positional = parse_listeners("127.0.0.1:1,127.0.0.1:2", "a:1,b:2")
    assert [x.advertised and x.advertised.host for x in positional] == ["a", "b"]
    with pytest.raises(ConfigError):
        parse_listeners("x://h:1", "y://h:2")
    with pytest.raises(ConfigError):
        parse_listeners("x://h:1,x://h:2", None)


def test_defaults_match_the_documented_ones() -> None:
    """No flags, env or file: the documented defaults."""
    cfg = resolve(flags={}, sets={})
    assert cfg.data_dir == Path("./data")
    assert [(x.bind.host, x.bind.port) for x in cfg.listeners] == [("127.0.0.1", 9092)]
    assert cfg.admin is not None
    assert (cfg.admin.host, cfg.admin.port) == ("127.0.0.1", 9644)
    assert cfg.auto_create_topics is True
    assert cfg.connections_max_idle_ms == 600_000
    assert cfg.node_id == 0


def test_set_splits_broker_settings_from_topic_defaults() -> None:
    """--set broker keys configure the broker; other keys become topic defaults."""
    cfg = resolve(
        flags={},
        sets={
            "auto.create.topics.enable": "false",
            "num.partitions": "3",
            "retention.ms": "1000",
            "message.max.bytes": "2000000",
        },
    )
    assert cfg.auto_create_topics is False
    assert cfg.default_partitions == 3
    assert cfg.message_max_bytes == 2_000_000
    assert dict(cfg.topic_defaults) == {
        "retention.ms": "1000",
        "max.message.bytes": "2000000",
    }
    with pytest.raises(ConfigError):
        resolve(flags={}, sets={"num.partitions": "many"})
    with pytest.raises(ConfigError, match="unknown topic config"):
        resolve(flags={}, sets={"no.such.config": "1"})
    with pytest.raises(ConfigError, match=r"retention\.ms"):
        resolve(flags={}, sets={"retention.ms": "soon"})


def test_transaction_max_timeout_defaults_to_kafkas_and_must_be_positive() -> None:
    """transaction.max.timeout.ms defaults to 900000 ms and is settable, above 0."""
    assert resolve(flags={}, sets={}).transaction_max_timeout_ms == 900_000
    cfg = resolve(flags={}, sets={"transaction.max.timeout.ms": "60000"})
    assert cfg.transaction_max_timeout_ms == 60_000
    assert "transaction.max.timeout.ms" not in cfg.topic_defaults
    with pytest.raises(ConfigError, match=r"transaction\.max\.timeout\.ms"):
        resolve(flags={}, sets={"transaction.max.timeout.ms": "0"})


def test_partial_frame_budget_defaults_to_256_mib_and_is_validated() -> None:
    """ailurus.partial.frames.max.bytes: 256 MiB by default, settable, at least 1."""
    assert resolve(flags={}, sets={}).partial_frames_max_bytes == 256 * 1024 * 1024
    cfg = resolve(flags={}, sets={"ailurus.partial.frames.max.bytes": "4194304"})
    assert cfg.partial_frames_max_bytes == 4 * 1024 * 1024
    assert "ailurus.partial.frames.max.bytes" not in cfg.topic_defaults
    for bad in ("0", "-5", "lots"):
        with pytest.raises(ConfigError, match=r"ailurus\.partial\.frames\.max\.bytes"):
            resolve(flags={}, sets={"ailurus.partial.frames.max.bytes": bad})


@pytest.mark.parametrize("suffix", [".yaml", ".toml"])
def test_file_values_lose_to_flags(tmp_path: Path, suffix: str) -> None:
    """A YAML or TOML file fills what flags leave unset; flags and --set win."""
    path = tmp_path / f"ailurus{suffix}"
    if suffix == ".yaml":
        path.write_text(
            "data_dir: /from/file\nnode_id: 7\nset:\n  retention.ms: 5\n  segment.bytes: 9\n"
        )
    else:
        path.write_text(
            'data_dir = "/from/file"\nnode_id = 7\n[set]\n"retention.ms" = 5\n'
            '"segment.bytes" = 9\n'
        )
    cfg = resolve(
        flags={"node_id": 3, "data_dir": None},
        sets={"retention.ms": "6"},
        config_file=path,
    )
    assert cfg.data_dir == Path("/from/file")
    assert cfg.node_id == 3
    assert dict(cfg.topic_defaults) == {"retention.ms": "6", "segment.bytes": "9"}
    bad = tmp_path / "bad.yaml"
    bad.write_text("nonsense_key: 1\n")
    with pytest.raises(ConfigError, match="nonsense_key"):
        resolve(flags={}, sets={}, config_file=bad)


def test_env_vars_sit_between_flags_and_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AILURUS_* env vars override the file; flags override env vars."""
    seen: list[BrokerConfig] = []
    monkeypatch.setattr(broker.server, "run", lambda cfg: seen.append(cfg) or 0)
    path = tmp_path / "c.yaml"
    path.write_text("data_dir: /file\nkafka_addr: 127.0.0.1:1\nnode_id: 1\n")
    runner = CliRunner()
    env = {
        "AILURUS_DATA_DIR": "/env",
        "AILURUS_NODE_ID": "2",
        "AILURUS_CONFIG": str(path),
    }
    result = runner.invoke(cli, ["serve", "--node-id", "5"], env=env)
    assert result.exit_code == 0, result.output
    cfg = seen[0]
    assert (str(cfg.data_dir), cfg.node_id, cfg.listeners[0].bind.port) == (
        "/env",
        5,
        1,
    )


def test_serve_help_documents_the_flags() -> None:
    """`ailurus serve --help` lists every flag with its default."""
    out = CliRunner().invoke(serve, ["--help"]).output
    for flag in (
        "--data-dir",
        "--kafka-addr",
        "--advertise-kafka-addr",
        "--admin-addr",
        "--node-id",
        "--set",
        "--log-level",
        "--ready-file",
        "--config",
    ):
        assert flag in out
    assert "127.0.0.1:9092" in out


def test_bad_flag_values_are_usage_errors() -> None:
    """A malformed --kafka-addr exits 2 with a one-line message."""
    result = CliRunner().invoke(cli, ["serve", "--kafka-addr", "nonsense"])
    assert result.exit_code == 2
    assert "bad address" in result.output


def test_global_flags_are_hoisted_from_after_the_subcommand() -> None:
    """Global flags after the subcommand move to the front; a template --format stays."""
    argv = ["topic", "consume", "t", "--brokers", "h:1", "--format=json", "--debug"]
    assert hoist_global_flags(argv) == [
        "--brokers",
        "h:1",
        "--format",
        "json",
        "--debug",
        "topic",
        "consume",
        "t",
    ]
    templ = ["topic", "consume", "t", "--format", "%k:%v"]
    assert hoist_global_flags(templ) == templ
    assert hoist_global_flags(["x", "--", "--debug"]) == ["x", "--", "--debug"]


# -- snapshot settings -------------------------------------------------------------


def test_snapshot_settings_default_to_the_documented_values() -> None:
    """No --set, env or file: rescan 5 s, settle 2 s, no throttle, no schedule."""
    cfg = resolve(flags={}, sets={}, env={})
    assert (
        cfg.snapshot_scan_interval_ms,
        cfg.snapshot_settle_ms,
        cfg.snapshot_ingest_bytes_per_sec,
    ) == (5000, 2000, 0)
    assert cfg.snapshot_schedule == ScheduleSettings()
    assert not cfg.snapshot_schedule.enabled
    assert SnapshotSettings.from_config(cfg) == SnapshotSettings(
        scan_interval_s=5.0, settle_s=2.0, ingest_bytes_per_s=0
    )


def test_snapshot_settings_resolve_set_then_env_then_file(tmp_path: Path) -> None:
    """--set beats AILURUS_<KEY> beats the file's set: mapping; none is a topic default."""
    path = tmp_path / "c.yaml"
    path.write_text(
        "set:\n"
        "  snapshot.scan.interval.ms: 100\n"
        "  snapshot.settle.ms: 300\n"
        "  snapshot.ingest.bytes.per.sec: 1000\n"
        "  snapshot.schedule.topics: from-file\n"
        "  snapshot.schedule.interval: 5m\n"
        "  snapshot.schedule.with_group_offsets: true\n"
        "  snapshot.retention.keep_last: 3\n"
    )
    env = {
        "AILURUS_SNAPSHOT_SETTLE_MS": "400",
        "AILURUS_SNAPSHOT_SCHEDULE_TOPICS": "from-env",
        "AILURUS_SNAPSHOT_SCHEDULE_INTERVAL": "10m",
        "AILURUS_SNAPSHOT_SCHEDULE_COMPRESSION": "zstd",
        "AILURUS_SNAPSHOT_SCHEDULE_PUSH_ENDPOINT_URL": "",  # empty: unset
        "AILURUS_SNAPSHOT_RETENTION_MAX_AGE": "7d",
    }
    cfg = resolve(
        flags={},
        sets={
            "snapshot.ingest.bytes.per.sec": "2000",
            "snapshot.schedule.topics": "x*, orders",
            "snapshot.schedule.full_every": "6",
        },
        config_file=path,
        env=env,
    )
    assert (
        cfg.snapshot_scan_interval_ms,
        cfg.snapshot_settle_ms,
        cfg.snapshot_ingest_bytes_per_sec,
    ) == (100, 400, 2000)
    assert cfg.snapshot_schedule == ScheduleSettings(
        topics=("x*", "orders"),
        interval_s=600.0,
        full_every=6,
        compression="zstd",
        with_group_offsets=True,
        keep_last=3,
        max_age_s=7 * 86400.0,
    )
    assert dict(cfg.topic_defaults) == {}
    assert SnapshotSettings.from_config(cfg) == SnapshotSettings(
        scan_interval_s=0.1, settle_s=0.4, ingest_bytes_per_s=2000
    )


def test_every_snapshot_key_has_its_documented_environment_variable() -> None:
    """The documented AILURUS_SNAPSHOT_* names (docs/disaster-recovery.md) keep working."""
    names = {
        "snapshot.scan.interval.ms": "AILURUS_SNAPSHOT_SCAN_INTERVAL_MS",
        "snapshot.settle.ms": "AILURUS_SNAPSHOT_SETTLE_MS",
        "snapshot.ingest.bytes.per.sec": "AILURUS_SNAPSHOT_INGEST_BYTES_PER_SEC",
        "snapshot.schedule.full_every": "AILURUS_SNAPSHOT_SCHEDULE_FULL_EVERY",
        "snapshot.retention.keep_last": "AILURUS_SNAPSHOT_RETENTION_KEEP_LAST",
    }
    for key, name in names.items():
        assert env_name(key) == name
    docs = (
        Path(__file__).resolve().parents[2] / "docs/disaster-recovery.md"
    ).read_text()
    for key in SCHEDULE_KEYS:
        assert f"`{key}`" in docs, key
        assert env_name(key) in docs, key
    assert "--set snapshot.schedule.topics=" in docs
    cfg = resolve(
        flags={},
        sets={},
        env={
            "AILURUS_SNAPSHOT_SCAN_INTERVAL_MS": "250",
            "AILURUS_SNAPSHOT_SCHEDULE_TOPICS": "dr-*",
            "AILURUS_SNAPSHOT_SCHEDULE_PUSH_URL": "file:///offsite",
        },
    )
    assert cfg.snapshot_scan_interval_ms == 250
    assert cfg.snapshot_schedule.topics == ("dr-*",)
    assert cfg.snapshot_schedule.push_url == "file:///offsite"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("snapshot.scan.interval.ms", "soon"),
        ("snapshot.scan.interval.ms", "0"),
        ("snapshot.settle.ms", "-1"),
        ("snapshot.ingest.bytes.per.sec", "-5"),
        ("snapshot.schedule.interval", "10ms"),
        ("snapshot.schedule.compression", "brotli"),
        ("snapshot.schedule.with_group_offsets", "maybe"),
        ("snapshot.retention.keep_last", "0"),
        ("snapshot.retention.max_age", "a week"),
    ],
)
def test_malformed_snapshot_settings_are_config_errors(key: str, value: str) -> None:
    """A bad snapshot value, from --set or the environment, names its key."""
    pattern = key.replace(".", r"\.")
    with pytest.raises(ConfigError, match=pattern):
        resolve(flags={}, sets={key: value}, env={})
    with pytest.raises(ConfigError, match=pattern):
        resolve(flags={}, sets={}, env={env_name(key): value})


def test_serve_passes_snapshot_settings_from_set_and_env(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`ailurus serve --set snapshot.schedule.topics=x*` is a broker setting, not a
    topic default; AILURUS_SNAPSHOT_* variables still reach the config; a bad one
    is a usage error naming it."""
    seen: list[BrokerConfig] = []
    monkeypatch.setattr(broker.server, "run", lambda cfg: seen.append(cfg) or 0)
    result = CliRunner().invoke(
        cli,
        ["serve", "--set", "snapshot.schedule.topics=x*"],
        env={"AILURUS_SNAPSHOT_SETTLE_MS": "700"},
    )
    assert result.exit_code == 0, result.output
    assert seen[0].snapshot_schedule.topics == ("x*",)
    assert seen[0].snapshot_settle_ms == 700
    assert "snapshot.schedule.topics" not in seen[0].topic_defaults
    bad = CliRunner().invoke(
        cli, ["serve"], env={"AILURUS_SNAPSHOT_SCHEDULE_INTERVAL": "whenever"}
    )
    assert bad.exit_code == 2
    assert "snapshot.schedule.interval" in bad.output


def test_serve_help_documents_the_snapshot_keys() -> None:
    """`ailurus serve --help` names every snapshot --set key and its env form."""
    out = " ".join(CliRunner().invoke(serve, ["--help"]).output.split())
    for key in ("snapshot.scan.interval.ms", "snapshot.settle.ms"):
        assert key in out
    assert "snapshot.ingest.bytes.per.sec" in out.replace(" ", "")
    for key in SCHEDULE_KEYS:
        assert key in out, key
    assert "AILURUS_SNAPSHOT_SCHEDULE_TOPICS" in out


def test_set_schedule_topics_reaches_the_running_scheduler(tmp_path: Path) -> None:
    """A broker started with --set snapshot.schedule.topics=x* runs that schedule."""
    proc = start_broker(
        tmp_path / "data",
        "--set",
        "snapshot.schedule.topics=x*",
        "--set",
        "snapshot.schedule.interval=1h",
        "--set",
        "snapshot.scan.interval.ms=250",
    )
    try:
        status, body = proc.http("/v1/snapshots/schedule")
        assert status == 200, body
        schedule = json.loads(body)
        assert schedule["enabled"] is True
        assert schedule["topics"] == ["x*"]
        assert schedule["interval_s"] == 3600.0
        started = proc.events("snapshot_schedule_started")
        assert started
        assert started[0]["topics"] == ["x*"]
    finally:
        assert proc.stop() == 0


def test_partition_and_descriptor_caps_resolve_and_derive(tmp_path: Path) -> None:
    """The caps come from --set or the file's set: mapping; unset ones are derived
    from the descriptor limit (a reserve kept for connections)."""
    cfg = resolve(flags={}, sets={}, env={})
    assert (cfg.max_partitions, cfg.max_open_segment_files) == (None, None)
    assert cfg.max_partitions_per_request == 5_000
    assert cfg.auto_create_topics_per_request == 100
    derived = storage_limits(cfg, nofile=20_000)
    assert derived.max_partitions == 20_000 - 10_000 - 256
    assert derived.max_open_segment_files == (20_000 - 10_000 - 256) // 4
    file = tmp_path / "c.yaml"
    file.write_text("set:\n  ailurus.max.partitions: 700\n")
    cfg = resolve(
        flags={},
        sets={
            "ailurus.max.open.segment.files": "64",
            "ailurus.max.partitions.per.request": "300",
            "ailurus.auto.create.topics.per.request": "0",
        },
        config_file=file,
        env={},
    )
    assert cfg.max_partitions == 700
    assert cfg.auto_create_topics_per_request == 0
    assert storage_limits(cfg, nofile=20_000).max_open_segment_files == 64
    assert storage_limits(cfg, nofile=20_000).max_partitions == 700
    assert cfg.max_partitions_per_request == 300
    for key in ("ailurus.max.partitions", "ailurus.max.open.segment.files"):
        with pytest.raises(ConfigError, match=key):
            resolve(flags={}, sets={key: "0"}, env={})


def test_transactional_id_expiration_defaults_to_kafkas() -> None:
    """transactional.id.expiration.ms (7 days) and its sweep's period (1 hour)
    default to Kafka's and must be positive."""
    cfg = resolve(flags={}, sets={})
    assert cfg.transactional_id_expiration_ms == 604_800_000
    assert cfg.transaction_remove_expired_interval_ms == 3_600_000
    cfg = resolve(flags={}, sets={"transactional.id.expiration.ms": "60000"})
    assert cfg.transactional_id_expiration_ms == 60_000
    with pytest.raises(ConfigError, match=r"transactional\.id\.expiration\.ms"):
        resolve(flags={}, sets={"transactional.id.expiration.ms": "0"})
