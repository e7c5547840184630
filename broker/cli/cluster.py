"""``ailurus cluster``: ``info`` (brokers, partitions per broker, topics, versions, over
Kafka), ``health`` (rpk's overview: the admin API's readiness, a controller, every
partition led; exit status for scripts; a warning for transactions open past their
timeout), and over the admin API ``partitions`` (leader,
epoch, replicas, ISR per partition), ``elect`` (preferred leader) and ``reassign``
(move a partition's replicas; cluster mode, docs/cluster.md); ``config`` (the dynamic
broker configs, :mod:`broker.cli.cluster_config`).
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Final
from urllib.parse import quote

import click

from broker.cli import cluster_config
from broker.cli.admin_http import admin_request
from broker.cli.output import (
    echo_json,
    is_json,
    options,
    print_pairs,
    print_table,
    run_command,
)
from broker.cli.settings import current_settings
from broker.cli.topic import make_client
from broker.client import KafkaClient
from broker.client import transactions as txn_ops
from broker.client.auth import Security
from broker.client.errors import ClientError
from broker.client.types import ClusterInfo

_READY_PATH: Final = "/v1/status/ready"


def _cli_version() -> str:
    try:
        return version("ailurus")
    except PackageNotFoundError:
        return "unknown"


@click.group(
    name="cluster",
    epilog="""\b
Examples:
  ailurus cluster info
  ailurus cluster health --exit-when-healthy --timeout 30
  ailurus cluster info -X tls.enabled=true -X tls.ca=ca.pem
  ailurus cluster partitions orders
  ailurus cluster elect orders:3
  ailurus cluster reassign orders:3 --replicas 2,3,1
""",
)
def cluster() -> None:
    """Inspect the cluster (brokers, partitions, health); elect leaders, move replicas."""


COMMAND = cluster
cluster.add_command(cluster_config.config)


def _per_broker(meta: ClusterInfo) -> dict[int, tuple[int, int]]:
    """Node id -> (partitions it leads, partitions it holds a replica of)."""
    counts = {b.node_id: [0, 0] for b in meta.brokers}
    for t in meta.topics:
        for p in t.partitions:
            if p.leader in counts:
                counts[p.leader][0] += 1
            for r in p.replicas:
                if r in counts:
                    counts[r][1] += 1
    return {n: (c[0], c[1]) for n, c in counts.items()}


@cluster.command()
@run_command
def info() -> None:
    """Show the cluster id, brokers (with the partitions each leads and hosts), the
    controller and topic counts."""
    with make_client() as client:
        meta = client.metadata()
        conn = client.bootstrap()
        api_count = len(conn.broker_versions)
    partitions = sum(len(t.partitions) for t in meta.topics)
    per_broker = _per_broker(meta)
    data = {
        "cluster_id": meta.cluster_id,
        "controller_id": meta.controller_id,
        "brokers": [
            {
                "node_id": b.node_id,
                "host": b.host,
                "port": b.port,
                "rack": b.rack,
                "is_controller": b.node_id == meta.controller_id,
                "leader_partitions": per_broker[b.node_id][0],
                "replica_partitions": per_broker[b.node_id][1],
            }
            for b in meta.brokers
        ],
        "topics": len([t for t in meta.topics if not t.internal]),
        "internal_topics": len([t for t in meta.topics if t.internal]),
        "partitions": partitions,
        "api_keys": api_count,
        "cli_version": _cli_version(),
    }
    if is_json():
        echo_json(data)
        return
    print_pairs(
        [
            ("CLUSTER", meta.cluster_id),
            ("CONTROLLER", meta.controller_id),
            ("TOPICS", data["topics"]),
            ("PARTITIONS", partitions),
            ("API KEYS", api_count),
            ("CLI VERSION", data["cli_version"]),
        ]
    )
    click.echo()
    print_table(
        ["id", "host", "port", "rack", "leaders", "replicas"],
        [
            (
                f"{b.node_id}*" if b.node_id == meta.controller_id else b.node_id,
                b.host,
                b.port,
                b.rack,
                per_broker[b.node_id][0],
                per_broker[b.node_id][1],
            )
            for b in meta.brokers
        ],
        title="Brokers (* = controller)",
    )


@dataclass(slots=True, kw_only=True)
class Health:
    """One health check's findings."""

    ready: bool = False
    ready_detail: str | None = None
    kafka_reachable: bool = False
    brokers: int = 0
    partitions: int = 0
    controller_id: int = -1
    all_nodes: list[int] = field(default_factory=list)
    nodes_down: list[int] = field(default_factory=list)  # replicas not live
    offline: list[str] = field(default_factory=list)  # topics in error, leaderless
    under_replicated: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    # transactional ids open longer than their timeout: a warning, not unhealthy
    stuck_transactions: list[str] = field(default_factory=list)

    @property
    def reasons(self) -> list[str]:
        """Why the cluster is unhealthy (rpk's "unhealthy reasons"); empty if not."""
        out = []
        if not self.ready:
            out.append("not_ready")
        if not self.kafka_reachable or self.errors:
            out.append("kafka_unreachable")
        elif self.controller_id < 0 or self.controller_id not in self.all_nodes:
            out.append("no_controller")
        if self.offline:
            out.append("leaderless_partitions")
        return out

    @property
    def healthy(self) -> bool:
        return not self.reasons

    def as_json(self) -> dict[str, object]:
        return {
            "healthy": self.healthy,
            "ready": self.ready,
            "ready_detail": self.ready_detail,
            "kafka_reachable": self.kafka_reachable,
            "brokers": self.brokers,
            "partitions": self.partitions,
            "controller_id": self.controller_id,
            "all_nodes": list(self.all_nodes),
            "nodes_down": list(self.nodes_down),
            "offline_partitions": list(self.offline),
            "under_replicated_partitions": list(self.under_replicated),
            "unhealthy_reasons": self.reasons,
            "warnings": ["stuck_transactions"] if self.stuck_transactions else [],
            "stuck_transactions": list(self.stuck_transactions),
            "errors": list(self.errors),
        }


