"""``ailurus acl``: Kafka ACLs over the ACL APIs (CreateAcls, DescribeAcls, DeleteAcls).

Unlike ``ailurus user grant`` (rules in one broker's users file), these commands
speak Kafka to a running broker, so they work against a cluster (every broker
applies the ACLs) and against any Kafka-compatible broker with an authorizer. The
caller needs ALTER on the cluster to create and delete, DESCRIBE to list (a super
user has both).

    ailurus acl create --principal User:alice --operation read --topic orders
    ailurus acl create --principal User:alice --operation all --topic logs- --prefixed
    ailurus acl create --principal User:bob --operation write --topic orders --deny
    ailurus acl list --principal User:alice
    ailurus acl delete --principal User:alice --topic orders
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import click

from broker.cli.output import echo_json, is_json, print_table, run_command
from broker.cli.topic import make_client
from broker.client.acls import (
    AclEntry,
    AclQuery,
    create_acls,
    delete_acls,
    describe_acls,
)
from broker.client.errors import InvalidArgument
from broker.security.acl_binding import (
    CLUSTER_NAME,
    AclOperation,
    PatternType,
    Permission,
    ResourceType,
)

P = ParamSpec("P")
T = TypeVar("T")

_OPERATIONS = [
    op.name.lower()
    for op in AclOperation
    if op not in (AclOperation.UNKNOWN, AclOperation.ANY)
]


def _name(value: int, enum_type: Any) -> str:
    try:
        return str(enum_type(value).name.lower())
    except ValueError:
        return str(value)


def _resource_options(func: Callable[P, T]) -> Callable[P, T]:
    """The options that name a resource and its pattern, shared by every command."""
    options = [
        click.option("--topic", help="A topic name (or prefix, with --prefixed)."),
        click.option("--group", help="A consumer group id (or prefix)."),
        click.option("--transactional-id", help="A transactional id (or prefix)."),
        click.option("--cluster", is_flag=True, help="The cluster resource."),
        click.option(
            "--prefixed",
            is_flag=True,
            help="The name is a prefix: the ACL covers every name starting with it.",
        ),
        click.option("--host", help="The client host (default: * for any)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _resource(
    topic: str | None, group: str | None, txn: str | None, cluster: bool
) -> tuple[ResourceType, str | None] | None:
    given = [
        (ResourceType.TOPIC, topic),
        (ResourceType.GROUP, group),
        (ResourceType.TRANSACTIONAL_ID, txn),
    ]
    named = [(t, n) for t, n in given if n is not None]
    if cluster:
        named.append((ResourceType.CLUSTER, CLUSTER_NAME))
    if len(named) > 1:
        raise InvalidArgument(
            "give one of --topic, --group, --transactional-id, --cluster"
        )
    return named[0] if named else None


@click.group(
    name="acl",
    epilog="""\b
Examples:
  ailurus acl create --principal User:alice --operation read --topic orders
  ailurus acl create --principal User:alice --operation all --topic logs- --prefixed
  ailurus acl create --principal User:bob --operation write --topic orders --deny
  ailurus acl list --principal User:alice
  ailurus acl delete --principal User:alice --topic orders
