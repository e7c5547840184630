"""``ailurus snapshot create|list|show|status``: snapshots through the admin API.

These talk to a running broker (``--admin-url`` / ``-X admin.hosts=``; creating needs
the admin token when the broker has one: ``-X admin.token=`` or
``AILURUS_ADMIN_TOKEN``). On a terminal ``create`` shows a pulsing progress bar with
the elapsed time while the broker works, erased before the table is printed. Tables
show sizes in KiB/MiB and times as dates; ``--format json`` keeps raw numbers.
"""

from __future__ import annotations

import functools
import sys
from collections import Counter
from typing import Final

import click

from broker.cli.admin_http import admin_request
from broker.cli.output import (
    echo_json,
    human_size,
    human_time,
    is_json,
    print_pairs,
    print_table,
    run_command,
)
from broker.cli.settings import current_settings
from broker.cli.snapshot import COMMAND as SNAPSHOT_GROUP
from broker.cli.snapshot import SnapshotCliError, _admin, _with_progress
from storage.snapshot import Status
from storage.snapshot_meta import CODECS

assert isinstance(SNAPSHOT_GROUP, click.Group)

# what the broker's snapshot watcher is doing with each snapshot, by ingest status
PHASES: Final = {
    Status.WAITING: "pending",
    Status.WAITING_FOR_ANCESTOR: "pending",
    Status.APPLYING: "pending",
    Status.APPLIED: "applied",
    Status.ALREADY_PRESENT: "applied",
    Status.INVALID: "invalid",
    Status.DIVERGED: "invalid",
    Status.CREATED: "created",
    Status.HANDED_OVER: "handed-over",  # cluster mode: sent to the partition's leader
}


@SNAPSHOT_GROUP.command(
    epilog="""\\b
Examples:
  ailurus snapshot create --topic orders
  ailurus snapshot create --topic orders --incremental --compression zstd
  AILURUS_ADMIN_TOKEN=... ailurus snapshot create --topic orders
"""
)
@click.option("--topic", required=True, help="Topic to snapshot.")
@click.option(
    "--partition",
    "partitions",
    type=int,
    multiple=True,
    help="Only these partitions (repeatable).",
)
@click.option(
    "--incremental",
    is_flag=True,
    help="Only batches after the latest snapshot of each partition.",
)
@click.option(
    "--compression",
    type=click.Choice(sorted(CODECS)),
    default="none",
    show_default=True,
)
@click.option(
    "--with-group-offsets",
    is_flag=True,
    help="Store the groups' committed offsets too.",
)
@run_command
def create(
    topic: str,
    partitions: tuple[int, ...],
    incremental: bool,
    compression: str,
    with_group_offsets: bool,
) -> None:
    """Snapshot a topic's partitions at one consistent point (each high watermark).

    In a cluster each partition is cut by its leader (the broker column says
    which), in that broker's data/snapshots, and copied back into the data/snapshots
    of the broker asked (the path shown; --json has both).

    Needs the broker's admin token when it has one: -X admin.token=TOKEN or
    AILURUS_ADMIN_TOKEN.
    """
    body = {
        "topic": topic,
        "partitions": list(partitions) or None,
        "incremental": incremental,
        "compression": compression,
        "with_group_offsets": with_group_offsets,
    }
    settings = current_settings()
    call = functools.partial(
        admin_request,
        settings.admin_url,
        "POST",
        "/v1/snapshots",
        body,
        token=settings.admin_token,
    )
    if sys.stdout.isatty() and not is_json():
        results = _with_progress(f"snapshotting {topic}", call)
    else:
        results = call()
    assert isinstance(results, list)
    if is_json():
        echo_json(results)
        return
    rows: list[tuple[object, ...]] = []
    for r in results:
        if "snapshot_id" in r:
            rows.append(
                (
                    r["partition"],
                    r["snapshot_id"],
                    r["base_offset"],
                    r["last_offset"],
                    human_size(r["size"]),
                    # in a cluster: the copy gathered into the broker asked
                    r.get("gathered_path") or r["path"],
                )
            )
        else:
            reason = r.get("reason") or r.get("error")
            rows.append((r["partition"], "-", "-", "-", "-", f"skipped: {reason}"))
    headers = ["partition", "snapshot_id", "base", "last", "size", "path"]
    if any("broker_id" in r for r in results):
        headers.append("broker")
        rows = [
            (*row, r.get("broker_id", "-"))
            for row, r in zip(rows, results, strict=True)
        ]
    print_table(headers, rows)


def _rows() -> list[dict[str, object]]:
    rows = _admin("GET", "/v1/snapshots")
    if not isinstance(rows, list):
        raise SnapshotCliError("the admin API sent an unexpected snapshot list")
    return [r for r in rows if isinstance(r, dict)]