def check_health(
    brokers: str,
    admin_url: str,
    timeout: float = 5.0,
    *,
    security: Security | None = None,
) -> Health:
    """Ask the admin API whether the broker is ready, and Metadata who the brokers
    and the controller are and whether every partition has a leader."""
    health = Health()
    url = admin_url.rstrip("/") + _READY_PATH
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
            health.ready = response.status == 200
            health.ready_detail = _status_text(response.read())
    except urllib.error.HTTPError as exc:
        health.ready_detail = _status_text(exc.read()) or f"HTTP {exc.code}"
    except (http.client.HTTPException, ConnectionResetError) as exc:
        health.ready_detail = (
            f"{admin_url} does not speak the admin HTTP API ({type(exc).__name__}); "
            "is it a Kafka port?"
        )
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        health.ready_detail = f"admin API {admin_url} unreachable: {reason}"
    try:
        with KafkaClient(brokers, timeout=timeout, security=security) as client:
            meta = client.metadata()
            now_ms = time.time_ns() // 1_000_000
            health.stuck_transactions = txn_ops.stuck_transactions(client, now_ms)
        health.kafka_reachable = True
        health.brokers = len(meta.brokers)
        health.controller_id = meta.controller_id
        health.all_nodes = sorted(b.node_id for b in meta.brokers)
        live = set(health.all_nodes)
        down: set[int] = set()
        for t in meta.topics:
            if t.error_code:
                health.offline.append(t.name)
            for p in t.partitions:
                health.partitions += 1
                name = f"{t.name}/{p.partition}"
                if not p.online:
                    health.offline.append(name)
                if len(p.isr) < len(p.replicas):
                    health.under_replicated.append(name)
                down.update(r for r in p.replicas if r not in live)
                down.update(p.offline_replicas)
        health.nodes_down = sorted(down)
    except ClientError as exc:
        health.errors.append(str(exc))
    return health


def _status_text(body: bytes) -> str | None:
    try:
        data = json.loads(body)
    except ValueError:
        return body.decode(errors="replace").strip() or None
    if isinstance(data, dict) and "status" in data:
        return str(data["status"])
    return None


