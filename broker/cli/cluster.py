"""``ailurus cluster``: ``info`` (brokers, topics, versions, over Kafka) and ``health``
(the admin API's readiness plus every partition online; exit status for scripts).
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

import click

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
from broker.client.auth import Security
from broker.client.errors import ClientError

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
""",
)
def cluster() -> None:
    """Inspect the cluster: brokers, topics, health."""


COMMAND = cluster


@cluster.command()
@run_command
def info() -> None:
    """Show the cluster id, brokers, controller and topic counts."""
    with make_client() as client:
        meta = client.metadata()
        conn = client.bootstrap()
        api_count = len(conn.broker_versions)
    partitions = sum(len(t.partitions) for t in meta.topics)
    data = {
        "cluster_id": meta.cluster_id,
        "controller_id": meta.controller_id,
        "brokers": [
            {"node_id": b.node_id, "host": b.host, "port": b.port, "rack": b.rack}
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
        ["id", "host", "port", "rack"],
        [
            (
                f"{b.node_id}*" if b.node_id == meta.controller_id else b.node_id,
                b.host,
                b.port,
                b.rack,
            )
            for b in meta.brokers
        ],
        title="Brokers",
    )


@dataclass(slots=True, kw_only=True)
class Health:
    """One health check's findings."""

    ready: bool = False
    ready_detail: str | None = None
    kafka_reachable: bool = False
    brokers: int = 0
    partitions: int = 0
    offline: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return (
            self.ready and self.kafka_reachable and not self.offline and not self.errors
        )

    def as_json(self) -> dict[str, object]:
        return {
            "healthy": self.healthy,
            "ready": self.ready,
            "ready_detail": self.ready_detail,
            "kafka_reachable": self.kafka_reachable,
            "brokers": self.brokers,
            "partitions": self.partitions,
            "offline_partitions": list(self.offline),
            "errors": list(self.errors),
        }


def check_health(
    brokers: str,
    admin_url: str,
    timeout: float = 5.0,
    *,
    security: Security | None = None,
) -> Health:
    """Ask the admin API whether the broker is ready and Metadata whether all is online."""
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
        health.kafka_reachable = True
        health.brokers = len(meta.brokers)
        for t in meta.topics:
            if t.error_code:
                health.offline.append(t.name)
            for p in t.partitions:
                health.partitions += 1
                if not p.online:
                    health.offline.append(f"{t.name}/{p.partition}")
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


@cluster.command()
@click.option("--watch", is_flag=True, help="Keep checking and print each result.")
@click.option(
    "--exit-when-healthy", is_flag=True, help="Wait until healthy, then exit 0."
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
    """Exit 0 when the broker is ready and every partition is online, else 1."""
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
