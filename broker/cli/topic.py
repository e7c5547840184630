"""``ailurus topic``: create, list, describe, alter-config, delete, add-partitions,
trim-prefix,
over the Kafka protocol (works against any Kafka broker); ``produce`` and ``consume``
live in :mod:`broker.cli.topic_io`. ``describe`` of a compacted topic also shows the
log cleaner's status per partition, read from the admin API (``--admin-url``) when
the broker is an Ailurus one.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Sequence

import click

from broker.cli.admin_http import admin_request
from broker.cli.output import (
    echo_json,
    is_json,
    print_pairs,
    print_table,
    run_command,
)
from broker.cli.settings import current_settings
from broker.client import KafkaClient
from broker.client import admin as topic_admin
from broker.client.errors import ClientError, InvalidArgument
from broker.client.types import TopicInfo
from storage.config import DEFAULTS as TOPIC_CONFIG_DEFAULTS
from storage.config import validate as validate_topic_config
from storage.errors import InvalidConfig


def make_client() -> KafkaClient:
    """A client for the brokers and security settings of this run (flags, env, profile)."""
    settings = current_settings()
    return KafkaClient(settings.brokers, security=settings.security)


def parse_pairs(values: Sequence[str], sep: str, what: str) -> dict[str, str]:
    """``k<sep>v`` strings as a dict (split at the first ``sep``)."""
    out: dict[str, str] = {}
    for item in values:
        key, found, value = item.partition(sep)
        if not found or not key:
            raise InvalidArgument(f"bad {what} {item!r}: expected key{sep}value")
        out[key] = value
    return out


def check_topic_configs(config: dict[str, str]) -> dict[str, str]:
    """Check the values of the topic configs this project knows, before sending.

    Some brokers accept any text for an integer config (``retention.ms=abc``); the
    error names the config. Configs unknown here are left to the broker.
    """
    for key, value in config.items():
        if key not in TOPIC_CONFIG_DEFAULTS:
            continue
        try:
            validate_topic_config(key, value)
        except InvalidConfig as exc:
            raise InvalidArgument(str(exc)) from None
    return config


@click.group(
    name="topic",
    epilog="""\b
Examples:
  ailurus topic create orders -p 3 -c retention.ms=86400000
  ailurus topic list
  ailurus topic describe orders
  ailurus topic alter-config orders --set retention.ms=3600000 --delete segment.ms
  echo hi | ailurus topic produce orders -k user-1 -H source:cli
  ailurus topic consume orders -o -10 -n 10
  ailurus topic delete orders
