"""``ailurus snapshot push`` / ``ailurus snapshot pull``: ship snapshots offsite and back.

The commands attach themselves to the ``snapshot`` group of
:mod:`broker.cli.snapshot` when that module exists; otherwise this module exposes a
``snapshot`` group of its own (``COMMAND``) holding just these two, so the commands
work either way. The work is done by :mod:`broker.snapshots.offsite.transfer`.
"""

from __future__ import annotations

import importlib
import sys
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

import click
import structlog

from broker.cli.output import (
    debug_enabled,
    echo_json,
    human_size,
    is_json,
    print_table,
    run_command,
)
from broker.logging import configure_logging
from broker.snapshots.offsite import transfer as offsite

_ENDPOINT_HELP = (
    "S3-compatible endpoint for s3:// URLs (env AILURUS_S3_ENDPOINT_URL or "
    "AWS_ENDPOINT_URL); credentials come from AWS_ACCESS_KEY_ID / "
    "AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN / AWS_PROFILE."
)


def _storage_options(items: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, not {item!r}")
        out[key] = value
    return out


def _parse_until(text: str | None) -> int | None:
    """A snapshot ID (nanoseconds) or an ISO-8601 time with a zone."""
    if text is None:
        return None
    if text.isdigit():
        return int(text)
    try:
        when = datetime.fromisoformat(text)
    except ValueError as e:
        raise click.BadParameter(
            f"{text!r}: expected a snapshot ID or ISO-8601 time"
        ) from e
    if when.tzinfo is None:
        raise click.BadParameter(
            f"{text!r}: give a time zone, e.g. 2026-01-02T03:04:05Z"
        )
    return int(when.timestamp() * 1_000_000_000)


def _setup_logging() -> None:
    """Warnings and errors (debug with ``--debug``) on stderr; stdout stays clean.

    Loggers are not cached and look ``sys.stderr`` up when created, so a command run
    inside another process (tests, CliRunner) never keeps a stale stream.
    """
    configure_logging("debug" if debug_enabled() else "warning", "auto")
    structlog.configure(logger_factory=_stderr_logger, cache_logger_on_first_use=False)


def _stderr_logger(*_args: object) -> structlog.WriteLogger:
    return structlog.WriteLogger(sys.stderr)


def _progress(verb: str) -> offsite.ProgressFn | None:
    if is_json():
        return None

    def show(event: offsite.FileEvent) -> None:
        state = "skipped (already there)" if event.skipped else verb
        click.echo(
            f"{event.snapshot}/{event.name}: {state}, {event.size} bytes", err=True
        )

    return show


def _report(results: list[offsite.TransferResult]) -> None:
    if is_json():
        echo_json([r.as_json() for r in results])
        return
    if not results:
        click.echo("no snapshots matched")
        return
    print_table(
        ["TOPIC", "SNAPSHOT", "STATUS", "FILES", "SKIPPED", "BYTES"],
        [
            [
                r.topic,
                r.snapshot_id,
                r.status,
                str(r.files_transferred),
                str(r.files_skipped),
                str(human_size(r.bytes_transferred)),
            ]
            for r in results
        ],
    )


def _require_location(
    url: str, endpoint_url: str | None, options: dict[str, Any]
) -> None:
    """Refuse a pull from a location that does not exist (a typo, an unmounted disk)."""
    fs, root = offsite.open_remote(
        url, endpoint_url=endpoint_url, storage_options=options
    )
    try:
        found = bool(fs.exists(root))
    except (OSError, ValueError) as exc:
        raise offsite.OffsiteError(f"cannot read {url}: {exc}") from exc
    if not found:
        raise offsite.OffsiteError(f"{url} does not exist (nothing to pull)")


def _fail(e: offsite.OffsiteError) -> NoReturn:
    click.echo(f"error: {e}", err=True)
    raise SystemExit(1)


_common = [
    click.option(
        "--endpoint-url",
        envvar=["AILURUS_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL"],
        help=_ENDPOINT_HELP,
    ),
    click.option(
        "--storage-option",
        "storage_options",
        multiple=True,
        metavar="KEY=VALUE",
        help="Extra fsspec option for the URL's file system (repeatable).",
    ),
    click.option(
        "--data-dir",
        envvar="AILURUS_DATA_DIR",
        default="./data",
        show_default=True,
        type=click.Path(file_okay=False, path_type=Path),
        help="The broker's data directory; snapshots live in its snapshots/.",
    ),
    click.option(
        "--topic", "topics", multiple=True, help="Only this topic (ID or name)."
    ),
    click.option(
        "--snapshot-id", "snapshot_ids", multiple=True, help="Only this snapshot ID."
    ),
]


def _with_common(func: Any) -> Any:
    for option in reversed(_common):
        func = option(func)
    return func


@click.command("push")
@click.option(
    "--to",
    "url",
    required=True,
    help="Destination URL: s3://bucket/prefix, file:///dir, ...",
)
@click.option(
    "--source",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A snapshot root, topic or snapshot directory.  [default: DATA_DIR/snapshots]",
)
@_with_common
@run_command
def push(
    url: str,
    source: Path | None,
    endpoint_url: str | None,
    storage_options: tuple[str, ...],
    data_dir: Path,
    topics: tuple[str, ...],
    snapshot_ids: tuple[str, ...],
) -> None:
    """Upload snapshots to URL (idempotent; meta.json is written last, after checks)."""
    _setup_logging()
    try:
        results = offsite.push(
            source or data_dir / "snapshots",
            url,
            endpoint_url=endpoint_url,
            storage_options=_storage_options(storage_options),
            topics=topics,
            snapshot_ids=snapshot_ids,
            on_file=_progress("uploaded"),
        )
    except offsite.OffsiteError as e:
        _fail(e)
    _report(results)


@click.command("pull")
@click.option(
    "--from",
    "url",
    required=True,
    help="Source URL: s3://bucket/prefix, file:///dir, ...",
)
@click.option(
    "--partition", "partitions", type=int, multiple=True, help="Only this partition."
)
@click.option(
    "--until",
    help="Point in time: only snapshots taken at or before this snapshot ID "
    "(nanoseconds) or ISO-8601 time.",
)
@click.option(
    "--list", "list_only", is_flag=True, help="List remote snapshots; download nothing."
)
@click.option(
    "--keep-going",
    is_flag=True,
    help="Pull the other snapshots when one is rejected (exit status 1 at the end).",
)
@click.option(
    "--snapshots-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Land snapshots here instead of DATA_DIR/snapshots.",
)
@_with_common
@run_command
def pull(
    url: str,
    partitions: tuple[int, ...],
    until: str | None,
    list_only: bool,
    keep_going: bool,
    snapshots_dir: Path | None,
    endpoint_url: str | None,
    storage_options: tuple[str, ...],
    data_dir: Path,
    topics: tuple[str, ...],
    snapshot_ids: tuple[str, ...],
) -> None:
    """Download snapshots (with their ancestors) into the data dir, verified, atomically."""
    _setup_logging()
    options = _storage_options(storage_options)
    until_ns = _parse_until(until)
    try:
        _require_location(url, endpoint_url, options)
        if list_only:
            refs = offsite.select_chain(
                offsite.list_remote(
                    url, endpoint_url=endpoint_url, storage_options=options
                ),
                topics=topics,
                partitions=partitions,
                snapshot_ids=snapshot_ids,
                until=until_ns,
            )
            _list(refs)
            return
        results = offsite.pull(
            url,
            data_dir,
            endpoint_url=endpoint_url,
            storage_options=options,
            topics=topics,
            partitions=partitions,
            snapshot_ids=snapshot_ids,
            until=until_ns,
            snapshots_dir=snapshots_dir,
            on_file=_progress("downloaded"),
            keep_going=keep_going,
        )
    except offsite.OffsiteError as e:
        _fail(e)
    _report(results)
    for r in results:
        if r.status == "rejected":
            click.echo(f"rejected {r.topic}/{r.snapshot_id}: {r.reason}", err=True)
    if any(r.status == "rejected" for r in results):
        raise SystemExit(1)


def _list(refs: list[offsite.SnapshotRef]) -> None:
    rows = [
        {
            "topic": r.topic,
            "topic_name": r.meta.get("topic"),
            "snapshot_id": r.snapshot_id,
            "partition": r.partition,
            "base_offset": r.meta.get("base_offset"),
            "last_offset": r.last_offset,
            "ancestor_snapshot_id": r.ancestor_id,
            "size": r.meta.get("size"),
        }
        for r in refs
    ]
    if is_json():
        echo_json(rows)
        return
    print_table(
        ["TOPIC", "SNAPSHOT", "PARTITION", "LAST-OFFSET", "ANCESTOR", "SIZE"],
        [
            [
                str(row["topic_name"] or row["topic"]),
                str(row["snapshot_id"]),
                str(row["partition"]),
                str(row["last_offset"]),
                str(row["ancestor_snapshot_id"] or "-"),
                str(human_size(row["size"]) or "-"),
            ]
            for row in rows
        ],
    )


OFFSITE_COMMANDS = (push, pull)


def attach(group: click.Group) -> None:
    """Add ``push`` and ``pull`` to ``group`` (the ``snapshot`` command group)."""
    for command in OFFSITE_COMMANDS:
        group.add_command(command)


def _snapshot_group() -> click.Group | None:
    try:
        module = importlib.import_module("broker.cli.snapshot")
    except ModuleNotFoundError as e:
        if e.name != "broker.cli.snapshot":
            raise
        return None
    group = getattr(module, "COMMAND", None)
    return group if isinstance(group, click.Group) else None


_existing = _snapshot_group()
if _existing is not None:
    attach(_existing)
else:

    @click.group("snapshot")
    def snapshot() -> None:
        """Partition snapshots: ship them offsite and back."""

    attach(snapshot)
    COMMAND = snapshot
