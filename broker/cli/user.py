"""``ailurus user``: SASL users and their ACLs, stored in the broker's data dir.

Works on ``<data-dir>/security/users.json`` directly (a running broker picks changes
up on its next login or authorisation check; no restart). Passwords are never
stored: each user gets salted SCRAM-SHA-256 and SCRAM-SHA-512 credentials
(:mod:`broker.security.credentials`), which also verify SASL/PLAIN logins. In
cluster mode this file is one broker's local fallback: names the cluster has
SCRAM credentials for (in etcd, :mod:`broker.cluster.scram`) log in with those.

    ailurus user create alice --password-stdin < pw.txt
    ailurus user grant alice topic:orders:read,write group:orders-app:read
    ailurus user list
    ailurus user revoke alice topic:orders:read,write
    ailurus user delete alice
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec, TypeVar

import click

from broker.cli.output import echo_json, is_json, print_table, run_command
from broker.security.acl import (
    AclError,
    AclRule,
    Op,
    Resource,
    parse_rule,
    parse_spec,
)
from broker.security.credentials import (
    DEFAULT_ITERATIONS,
    MAX_ITERATIONS,
    MIN_ITERATIONS,
    SCRAM_MECHANISMS,
    CredentialError,
    UserStore,
)

P = ParamSpec("P")
T = TypeVar("T")

_data_dir = click.option(
    "--data-dir",
    envvar="AILURUS_DATA_DIR",
    default="./data",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The broker's data directory (env AILURUS_DATA_DIR).",
)


def _user_errors(func: Callable[P, T]) -> Callable[P, T]:
    """Bad names, passwords, ACL specs or users files: one line, exit status 1."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return func(*args, **kwargs)
        except (CredentialError, AclError) as exc:
            click.echo(f"error: {exc}", err=True)
            raise SystemExit(1) from None

    return wrapper


@click.group(name="user")
def user() -> None:
    """Manage SASL users (PLAIN, SCRAM-SHA-256/512) and their ACLs."""


COMMAND = user


@user.command()
@click.argument("name")
@click.option("--password", help="The password (visible in the process list).")
@click.option(
    "--password-stdin", is_flag=True, help="Read the password from standard input."
)
@click.option(
    "--mechanism",
    "mechanisms",
    multiple=True,
    type=click.Choice(sorted(SCRAM_MECHANISMS)),
    help="SCRAM credentials to store (default: both).",
)
@click.option(
    "--iterations",
    default=DEFAULT_ITERATIONS,
    show_default=True,
    type=click.IntRange(MIN_ITERATIONS, MAX_ITERATIONS),
    help="PBKDF2 iterations.",
)
@_data_dir
@run_command
@_user_errors
def create(
    name: str,
    password: str | None,
    password_stdin: bool,
    mechanisms: tuple[str, ...],
    iterations: int,
    data_dir: Path,
) -> None:
    """Create a user, or set a new password for an existing one (ACLs are kept)."""
    if password is not None and password_stdin:
        raise CredentialError("give --password or --password-stdin, not both")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif password is None:
        password = click.prompt(
            f"Password for {name}", hide_input=True, confirmation_prompt=True
        )
    store = UserStore.in_data_dir(data_dir)
    existed = store.get(name) is not None
    record = store.set_password(
        name,
        password,
        mechanisms=mechanisms or tuple(SCRAM_MECHANISMS),
        iterations=iterations,
    )
    action = "updated" if existed else "created"
    if is_json():
        echo_json(
            {"user": name, "action": action, "mechanisms": sorted(record.credentials)}
        )
    else:
        click.echo(f"{action} user {name} ({', '.join(sorted(record.credentials))})")


@user.command()
@click.argument("names", nargs=-1, required=True)
@click.option("--if-exists", is_flag=True, help="No error for unknown users.")
@_data_dir
@run_command
@_user_errors
def delete(names: tuple[str, ...], if_exists: bool, data_dir: Path) -> None:
    """Delete users (their credentials and ACLs)."""
    store = UserStore.in_data_dir(data_dir)
    missing = [n for n in names if not store.delete(n)]
    if is_json():
        echo_json(
            {"deleted": [n for n in names if n not in missing], "missing": missing}
        )
    else:
        for n in names:
            if n not in missing:
                click.echo(f"deleted user {n}")
    if missing and not if_exists:
        click.echo(f"error: no such user: {', '.join(missing)}", err=True)
        raise SystemExit(1)