""",
)
def topic() -> None:
    """Create, inspect, delete, produce to and consume from topics."""


COMMAND = topic


# -- admin ------------------------------------------------------------------------------


def _compaction_status(name: str) -> dict[int, dict[str, object]]:
    """Per partition, the log cleaner's status from the admin API of the broker
    at --admin-url (an Ailurus broker; {} when it cannot say)."""
    settings = current_settings()
    try:
        found = admin_request(
            settings.admin_url,
            "GET",
            f"/v1/topics/{urllib.parse.quote(name, safe='')}",
            token=settings.admin_token,
            timeout=5,
        )
    except ClientError:
        return {}
    out: dict[int, dict[str, object]] = {}
    parts = found.get("partitions") if isinstance(found, dict) else None
    for part in parts if isinstance(parts, list) else []:
        status = part.get("compaction") if isinstance(part, dict) else None
        if isinstance(status, dict):
            out[int(part["partition"])] = status
    return out


@topic.command()
@click.argument("names", nargs=-1, required=True)
@click.option("-p", "--partitions", default=1, show_default=True, help="Partitions.")
@click.option(
    "-r", "--replicas", default=-1, help="Replication factor (-1: broker default)."
)
@click.option(
    "-c", "--config", "configs", multiple=True, help="Topic config key=value."
)
@click.option("--dry-run", is_flag=True, help="Validate only; create nothing.")
@run_command
def create(
    names: tuple[str, ...],
    partitions: int,
    replicas: int,
    configs: tuple[str, ...],
    dry_run: bool,
) -> None:
    """Create topics."""
    config = check_topic_configs(parse_pairs(configs, "=", "config"))
    created: list[TopicInfo] = []
    with make_client() as client:
        for name in names:
            info = topic_admin.create_topic(
                client,
                name,
                partitions=partitions,
                replication_factor=replicas,
                configs=config,
                validate_only=dry_run,
            )
            created.append(info)
    if is_json():
        echo_json(
            {
                "topics": [
                    {
                        "name": t.name,
                        "topic_id": t.topic_id_hex,
                        "partitions": len(t.partitions) if not dry_run else partitions,
                        "created": not dry_run,
                    }
                    for t in created
                ]
            }
        )
        return
    print_table(
        ["topic", "status"],
        [(t.name, "OK (validated)" if dry_run else "OK") for t in created],
    )


@topic.command(name="list")
@click.option("-i", "--internal", is_flag=True, help="Include internal topics.")
@run_command
def list_topics(internal: bool) -> None:
    """List topics with their partition and replica counts."""
    with make_client() as client:
        topics = [t for t in client.metadata().topics if internal or not t.internal]
    rows = [
        {
            "name": t.name,
            "topic_id": t.topic_id_hex,
            "partitions": len(t.partitions),
            "replicas": max((len(p.replicas) for p in t.partitions), default=0),
            "internal": t.internal,
        }
        for t in topics
    ]
    if is_json():
        echo_json({"topics": rows})
        return
    print_table(
        ["name", "partitions", "replicas"],
        [(r["name"], r["partitions"], r["replicas"]) for r in rows],
    )


@topic.command()
@click.argument("name")
@run_command
def describe(name: str) -> None:
    """Show a topic's partitions (leader, offsets) and configuration."""
    with make_client() as client:
        info = client.topic(name, refresh=True)
        ids = [p.partition for p in info.partitions]
        starts = client.list_offsets(name, ids, -2)
        ends = client.list_offsets(name, ids, -1)
        configs = topic_admin.describe_configs(client, name)
    partitions: list[dict[str, object]] = [
        {
            "partition": p.partition,
            "leader": p.leader,
            "leader_epoch": p.leader_epoch,
            "replicas": list(p.replicas),
            "isr": list(p.isr),
            "log_start_offset": starts.get(p.partition),
            "high_watermark": ends.get(p.partition),
            "online": p.online,
        }
        for p in info.partitions
    ]
    config_rows = [
        {"name": c.name, "value": c.value, "source": c.source, "read_only": c.read_only}
        for c in configs
    ]
    policy = next((c.value for c in configs if c.name == "cleanup.policy"), "") or ""
    compaction = _compaction_status(name) if "compact" in policy else {}
    for row in partitions:
        found = compaction.get(int(str(row["partition"])))
        if found is not None:
            row["compaction"] = found
    if is_json():
        echo_json(
            {
                "name": info.name,
                "topic_id": info.topic_id_hex,
                "internal": info.internal,
                "partitions": partitions,
                "configs": config_rows,
            }
        )
        return
    print_pairs(
        [
            ("NAME", info.name),
            ("TOPIC ID", info.topic_id_hex),
            ("INTERNAL", info.internal),
            ("PARTITIONS", len(info.partitions)),
        ]
    )
    click.echo()
    print_table(
        [
            "partition",
            "leader",
            "epoch",
            "replicas",
            "log-start-offset",
            "high-watermark",
        ],
        [
            (
                p.partition,
                p.leader,
                p.leader_epoch,
                ",".join(map(str, p.replicas)),
                starts.get(p.partition),
                ends.get(p.partition),
            )
            for p in info.partitions
        ],
        title="Partitions",
    )
    if compaction:
        click.echo()
        print_table(
            ["partition", "state", "dirty-ratio", "cleaned-to", "last-run-ms", "bytes"],
            [
                (
                    p,
                    c.get("state"),
                    c.get("dirty_ratio"),
                    c.get("last_cleaned_offset"),
                    c.get("last_run_ms"),
                    c.get("bytes_cleaned"),
                )
                for p, c in sorted(compaction.items())
            ],
            title="Compaction",
        )
    if config_rows:
        click.echo()
        print_table(
            ["key", "value", "source"],
            [(c["name"], c["value"], c["source"]) for c in config_rows],
            title="Configs",
        )


@topic.command()
@click.argument("names", nargs=-1, required=True)
@run_command
def delete(names: tuple[str, ...]) -> None:
    """Delete topics."""
    with make_client() as client:
        for name in names:
            topic_admin.delete_topic(client, name)
    if is_json():
        echo_json({"deleted": list(names)})
        return
    print_table(["topic", "status"], [(n, "OK") for n in names])