def _listed(items: list[str] | list[int]) -> str:
    return "[" + " ".join(str(i) for i in items) + "]"


def _print_health(health: Health, json_out: bool) -> None:
    if json_out:
        echo_json(health.as_json(), compact=True)
        return
    state = "HEALTHY" if health.healthy else "UNHEALTHY"
    detail = [f"ready={'yes' if health.ready else 'no'}"]
    if health.ready_detail and not health.ready:
        detail.append(f"({health.ready_detail})")
    detail.append(f"brokers={health.brokers}")
    detail.append(f"partitions={health.partitions}")
    if health.offline:
        shown = ",".join(health.offline[:5]) + (
            "..." if len(health.offline) > 5 else ""
        )
        detail.append(f"offline={shown}")
    detail.extend(health.errors)
    click.echo(f"{state}  " + " ".join(detail))
    # then rpk's overview, line for line
    rows = [
        ("Healthy:", str(health.healthy).lower()),
        ("Unhealthy reasons:", _listed(health.reasons)),
        ("Controller ID:", str(health.controller_id)),
        ("All nodes:", _listed(health.all_nodes)),
        ("Nodes down:", _listed(health.nodes_down)),
        (f"Leaderless partitions ({len(health.offline)}):", _listed(health.offline)),
        (
            f"Under-replicated partitions ({len(health.under_replicated)}):",
            _listed(health.under_replicated),
        ),
    ]
    width = max(len(k) for k, _ in rows) + 2
    click.echo("CLUSTER HEALTH OVERVIEW")
    click.echo("=======================")
    for key, value in rows:
        click.echo(f"{key:<{width}}{value}")
    if health.stuck_transactions:
        click.echo(
            f"WARNING: {len(health.stuck_transactions)} transaction(s) open longer "
            f"than their timeout: {_listed(health.stuck_transactions)} "
            "(see `ailurus txn describe ID`)"
        )


@cluster.command()
@click.option(
    "-w", "--watch", is_flag=True, help="Keep checking and print each result."
)
@click.option(
    "-e", "--exit-when-healthy", is_flag=True, help="Wait until healthy, then exit 0."
)
@click.option(
    "--interval",
    type=float,
    default=2.0,
    show_default=True,
    help="Seconds between checks.",
)
@click.option(
    "--timeout",
    type=float,
    default=None,
    help="With --watch/--exit-when-healthy: give up after this many seconds (exit 1).",
)
@run_command
def health(
    watch: bool, exit_when_healthy: bool, interval: float, timeout: float | None
) -> None:
    """Exit 0 when the broker is ready, a controller exists and every partition has a
    leader, else 1. Prints rpk's overview (controller, all nodes, nodes down,
    leaderless and under-replicated partitions)."""
    brokers, admin_url, fmt, _ = options()
    json_out = fmt == "json"
    deadline = None if timeout is None else time.monotonic() + timeout
    last: str | None = None
    while True:
        result = check_health(brokers, admin_url, security=current_settings().security)
        if exit_when_healthy and result.healthy:
            _print_health(result, json_out)
            return
        if not watch and not exit_when_healthy:
            _print_health(result, json_out)
            raise SystemExit(0 if result.healthy else 1)
        shown = json.dumps(result.as_json(), sort_keys=True)
        if watch and shown != last:
            _print_health(result, json_out)
            last = shown
        if deadline is not None and time.monotonic() >= deadline:
            if not watch:
                _print_health(result, json_out)
            raise SystemExit(0 if result.healthy else 1)
        time.sleep(max(interval, 0.05))


# -- partitions, elect, reassign (the admin API) -----------------------------------


def _admin(method: str, path: str, body: object | None = None) -> object:
    settings = current_settings()
    return admin_request(
        settings.admin_url, method, path, body, token=settings.admin_token, timeout=60
    )


def _ids(values: object) -> str:
    return ",".join(str(v) for v in values) if isinstance(values, list) else ""


