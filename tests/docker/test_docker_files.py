"""The Dockerfile passes hadolint; every compose file validates and configures the
broker with settings its own config resolver accepts (no Docker daemon needed)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest

from broker.cli.main import _register_commands, cli
from broker.config import parse_listeners, parse_set, resolve
from broker.snapshots.scheduler import KEYS as SCHEDULE_KEYS
from broker.snapshots.scheduler import env_name
from tests._broker import start_broker

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
COMPOSE_FILES = (
    "docker-compose.yml",
    "docker-compose.dr.yml",
    "docker-compose.cluster.yml",
)


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(
        name
    )
    if found is None:
        pytest.fail(
            f"{name} not found: install the test extra (pip install -e '.[test]')"
        )
    return found


def _compose_config(name: str) -> dict[str, Any]:
    out = subprocess.run(
        [
            _tool("docker-compose"),
            "-f",
            str(DOCKER / name),
            "--profile",  # the optional services too (the dev file's cli)
            "tools",
            "config",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=DOCKER,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    config: dict[str, Any] = json.loads(out.stdout)
    return config


def _dockerfile_env() -> dict[str, str]:
    """The ENV settings of the Dockerfile's final stage."""
    text = (DOCKER / "Dockerfile").read_text().replace("\\\n", " ")
    final = text.rsplit("\nFROM ", 1)[1]
    env: dict[str, str] = {}
    for line in final.splitlines():
        if line.startswith("ENV "):
            env.update(re.findall(r"(\w+)=(\S+)", line))
    return env


def _healthcheck_command() -> list[str]:
    """The exec-form CMD of the Dockerfile's HEALTHCHECK."""
    text = (DOCKER / "Dockerfile").read_text().replace("\\\n", " ")
    match = re.search(r"^HEALTHCHECK .*? CMD (\[.*\])$", text, re.MULTILINE)
    assert match is not None, "no exec-form HEALTHCHECK CMD"
    command: list[str] = json.loads(match.group(1))
    return command


def _known_envvars() -> set[str]:
    """Every AILURUS_* variable some ``ailurus`` command reads."""
    _register_commands()
    names: set[str] = set()

    def walk(command: click.Command) -> None:
        for param in command.params:
            envvar = getattr(param, "envvar", None)
            if isinstance(envvar, str):
                names.add(envvar)
            elif envvar:
                names.update(envvar)
        if isinstance(command, click.Group):
            for sub in command.commands.values():
                walk(sub)

    walk(cli)
    # the broker's snapshot scheduler reads its settings from the environment
    names.update(env_name(key) for key in SCHEDULE_KEYS)
    return names


def _serve_flags(env: dict[str, str]) -> dict[str, object]:
    """The ``serve`` flags an environment gives (what click would read)."""
    keys = {
        "AILURUS_DATA_DIR": "data_dir",
        "AILURUS_KAFKA_ADDR": "kafka_addr",
        "AILURUS_ADVERTISE_KAFKA_ADDR": "advertise_kafka_addr",
        "AILURUS_ADMIN_ADDR": "admin_addr",
        "AILURUS_NODE_ID": "node_id",
        "AILURUS_CLUSTER": "cluster",
        "AILURUS_RACK": "rack",
        "AILURUS_LOG_LEVEL": "log_level",
        "AILURUS_LOG_FORMAT": "log_format",
        "AILURUS_ADMIN_TOKEN": "admin_token",
    }
    return {flag: env[var] for var, flag in keys.items() if env.get(var)}