@user.command(name="list")
@_data_dir
@run_command
@_user_errors
def list_users(data_dir: Path) -> None:
    """List users, their SCRAM mechanisms and ACLs."""
    users = UserStore.in_data_dir(data_dir).users()
    rows = []
    for name, record in sorted(users.items()):
        specs = []
        for raw in record.acls:
            try:
                specs.append(parse_rule(raw).spec())
            except AclError:
                specs.append("<invalid rule>")
        rows.append((name, sorted(record.credentials), specs))
    if is_json():
        echo_json(
            [{"user": n, "mechanisms": m, "acls": a} for n, m, a in rows],
        )
        return
    print_table(
        ["user", "mechanisms", "acls"],
        [(n, ",".join(m), " ".join(a) or "-") for n, m, a in rows],
    )


def _readable_spec(text: str) -> AclRule:
    """``parse_spec`` with errors that name the bad part and list the valid ones."""
    parts = text.split(":")
    resources = ", ".join(r.value for r in Resource)
    operations = ", ".join(o.value for o in Op)
    if parts and parts[0] not in {r.value for r in Resource}:
        raise AclError(
            f"bad ACL {text!r}: unknown resource {parts[0]!r} (use one of: {resources})"
        )
    if len(parts) in (2, 3):
        ops = [o.strip().lower() for o in parts[-1].split(",") if o.strip()]
        unknown = [o for o in ops if o not in {op.value for op in Op}]
        if unknown:
            raise AclError(
                f"bad ACL {text!r}: unknown operation "
                f"{', '.join(unknown)} (use one of: {operations})"
            )
        if not ops:
            raise AclError(f"bad ACL {text!r}: no operation (use one of: {operations})")
    return parse_spec(text)


def _change_acls(
    name: str, specs: tuple[str, ...], data_dir: Path, *, grant: bool
) -> list[str]:
    rules = [_readable_spec(s) for s in specs]
    store = UserStore.in_data_dir(data_dir)
    record = store.get(name)
    if record is None:
        raise CredentialError(f"no user {name!r}")
    current = []
    for raw in record.acls:
        try:
            current.append(parse_rule(raw))
        except AclError:
            continue
    if grant:
        for rule in rules:
            if rule not in current:
                current.append(rule)
    else:
        for rule in rules:
            if rule not in current:
                raise AclError(f"{name} has no rule {rule.spec()}")
            current.remove(rule)
    store.set_acls(name, tuple(r.as_json() for r in current))
    return [r.spec() for r in current]


@user.command()
@click.argument("name")
@click.argument("acls", nargs=-1, required=True)
@_data_dir
@run_command
@_user_errors
def grant(name: str, acls: tuple[str, ...], data_dir: Path) -> None:
    """Allow NAME operations: topic:NAME:OPS, group:NAME:OPS, cluster:OPS.

    NAME may be ``*`` (any) or end in ``*`` (prefix). OPS: read, write, create,
    describe, delete, alter, all (comma-separated).
    """
    rules = _change_acls(name, acls, data_dir, grant=True)
    if is_json():
        echo_json({"user": name, "acls": rules})
    else:
        click.echo(f"{name}: {' '.join(rules)}")


@user.command()
@click.argument("name")
@click.argument("acls", nargs=-1, required=True)
@_data_dir
@run_command
@_user_errors
def revoke(name: str, acls: tuple[str, ...], data_dir: Path) -> None:
    """Remove ACL rules given exactly as they were granted."""
    rules = _change_acls(name, acls, data_dir, grant=False)
    if is_json():
        echo_json({"user": name, "acls": rules})
    else:
        click.echo(f"{name}: {' '.join(rules) or '(no rules)'}")