@topic.command(name="add-partitions")
@click.argument("name")
@click.option(
    "-n", "--num", type=int, default=None, help="Partitions to add to the topic."
)
@click.option("--total", type=int, default=None, help="Grow the topic to this many.")
@run_command
def add_partitions(name: str, num: int | None, total: int | None) -> None:
    """Add partitions to a topic (existing records stay where they are)."""
    if (num is None) == (total is None):
        raise InvalidArgument("give exactly one of --num N (to add) or --total N")
    with make_client() as client:
        current = len(client.topic(name, refresh=True).partitions)
        target = current + num if num is not None else total
        assert target is not None
        topic_admin.add_partitions(client, name, target)
    if is_json():
        echo_json({"name": name, "partitions": target, "previous_partitions": current})
        return
    click.echo(f"{name}: {current} -> {target} partitions")


@topic.command(name="trim-prefix")
@click.argument("name")
@click.option(
    "-o",
    "--offset",
    required=True,
    help="Delete records before this offset ('end' deletes everything).",
)
@click.option(
    "-p",
    "--partition",
    "partitions",
    type=int,
    multiple=True,
    help="Partitions (default all).",
)
@run_command
def trim_prefix(name: str, offset: str, partitions: tuple[int, ...]) -> None:
    """Delete the records before an offset (DeleteRecords)."""
    if offset == "end":
        target = -1
    else:
        try:
            target = int(offset)
        except ValueError:
            raise InvalidArgument(f"bad offset {offset!r}: a number or 'end'") from None
        if target < 0:
            raise InvalidArgument("the offset must be >= 0 (or 'end')")
    with make_client() as client:
        info = client.topic(name, refresh=True)
        ids = list(partitions) or [p.partition for p in info.partitions]
        result = topic_admin.delete_records(client, name, dict.fromkeys(ids, target))
    rows = [{"partition": p, "log_start_offset": o} for p, o in sorted(result.items())]
    if is_json():
        echo_json({"name": name, "partitions": rows})
        return
    print_table(
        ["partition", "log-start-offset"],
        [(r["partition"], r["log_start_offset"]) for r in rows],
    )


@topic.command(name="alter-config")
@click.argument("name")
@click.option("--set", "sets", multiple=True, help="Set a config: key=value.")
@click.option("--delete", "deletes", multiple=True, help="Remove an override: key.")
@click.option("--append", "appends", multiple=True, help="Add to a list: key=item.")
@click.option(
    "--subtract", "subtracts", multiple=True, help="Remove from a list: key=item."
)
@click.option("--dry-run", is_flag=True, help="Validate only; change nothing.")
@run_command
def alter_config(
    name: str,
    sets: tuple[str, ...],
    deletes: tuple[str, ...],
    appends: tuple[str, ...],
    subtracts: tuple[str, ...],
    dry_run: bool,
) -> None:
    """Change a topic's config overrides, live (IncrementalAlterConfigs)."""
    changes: list[tuple[str, int, str | None]] = [
        (k, topic_admin.OP_SET, v)
        for k, v in check_topic_configs(parse_pairs(sets, "=", "--set")).items()
    ]
    changes += [(k, topic_admin.OP_DELETE, None) for k in deletes]
    for op, given in (
        (topic_admin.OP_APPEND, appends),
        (topic_admin.OP_SUBTRACT, subtracts),
    ):
        changes += [(k, op, v) for k, v in parse_pairs(given, "=", "list item").items()]
    if not changes:
        raise InvalidArgument(
            "nothing to change: give --set, --delete, --append or --subtract"
        )
    with make_client() as client:
        topic_admin.alter_configs(client, name, changes, validate_only=dry_run)
        configs = [] if dry_run else topic_admin.describe_configs(client, name)
    changed = {k for k, _, _ in changes}
    rows = [
        {"name": c.name, "value": c.value, "source": c.source}
        for c in configs
        if c.name in changed
    ]
    if is_json():
        echo_json({"name": name, "validated_only": dry_run, "configs": rows})
        return
    if dry_run:
        print_table(["topic", "status"], [(name, "OK (validated)")])
        return
    print_table(
        ["key", "value", "source"], [(r["name"], r["value"], r["source"]) for r in rows]
    )