def test_dockerfile_passes_hadolint() -> None:
    """hadolint reports nothing, down to style rules."""
    out = subprocess.run(
        [
            _tool("hadolint"),
            "--no-color",
            "--failure-threshold",
            "style",
            str(DOCKER / "Dockerfile"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip() == ""


def test_dockerfile_runs_serve_as_non_root_with_a_data_volume() -> None:
    """Entry point, user, volume, ports and health check are the documented ones."""
    text = (DOCKER / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["ailurus", "serve"]' in text
    assert re.search(r"^USER \$\{AILURUS_UID\}", text, re.MULTILINE)
    assert 'VOLUME ["/var/lib/ailurus"]' in text
    assert "EXPOSE 9092 19092 9644" in text
    assert _healthcheck_command()[:2] == ["ailurus", "check"]
    assert text.count("\nFROM ") == 2  # multi-stage: wheels, then runtime


def test_dockerfile_environment_is_a_valid_broker_config() -> None:
    """The image's AILURUS_* defaults resolve to a broker with both listeners."""
    env = _dockerfile_env()
    unknown = {k for k in env if k.startswith("AILURUS_")} - _known_envvars()
    assert not unknown, f"no command reads {sorted(unknown)}"
    config = resolve(flags=_serve_flags(env), sets={}, env=env)
    assert str(config.data_dir) == "/var/lib/ailurus"
    ports = {lc.name: (lc.bind.port, lc.advertised) for lc in config.listeners}
    assert ports["internal"][0] == 9092
    assert ports["external"][0] == 19092
    assert config.admin is not None
    assert config.admin.port == 9644


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_compose_file_validates(name: str) -> None:
    """``docker compose config`` accepts the file and every service's settings resolve."""
    config = _compose_config(name)
    known = _known_envvars()
    for service_name, service in config["services"].items():
        env = {
            k: v for k, v in (service.get("environment") or {}).items() if v is not None
        }
        unknown = {k for k in env if k.startswith("AILURUS_")} - known
        assert not unknown, f"{service_name}: no command reads {sorted(unknown)}"
        if "AILURUS_KAFKA_ADDR" in env:
            resolve(flags=_serve_flags(env), sets={}, env=env)


def test_dev_compose_serves_containers_and_the_host() -> None:
    """ailurus:9092 is advertised inside the network, localhost:19092 to the host."""
    service = _compose_config("docker-compose.yml")["services"]["ailurus"]
    env = service["environment"]
    listeners = {
        lc.name: lc
        for lc in parse_listeners(
            env["AILURUS_KAFKA_ADDR"], env["AILURUS_ADVERTISE_KAFKA_ADDR"]
        )
    }
    internal, external = listeners["internal"], listeners["external"]
    assert internal.advertised is not None
    assert external.advertised is not None
    assert (internal.advertised.host, internal.advertised.port) == ("ailurus", 9092)
    assert (external.advertised.host, external.advertised.port) == ("localhost", 19092)
    assert {(p["target"], str(p["published"])) for p in service["ports"]} >= {
        (19092, "19092")
    }
    mounts = {(v["type"], v["target"]): v["source"] for v in service["volumes"]}
    assert mounts[("volume", "/var/lib/ailurus")] == "ailurus-data"
    assert mounts[("bind", "/var/lib/ailurus/snapshots")] == str(DOCKER / "snapshots")


def test_dr_compose_has_primary_standby_and_a_one_shot_seed() -> None:
    """Seed runs to completion before the primary; standby and primary use own volumes."""
    services = _compose_config("docker-compose.dr.yml")["services"]
    assert {"seed", "primary", "standby", "puller"} <= set(services)
    # the primary snapshots and pushes on its own schedule (no sidecar loop)
    primary_env = services["primary"]["environment"]
    assert primary_env["AILURUS_SNAPSHOT_SCHEDULE_TOPICS"]
    assert primary_env["AILURUS_SNAPSHOT_SCHEDULE_PUSH_URL"]
    assert services["primary"]["depends_on"]["seed"]["condition"] == (
        "service_completed_successfully"
    )
    assert services["seed"]["restart"] == "no"
    assert services["seed"]["command"][:2] == ["snapshot", "pull"]

    def data_volume(name: str) -> str:
        [source] = [
            v["source"]
            for v in services[name]["volumes"]
            if v["target"] == "/var/lib/ailurus"
        ]
        return str(source)

    assert data_volume("primary") != data_volume("standby")
    assert data_volume("seed") == data_volume("primary")
    assert data_volume("puller") == data_volume("standby")


def test_healthcheck_speaks_kafka_and_needs_no_admin_api(tmp_path: Path) -> None:
    """The image's health check passes against a broker whose admin API is off,
    and fails (non-zero, one line) when nothing serves Kafka there."""
    command = _healthcheck_command()
    script = Path(sys.executable).parent / command[0]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AILURUS_")}
    b = start_broker(tmp_path / "data", "--admin-addr", "none")
    try:
        assert b.admin_port == 0  # no admin API
        ok = subprocess.run(
            [str(script), *command[1:]],
            env={**env, "AILURUS_BROKERS": b.bootstrap},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert ok.returncode == 0, ok.stderr
        assert ok.stdout.startswith(f"ok: {b.bootstrap} answers Kafka requests")
    finally:
        assert b.stop() == 0
    down = subprocess.run(
        [str(script), *command[1:]],
        env={**env, "AILURUS_BROKERS": b.bootstrap},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert down.returncode == 1
    assert down.stdout == ""
    [line] = down.stderr.splitlines()
    assert line.startswith(f"error: broker {b.bootstrap} unreachable")


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_compose_publishes_ports_on_loopback_only(name: str) -> None:
    """Every published port is bound to the host's 127.0.0.1, none to all interfaces."""
    services = _compose_config(name)["services"]
    published = [
        (service_name, port)
        for service_name, service in services.items()
        for port in service.get("ports") or []
    ]
    assert published
    for service_name, port in published:
        assert port.get("host_ip") == "127.0.0.1", (service_name, port)


def test_compose_cli_uses_the_brokers_admin_token() -> None:
    """The cli service gets the same admin token as the broker (mutating calls)."""
    services = _compose_config("docker-compose.yml")["services"]
    token = services["ailurus"]["environment"]["AILURUS_ADMIN_TOKEN"]
    assert token
    assert services["cli"]["environment"]["AILURUS_ADMIN_TOKEN"] == token


def test_cluster_compose_runs_three_brokers_on_one_etcd() -> None:
    """etcd and brokers 1-3 (``AILURUS_CLUSTER=etcd://etcd:2379/ailurus``, node ids
    from ``AILURUS_NODE_ID``, no rack unless ``AILURUS_RACK_N`` is set), each broker
    advertised as broker-N:9092 inside the network and localhost:N9092 to the host,
    new topics with three replicas and min.insync.replicas=2 by default,
    started once etcd is healthy and healthy once its admin API says ready."""
    services = _compose_config("docker-compose.cluster.yml")["services"]
    assert {"etcd", "broker-1", "broker-2", "broker-3", "cli"} <= set(services)
    etcd = services["etcd"]
    assert etcd["image"].startswith("quay.io/coreos/etcd:v3.5.")
    assert etcd["healthcheck"]["test"][:2] == ["CMD", "etcdctl"]
    assert "endpoint" in etcd["healthcheck"]["test"]
    assert "--advertise-client-urls=http://etcd:2379" in etcd["command"]
    volumes = set()
    for n in (1, 2, 3):
        broker = services[f"broker-{n}"]
        env = broker["environment"]
        assert env["AILURUS_NODE_ID"] == str(n)
        assert not broker.get("command")  # the image's `ailurus serve`, env only
        assert broker["depends_on"]["etcd"]["condition"] == "service_healthy"
        # click splits AILURUS_SET on whitespace into --set items
        sets = parse_set(env["AILURUS_SET"].split())
        config = resolve(flags=_serve_flags(env), sets=sets, env=env)
        assert config.node_id == n
        assert config.cluster is not None
        assert config.cluster.endpoints == (("etcd", 2379),)
        assert config.cluster.prefix == "/ailurus"
        assert config.cluster.rack is None
        # RF=3 and min.insync.replicas=2 for new topics unless AILURUS_SET overrides
        assert config.cluster.default_replication_factor == 3
        assert config.topic_defaults["min.insync.replicas"] == "2"
        listeners = {lc.name: lc.advertised for lc in config.listeners}
        internal, external = listeners["internal"], listeners["external"]
        assert internal is not None
        assert external is not None
        assert (internal.host, internal.port) == (f"broker-{n}", 9092)
        assert (external.host, external.port) == ("localhost", n * 10000 + 9092)
        published = {(p["target"], str(p["published"])) for p in broker["ports"]}
        assert (19092, str(external.port)) in published
        test = " ".join(broker["healthcheck"]["test"])
        assert "http://127.0.0.1:9644/v1/status/ready" in test
        [data] = [v for v in broker["volumes"] if v["target"] == "/var/lib/ailurus"]
        volumes.add(data["source"])
    assert len(volumes) == 3  # a data dir per broker
    cli = services["cli"]
    assert {name: dep["condition"] for name, dep in cli["depends_on"].items()} == {
        f"broker-{n}": "service_healthy" for n in (1, 2, 3)
    }
    assert (
        cli["environment"]["AILURUS_ADMIN_TOKEN"]
        == (services["broker-1"]["environment"]["AILURUS_ADMIN_TOKEN"])
    )
