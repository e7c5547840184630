"""Cluster-mode settings: --cluster, --rack and the cluster --set keys."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import broker.server
from broker.cli.main import cli
from broker.cli.serve import serve
from broker.config import (
    BrokerConfig,
    ClusterSettings,
    ConfigError,
    parse_cluster_url,
    resolve,
)


def test_single_node_has_no_cluster_settings() -> None:
    """Without --cluster the broker is a single node, whatever the cluster keys."""
    cfg = resolve(flags={"rack": "r1"}, sets={"default.replication.factor": "3"})
    assert cfg.cluster is None
    assert "default.replication.factor" not in cfg.topic_defaults


def test_parses_endpoints_and_prefix_of_the_cluster_url() -> None:
    """etcd://host:port[,host:port]/prefix gives the endpoints and the prefix."""
    assert parse_cluster_url("etcd://127.0.0.1:2379/prod") == (
        (("127.0.0.1", 2379),),
        "/prod",
    )
    assert parse_cluster_url("etcd://a:1,b.example:2,[::1]:3/x/y/") == (
        (("a", 1), ("b.example", 2), ("::1", 3)),
        "/x/y",
    )
    assert parse_cluster_url("etcd://h:2379") == ((("h", 2379),), "/ailurus")
    assert parse_cluster_url("etcd://h:2379/") == ((("h", 2379),), "/ailurus")


@pytest.mark.parametrize(
    "bad",
    [
        "h:2379/x",
        "http://h:2379/x",
        "etcd:///x",
        "etcd://h/x",
        "etcd://h:0/x",
        "etcd://h:99999/x",
        "etcd://h:1,,h:2/x",
        "etcd://h:1/a//b",
    ],
)
def test_rejects_malformed_cluster_urls(bad: str) -> None:
    """A malformed --cluster is a config error that names the flag."""
    with pytest.raises(ConfigError, match="--cluster"):
        parse_cluster_url(bad)


def test_cluster_keys_and_rack_configure_cluster_mode() -> None:
    """--set cluster keys and --rack land in ClusterSettings, not topic defaults."""
    cfg = resolve(
        flags={"cluster": "etcd://127.0.0.1:2379/c1", "rack": "eu-1a", "node_id": 3},
        sets={
            "broker.session.timeout.ms": "3000",
            "default.replication.factor": "3",
            "offsets.topic.num.partitions": "8",
            "offsets.topic.replication.factor": "2",
            "ailurus.cluster.request.timeout.ms": "5000",
            "retention.ms": "1000",
        },
    )
    assert cfg.node_id == 3
    assert cfg.cluster == ClusterSettings(
        endpoints=(("127.0.0.1", 2379),),
        prefix="/c1",
        session_timeout_ms=3000,
        rack="eu-1a",
        default_replication_factor=3,
        offsets_partitions=8,
        offsets_replication_factor=2,
        request_timeout_ms=5000,
    )
    assert dict(cfg.topic_defaults) == {"retention.ms": "1000"}


def test_cluster_defaults_are_the_documented_ones() -> None:
    """Unset cluster keys take Kafka's defaults (session 9 s, offsets 16 x 3)."""
    cfg = resolve(flags={"cluster": "etcd://h:1/p"}, sets={})
    assert cfg.cluster is not None
    assert (
        cfg.cluster.session_timeout_ms,
        cfg.cluster.default_replication_factor,
        cfg.cluster.offsets_partitions,
        cfg.cluster.offsets_replication_factor,
        cfg.cluster.request_timeout_ms,
        cfg.cluster.replica_lag_time_max_ms,
        cfg.cluster.rack,
    ) == (9000, 1, 16, 3, 30000, 30000, None)


def test_replica_lag_and_node_id_range_in_a_cluster() -> None:
    """replica.lag.time.max.ms is a cluster key; a node id must fit the producer
    ids' high bits."""
    cfg = resolve(
        flags={"cluster": "etcd://h:1/p"}, sets={"replica.lag.time.max.ms": "5000"}
    )
    assert cfg.cluster is not None
    assert cfg.cluster.replica_lag_time_max_ms == 5000
    with pytest.raises(ConfigError, match="--node-id"):
        resolve(flags={"cluster": "etcd://h:1/p", "node_id": str(1 << 23)}, sets={})


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("default.replication.factor", "three", "must be an integer"),
        ("offsets.topic.num.partitions", "0", "at least 1"),
        ("broker.session.timeout.ms", "500", "at least 2000"),
    ],
)
def test_malformed_cluster_keys_are_config_errors(
    key: str, value: str, message: str
) -> None:
    """A bad cluster key value is a config error naming the key."""
    with pytest.raises(ConfigError, match=message):
        resolve(flags={"cluster": "etcd://h:1/p"}, sets={key: value})


def test_serve_reads_cluster_rack_and_node_id_from_flags_env_and_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AILURUS_CLUSTER, AILURUS_RACK and AILURUS_NODE_ID reach the config; flags
    beat them and they beat the file."""
    seen: list[BrokerConfig] = []
    monkeypatch.setattr(broker.server, "run", lambda cfg: seen.append(cfg) or 0)
    path = tmp_path / "c.yaml"
    path.write_text("cluster: etcd://file:1/f\nrack: file-rack\nnode_id: 1\n")
    env = {
        "AILURUS_CLUSTER": "etcd://env:2/e",
        "AILURUS_NODE_ID": "2",
        "AILURUS_CONFIG": str(path),
    }
    result = CliRunner().invoke(cli, ["serve", "--rack", "flag-rack"], env=env)
    assert result.exit_code == 0, result.output
    cfg = seen[0]
    assert cfg.node_id == 2
    assert cfg.cluster is not None
    assert (cfg.cluster.endpoints, cfg.cluster.prefix, cfg.cluster.rack) == (
        (("env", 2),),
        "/e",
        "flag-rack",
    )
    result = CliRunner().invoke(cli, ["serve"], env={"AILURUS_CONFIG": str(path)})
    assert result.exit_code == 0, result.output
    assert seen[1].cluster is not None
    assert seen[1].cluster.endpoints == (("file", 1),)
    assert seen[1].cluster.rack == "file-rack"


def test_bad_cluster_url_exits_2_naming_the_flag() -> None:
    """`ailurus serve --cluster nonsense` exits 2 with one line naming --cluster."""
    result = CliRunner().invoke(cli, ["serve", "--cluster", "nonsense"])
    assert result.exit_code == 2
    assert "--cluster" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_serve_help_documents_the_cluster_flags() -> None:
    """`ailurus serve --help` lists --cluster, --rack and the cluster keys."""
    out = CliRunner().invoke(serve, ["--help"]).output
    for text in ("--cluster", "--rack", "AILURUS_CLUSTER", "broker.session.timeout.ms"):
        assert text in out


def test_a_single_node_never_imports_the_etcd_client() -> None:
    """The server and the CLI load without aetcd or grpc (cluster mode only)."""
    code = (
        "import sys, broker.server, broker.cli.serve; "
        "print(sorted(m for m in ('aetcd', 'grpc') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    ).stdout
    assert out.strip() == "[]"