""",
)
def acl() -> None:
    """Manage Kafka ACLs (needs a broker with an authorizer)."""


COMMAND = acl


@acl.command()
@click.option("--principal", required=True, help="User:NAME, or User:* for every user.")
@click.option(
    "--operation",
    "operations",
    multiple=True,
    required=True,
    type=click.Choice(_OPERATIONS, case_sensitive=False),
    help="An operation (repeatable: one ACL each).",
)
@_resource_options
@click.option("--deny", is_flag=True, help="A DENY ACL (wins over every ALLOW).")
@run_command
def create(
    principal: str,
    operations: tuple[str, ...],
    topic: str | None,
    group: str | None,
    transactional_id: str | None,
    cluster: bool,
    prefixed: bool,
    host: str | None,
    deny: bool,
) -> None:
    """Create ACLs: PRINCIPAL may (or, with --deny, may not) do each OPERATION."""
    resource = _resource(topic, group, transactional_id, cluster)
    if resource is None:
        raise InvalidArgument(
            "name a resource: --topic, --group, --transactional-id or --cluster"
        )
    rtype, name = resource
    assert name is not None
    entries = [
        AclEntry(
            resource_type=rtype,
            name=name,
            pattern=PatternType.PREFIXED if prefixed else PatternType.LITERAL,
            principal=principal,
            host=host or "*",
            operation=AclOperation[op.upper()],
            permission=Permission.DENY if deny else Permission.ALLOW,
        )
        for op in dict.fromkeys(o.lower() for o in operations)
    ]
    with make_client() as client:
        create_acls(client, entries)
    if is_json():
        echo_json({"created": [_as_json(e) for e in entries]})
    else:
        click.echo(f"created {len(entries)} ACL{'s' if len(entries) != 1 else ''}")
        _print(entries)


def _filter_command(func: Callable[..., None]) -> Callable[..., None]:
    """The filter options of ``list`` and ``delete`` (all optional: any matches)."""

    @click.option("--principal", help="Only this principal (User:NAME).")
    @click.option(
        "--operation",
        type=click.Choice(_OPERATIONS, case_sensitive=False),
        help="Only this operation.",
    )
    @_resource_options
    @click.option(
        "--match",
        is_flag=True,
        help="Every ACL that applies to the named resource (literal, * and prefixes).",
    )
    @click.option("--allow", is_flag=True, help="Only ALLOW ACLs.")
    @click.option("--deny", is_flag=True, help="Only DENY ACLs.")
    @functools.wraps(func)
    def wrapper(**kwargs: Any) -> None:
        func(**kwargs)

    return wrapper


def _query(
    *,
    principal: str | None,
    operation: str | None,
    topic: str | None,
    group: str | None,
    transactional_id: str | None,
    cluster: bool,
    prefixed: bool,
    host: str | None,
    match: bool,
    allow: bool,
    deny: bool,
) -> AclQuery:
    if prefixed and match:
        raise InvalidArgument("give --prefixed or --match, not both")
    if allow and deny:
        raise InvalidArgument("give --allow or --deny, not both")
    resource = _resource(topic, group, transactional_id, cluster)
    rtype, name = resource if resource is not None else (ResourceType.ANY, None)
    if match:
        pattern = PatternType.MATCH
    elif prefixed:
        pattern = PatternType.PREFIXED
    else:
        pattern = PatternType.ANY if name is None else PatternType.LITERAL
    return AclQuery(
        resource_type=rtype,
        name=name,
        pattern=pattern,
        principal=principal,
        host=host,
        operation=AclOperation[operation.upper()] if operation else AclOperation.ANY,
        permission=Permission.ALLOW
        if allow
        else Permission.DENY
        if deny
        else Permission.ANY,
    )


@acl.command(name="list")
@_filter_command
@run_command
def list_acls(**filters: Any) -> None:
    """List the ACLs that match the filters (all of them without any)."""
    with make_client() as client:
        entries = describe_acls(client, _query(**filters))
    if is_json():
        echo_json({"acls": [_as_json(e) for e in entries]})
    else:
        _print(entries)


@acl.command()
@_filter_command
@click.option("--all", "everything", is_flag=True, help="Delete every ACL.")
@run_command
def delete(everything: bool, **filters: Any) -> None:
    """Delete the ACLs that match the filters (every ACL needs --all)."""
    query = _query(**filters)
    if query == AclQuery() and not everything:
        raise InvalidArgument("no filter given: pass --all to delete every ACL")
    with make_client() as client:
        entries = delete_acls(client, query)
    if is_json():
        echo_json({"deleted": [_as_json(e) for e in entries]})
    else:
        click.echo(f"deleted {len(entries)} ACL{'s' if len(entries) != 1 else ''}")
        _print(entries)


def _as_json(e: AclEntry) -> dict[str, str]:
    return {
        "principal": e.principal,
        "host": e.host,
        "operation": _name(e.operation, AclOperation),
        "permission": _name(e.permission, Permission),
        "resource_type": _name(e.resource_type, ResourceType),
        "name": e.name,
        "pattern": _name(e.pattern, PatternType),
    }


def _print(entries: list[AclEntry]) -> None:
    if not entries:
        return
    rows = [_as_json(e) for e in entries]
    print_table(
        ["principal", "host", "operation", "permission", "resource", "name", "pattern"],
        [
            (
                r["principal"],
                r["host"],
                r["operation"],
                r["permission"],
                r["resource_type"],
                r["name"],
                r["pattern"],
            )
            for r in rows
        ],
    )