@SNAPSHOT_GROUP.command(name="list")
@run_command
def list_() -> None:
    """Every snapshot with its partition, offsets, size and ingest status."""
    rows = _rows()
    if is_json():
        echo_json(rows)
        return
    print_table(
        ["path", "topic", "partition", "base", "last", "size", "status", "reason"],
        [
            (
                r["path"],
                r["topic"],
                r["partition"],
                r["base_offset"],
                r["last_offset"],
                human_size(r["size"]),
                r["status"],
                r["reason"] or "",
            )
            for r in rows
        ],
    )


def _phase(status: object) -> str:
    try:
        return PHASES[Status(str(status))]
    except ValueError:
        return str(status)


@SNAPSHOT_GROUP.command(
    epilog="""\\b
Examples:
  ailurus snapshot status
  ailurus --format json snapshot status
"""
)
@run_command
def status() -> None:
    """What the broker's snapshot watcher is doing: pending, applied, invalid.

    Pending snapshots are waiting to be complete, for their ancestor, or being
    applied; invalid ones were rejected (see the reason) or diverged from the log.
    """
    rows = _rows()
    counts = Counter(_phase(r.get("status")) for r in rows)
    summary = {
        phase: counts.get(phase, 0)
        for phase in ("pending", "applied", "invalid", "created")
    }
    if counts.get("handed-over"):
        summary["handed-over"] = counts["handed-over"]
    open_rows = [r for r in rows if _phase(r.get("status")) in ("pending", "invalid")]
    if is_json():
        echo_json(
            {
                "counts": summary,
                "snapshots": [
                    {
                        "path": r.get("path"),
                        "topic": r.get("topic"),
                        "partition": r.get("partition"),
                        "phase": _phase(r.get("status")),
                        "status": r.get("status"),
                        "reason": r.get("reason") or None,
                        "size": r.get("size"),
                        "bytes_applied": r.get("bytes_applied"),
                        "updated_at": r.get("updated_at"),
                    }
                    for r in open_rows
                ],
            }
        )
        return
    click.echo("  ".join(f"{phase}: {n}" for phase, n in summary.items()))
    if not open_rows:
        click.echo("nothing pending or invalid")
        return
    click.echo()
    print_table(
        [
            "path",
            "topic",
            "partition",
            "phase",
            "status",
            "progress",
            "updated",
            "reason",
        ],
        [
            (
                r.get("path"),
                r.get("topic"),
                r.get("partition"),
                _phase(r.get("status")),
                r.get("status"),
                _progress(r),
                human_time(r.get("updated_at")),
                r.get("reason") or "",
            )
            for r in open_rows
        ],
    )


def _progress(row: dict[str, object]) -> str | None:
    size, applied = row.get("size"), row.get("bytes_applied")
    if row.get("status") != Status.APPLYING or not isinstance(size, int):
        return human_size(size)
    return f"{human_size(applied)} / {human_size(size)}"


@SNAPSHOT_GROUP.command(
    epilog="""\\b
Examples:
  ailurus snapshot show orders                 # the newest snapshot of topic orders
  ailurus snapshot show orders 1733390000000000000
  ailurus snapshot show 3f1c...-topic-id 1733390000000000000
"""
)
@click.argument("topic")
@click.argument("snapshot_id", required=False)
@run_command
def show(topic: str, snapshot_id: str | None) -> None:
    """One snapshot: its ingest status and meta.json.

    TOPIC is a topic name or topic id; without SNAPSHOT_ID, the topic's newest.
    """
    found = _admin("GET", f"/v1/snapshots/{_resolve(topic, snapshot_id)}")
    if is_json():
        echo_json(found)
        return
    assert isinstance(found, dict)
    meta = found.pop("meta", {})
    pairs = sorted(found.items())
    print_pairs(
        (k, human_size(v) if k == "size" else human_time(v) if k == "updated_at" else v)
        for k, v in pairs
    )
    if isinstance(meta, dict):
        print_pairs(
            (f"meta.{k}", human_size(v) if k == "size" else v)
            for k, v in sorted(meta.items())
            if k != "segments"
        )
        for seg in meta.get("segments", []):
            click.echo(f"segment  {seg}")


def _resolve(topic: str, snapshot_id: str | None) -> str:
    """``topic_dir/snapshot_id`` of the snapshot a user named by topic name or id."""
    rows = _rows()

    def matches(r: dict[str, object]) -> bool:
        path = str(r.get("path", ""))
        topic_dir, _, name = path.partition("/")
        if topic not in (topic_dir, r.get("topic")):
            return False
        return snapshot_id is None or snapshot_id in (name, r.get("snapshot_id"))

    found = [r for r in rows if matches(r)]
    if not found:
        if snapshot_id is not None:
            # not listed (yet): let the broker answer for topic_dir/snapshot_id
            return f"{topic}/{snapshot_id}"
        raise SnapshotCliError(
            f"no snapshot of topic {topic!r} (see `ailurus snapshot list`)"
        )
    newest = max(found, key=lambda r: (str(r.get("snapshot_id") or ""), str(r["path"])))
    return str(newest["path"])
