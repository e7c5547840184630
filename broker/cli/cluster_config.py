"""``ailurus cluster config``: the dynamic broker configs, over the Kafka protocol.

``get`` shows one broker's configs (DescribeConfigs of its BROKER resource: value,
source, read-only), ``set`` changes them live (IncrementalAlterConfigs; without
``--broker`` the cluster-wide default, Kafka's ``<default>`` entity, else that
broker's own value), ``list`` shows every dynamic value that is set, cluster-wide
and per broker. The keys are Kafka's broker names (``log.retention.ms``,
``log.segment.bytes``, ``message.max.bytes``, ...): docs/configs.md.
"""

from __future__ import annotations

import click

from broker.cli.output import echo_json, is_json, print_table, run_command
from broker.cli.topic import make_client, parse_pairs
from broker.client import admin as config_admin
from broker.client.errors import InvalidArgument


@click.group(
    name="config",
    epilog="""\b
Examples:
  ailurus cluster config get log.retention.ms
  ailurus cluster config set log.retention.ms=3600000            # every broker
  ailurus cluster config set message.max.bytes=2097152 --broker 2
  ailurus cluster config set --delete log.retention.ms
  ailurus cluster config list
""",
)
def config() -> None:
    """Read and change the dynamic broker configs (live, persisted)."""


@config.command()
@click.argument("key", required=False)
@click.option("--broker", "node", type=int, default=None, help="Broker id.")
@run_command
def get(key: str | None, node: int | None) -> None:
    """Show a broker's configs (default: the controller's), or one KEY."""
    with make_client() as client:
        if node is None:
            node = client.metadata([]).controller_id
        entries = config_admin.describe_configs(
            client, str(node), resource_type=config_admin.BROKER_RESOURCE
        )
    if key is not None:
        entries = [e for e in entries if e.name == key]
        if not entries:
            raise InvalidArgument(f"broker {node} has no config {key!r}")
    rows = [
        {
            "name": e.name,
            "value": e.value,
            "source": e.source,
            "read_only": e.read_only,
        }
        for e in entries
    ]
    if is_json():
        echo_json({"broker": node, "configs": rows})
        return
    print_table(
        ["key", "value", "source", "read-only"],
        [(r["name"], r["value"], r["source"], r["read_only"]) for r in rows],
    )


@config.command(name="set")
@click.argument("pairs", nargs=-1)
@click.option(
    "--broker",
    "node",
    type=int,
    default=None,
    help="Only this broker (default: the cluster-wide default).",
)
@click.option("--delete", "deletes", multiple=True, help="Remove a dynamic value.")
@click.option("--dry-run", is_flag=True, help="Validate only; change nothing.")
@run_command
def set_(
    pairs: tuple[str, ...], node: int | None, deletes: tuple[str, ...], dry_run: bool
) -> None:
    """Set dynamic broker configs: KEY=VALUE ..."""
    changes: list[tuple[str, int, str | None]] = [
        (k, config_admin.OP_SET, v)
        for k, v in parse_pairs(pairs, "=", "config").items()
    ]
    changes += [(k, config_admin.OP_DELETE, None) for k in deletes]
    if not changes:
        raise InvalidArgument("nothing to change: give KEY=VALUE or --delete KEY")
    scope = "" if node is None else str(node)
    with make_client() as client:
        config_admin.alter_configs(
            client,
            scope,
            changes,
            resource_type=config_admin.BROKER_RESOURCE,
            validate_only=dry_run,
        )
    target = "cluster-wide" if node is None else f"broker {node}"
    rows = [
        {"scope": target, "name": k, "value": v, "deleted": v is None}
        for k, _, v in changes
    ]
    if is_json():
        echo_json({"validated_only": dry_run, "changes": rows})
        return
    status = "OK (validated)" if dry_run else "OK"
    print_table(
        ["scope", "key", "value", "status"],
        [
            (r["scope"], r["name"], "(deleted)" if r["deleted"] else r["value"], status)
            for r in rows
        ],
    )


@config.command(name="list")
@run_command
def list_() -> None:
    """List every dynamic broker config that is set, cluster-wide and per broker."""
    with make_client() as client:
        brokers = sorted(b.node_id for b in client.metadata([]).brokers)
        scopes = [("cluster-wide", "")] + [(f"broker {n}", str(n)) for n in brokers]
        described = [
            (
                label,
                config_admin.describe_configs(
                    client, name, resource_type=config_admin.BROKER_RESOURCE
                ),
            )
            for label, name in scopes
        ]
    rows: list[dict[str, object]] = [
        {"scope": label, "name": e.name, "value": e.value}
        for label, entries in described
        for e in entries
        # the "" resource lists only cluster-wide values; a broker's own ones are
        # the dynamic-broker entries of its resource
        if label == "cluster-wide" or e.source == "dynamic-broker"
    ]
    if is_json():
        echo_json({"configs": rows})
        return
    print_table(
        ["scope", "key", "value"], [(r["scope"], r["name"], r["value"]) for r in rows]
    )