def _partition_cells(p: dict[str, object]) -> tuple[object, ...]:
    local = p.get("local")
    moving = _ids(p.get("adding_replicas")) or _ids(p.get("removing_replicas"))
    return (
        p.get("topic"),
        p.get("partition"),
        p.get("leader"),
        p.get("leader_epoch"),
        _ids(p.get("replicas")),
        _ids(p.get("isr")),
        _ids(p.get("offline_replicas")) or None,
        (
            f"+{_ids(p.get('adding_replicas'))} -{_ids(p.get('removing_replicas'))}"
            if moving
            else None
        ),
        local.get("high_watermark") if isinstance(local, dict) else None,
    )


_PARTITION_COLUMNS = (
    "topic",
    "partition",
    "leader",
    "epoch",
    "replicas",
    "isr",
    "offline",
    "moving",
    "high watermark",
)


def _print_partitions(rows: list[dict[str, object]]) -> None:
    if is_json():
        echo_json(rows)
        return
    print_table(_PARTITION_COLUMNS, [_partition_cells(p) for p in rows])


def _rows(found: object) -> list[dict[str, object]]:
    if isinstance(found, dict):
        found = [found]
    if not isinstance(found, list):
        raise ClientError("the admin API answered an unexpected shape")
    return [p for p in found if isinstance(p, dict)]


def _topic_partition(value: str, *, required: bool) -> tuple[str, int | None]:
    topic, sep, raw = value.rpartition(":")
    if not sep:
        if required:
            raise ClientError(f"{value!r}: give TOPIC:PARTITION (orders:3)")
        return value, None
    if not raw.isdigit() or not topic:
        raise ClientError(f"{value!r}: the partition after ':' must be a number")
    return topic, int(raw)


@cluster.command()
@click.argument("topic", required=False)
@run_command
def partitions(topic: str | None) -> None:
    """Show each partition's leader, leader epoch, replicas, ISR, offline replicas
    and any reassignment in progress (all topics, or TOPIC's)."""
    path = "/v1/partitions" if topic is None else f"/v1/partitions/{quote(topic)}"
    _print_partitions(_rows(_admin("GET", path)))


@cluster.command()
@click.argument("target", metavar="TOPIC[:PARTITION]")
@click.option(
    "--unclean",
    is_flag=True,
    help="Any live replica may lead, even one out of the ISR (may lose records).",
)
@run_command
def elect(target: str, unclean: bool) -> None:
    """Move leadership back to each partition's preferred (first) replica.

    Without :PARTITION, every partition of TOPIC. Cluster mode only.
    """
    topic, index = _topic_partition(target, required=False)
    if index is None:
        indexes = [
            int(str(p["partition"]))
            for p in _rows(_admin("GET", f"/v1/partitions/{quote(topic)}"))
        ]
    else:
        indexes = [index]
    results: list[dict[str, object]] = []
    failed: list[str] = []
    for i in indexes:
        try:
            results += _rows(
                _admin(
                    "POST",
                    f"/v1/partitions/{quote(topic)}/{i}/elect",
                    {"unclean": unclean},
                )
            )
        except ClientError as exc:
            failed.append(f"{topic}/{i}: {exc}")
    if results or not failed:
        _print_partitions(results)
    if failed:
        for line in failed:
            click.echo(f"error: {line}", err=True)
        raise SystemExit(1)


def _parse_replicas(value: str) -> list[int]:
    if not value.strip():
        return []
    try:
        return [int(v) for v in value.split(",")]
    except ValueError:
        raise ClientError(
            f"--replicas {value!r}: a comma-separated list of node ids (1,2,3)"
        ) from None


@cluster.command()
@click.argument("target", metavar="TOPIC:PARTITION")
@click.option(
    "--replicas",
    required=True,
    help="The new replica list, preferred leader first (1,2,3); '' cancels a "
    "reassignment in progress.",
)
@run_command
def reassign(target: str, replicas: str) -> None:
    """Move a partition's replicas to the given brokers (KIP-455: the new replicas
    join, then the removed ones leave). Cluster mode only."""
    topic, index = _topic_partition(target, required=True)
    _print_partitions(
        _rows(
            _admin(
                "POST",
                f"/v1/partitions/{quote(topic)}/{index}/reassign",
                {"replicas": _parse_replicas(replicas)},
            )
        )
    )
