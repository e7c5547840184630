"""``ailurus group``: list, describe (members, assignments, lag), seek and delete
consumer groups, and delete their committed offsets, over the Kafka protocol.
"""

from __future__ import annotations

from collections import defaultdict

import click

from broker.cli.output import echo_json, is_json, print_pairs, print_table, run_command
from broker.cli.topic import make_client
from broker.client import EARLIEST, LATEST, KafkaClient
from broker.client import groups as group_ops
from broker.client.errors import InvalidArgument, KafkaError, error_name


@click.group(
    name="group",
    epilog="""\b
Examples:
  ailurus group list
  ailurus group describe billing
  ailurus group seek billing --to start
  ailurus group offset-delete billing --topic orders --partition 0
  ailurus group list -X brokers=kafka:9093 -X user=alice -X pass=s3cret
""",
)
def group() -> None:
    """Inspect and manage consumer groups."""


COMMAND = group


@group.command(name="list")
@run_command
def list_groups() -> None:
    """List consumer groups."""
    with make_client() as client:
        groups = group_ops.list_groups(client)
    rows = [
        {
            "group_id": g.group_id,
            "state": g.state or None,
            "protocol_type": g.protocol_type,
        }
        for g in groups
    ]
    if is_json():
        echo_json({"groups": rows})
        return
    print_table(
        ["group", "state", "protocol-type"],
        [(r["group_id"], r["state"], r["protocol_type"]) for r in rows],
    )


_ISOLATION = {"read_uncommitted": 0, "read_committed": 1}


def _lag_rows(
    client: KafkaClient,
    group_id: str,
    owners: dict[tuple[str, int], str],
    isolation_level: int = 0,
) -> list[dict[str, object]]:
    committed = group_ops.committed_offsets(client, group_id)
    keys = sorted(set(committed) | set(owners))
    by_topic: dict[str, list[int]] = defaultdict(list)
    for topic, partition in keys:
        by_topic[topic].append(partition)
    ends: dict[tuple[str, int], int] = {}
    for topic, partitions in by_topic.items():
        found = client.list_offsets(
            topic, partitions, LATEST, isolation_level=isolation_level
        )
        for p, o in found.items():
            ends[(topic, p)] = o
    rows: list[dict[str, object]] = []
    for key in keys:
        offset = committed.get(key)
        end = ends.get(key)
        lag = None if offset is None or end is None else max(end - offset, 0)
        rows.append(
            {
                "topic": key[0],
                "partition": key[1],
                "committed_offset": offset,
                "log_end_offset": end,
                "lag": lag,
                "member_id": owners.get(key),
            }
        )
    return rows


@group.command()
@click.argument("group_id")
@click.option(
    "--isolation",
    type=click.Choice(sorted(_ISOLATION)),
    default="read_uncommitted",
    show_default=True,
    help="Lag of a read_uncommitted consumer (to the log end) or of a "
    "read_committed one (to the last stable offset: open transactions not counted).",
)
@run_command
def describe(group_id: str, isolation: str) -> None:
    """Show a group's state, members, assignments and lag per partition."""
    with make_client() as client:
        desc = group_ops.describe_group(client, group_id)
        owners = {
            (topic, p): m.member_id
            for m in desc.members
            for topic, parts in m.assignment
            for p in parts
        }
        rows = _lag_rows(client, group_id, owners, _ISOLATION[isolation])
    members = [
        {
            "member_id": m.member_id,
            "client_id": m.client_id,
            "client_host": m.client_host,
            "group_instance_id": m.group_instance_id,
            "assignment": [
                {"topic": t, "partitions": list(ps)} for t, ps in m.assignment
            ],
        }
        for m in desc.members
    ]
    total_lag = sum(int(r["lag"]) for r in rows if isinstance(r["lag"], int))
    if is_json():
        echo_json(
            {
                "group_id": desc.group_id,
                "state": desc.state,
                "protocol_type": desc.protocol_type,
                "protocol": desc.protocol,
                "members": members,
                "offsets": rows,
                "total_lag": total_lag,
                "isolation": isolation,
            }
        )
        return
    print_pairs(
        [
            ("GROUP", desc.group_id),
            ("STATE", desc.state),
            ("PROTOCOL", f"{desc.protocol_type}/{desc.protocol}".strip("/") or None),
            ("MEMBERS", len(desc.members)),
            ("TOTAL-LAG", total_lag),
        ]
    )
    if members:
        click.echo()
        print_table(
            ["member-id", "client-id", "host", "assignment"],
            [
                (
                    m.member_id,
                    m.client_id,
                    m.client_host,
                    "; ".join(
                        f"{t}:{','.join(map(str, ps))}" for t, ps in m.assignment
                    ),
                )
                for m in desc.members
            ],
            title="Members",
        )
    if rows:
        click.echo()
        print_table(
            [
                "topic",
                "partition",
                "current-offset",
                "last-stable-offset"
                if isolation == "read_committed"
                else "log-end-offset",
                "lag",
                "member-id",
            ],
            [
                (
                    r["topic"],
                    r["partition"],
                    r["committed_offset"],
                    r["log_end_offset"],
                    r["lag"],
                    r["member_id"],
                )
                for r in rows
            ],
            title="Offsets",
        )


@group.command()
@click.argument("group_id")
@click.option(
    "--to", "target", required=True, help="start | end | OFFSET (absolute offset)."
)
@click.option(
    "-t",
    "--topic",
    "topics",
    multiple=True,
    help="Topics to seek (default: those the group has commits for).",
)
@run_command
def seek(group_id: str, target: str, topics: tuple[str, ...]) -> None:
    """Move a group's committed offsets (the group must have no active members)."""
    if target not in ("start", "end"):
        try:
            absolute = int(target)
        except ValueError:
            raise InvalidArgument(
                f"bad --to {target!r}: use start, end or an offset"
            ) from None
        if absolute < 0:
            raise InvalidArgument("the offset must be >= 0")
    with make_client() as client:
        if topics:
            names = list(topics)
        else:
            names = sorted(
                {t for t, _ in group_ops.committed_offsets(client, group_id)}
            )
            if not names:
                raise InvalidArgument(
                    f"group {group_id!r} has no committed offsets; name topics with --topic"
                )
        new: dict[tuple[str, int], int] = {}
        for name in names:
            ids = [p.partition for p in client.topic(name, refresh=True).partitions]
            if target == "start":
                offsets = client.list_offsets(name, ids, EARLIEST)
            elif target == "end":
                offsets = client.list_offsets(name, ids, LATEST)
            else:
                starts = client.list_offsets(name, ids, EARLIEST)
                ends = client.list_offsets(name, ids, LATEST)
                offsets = {p: min(max(absolute, starts[p]), ends[p]) for p in ids}
            new.update({(name, p): o for p, o in offsets.items()})
        group_ops.commit_offsets(client, group_id, new)
    rows = [
        {"topic": t, "partition": p, "offset": o} for (t, p), o in sorted(new.items())
    ]
    if is_json():
        echo_json({"group_id": group_id, "offsets": rows})
        return
    print_table(
        ["topic", "partition", "new-offset"],
        [(r["topic"], r["partition"], r["offset"]) for r in rows],
    )


@group.command()
@click.argument("group_ids", nargs=-1, required=True)
@run_command
def delete(group_ids: tuple[str, ...]) -> None:
    """Delete groups (they must have no active members)."""
    with make_client() as client:
        for group_id in group_ids:
            group_ops.delete_group(client, group_id)
    if is_json():
        echo_json({"deleted": list(group_ids)})
        return
    print_table(["group", "status"], [(g, "OK") for g in group_ids])


@group.command(name="offset-delete")
@click.argument("group_id")
@click.option(
    "-t", "--topic", "topic", required=True, help="The topic whose offsets go."
)
@click.option(
    "-p",
    "--partition",
    "partitions",
    multiple=True,
    type=click.IntRange(min=0),
    help="Partitions (repeatable; default: every partition of the topic).",
)
@run_command
def offset_delete(group_id: str, topic: str, partitions: tuple[int, ...]) -> None:
    """Delete a group's committed offsets of a topic (OffsetDelete).

    Allowed for a group without members, or for a topic none of its members
    subscribes to (GROUP_SUBSCRIBED_TO_TOPIC otherwise); exit status 1 when any
    partition's offset could not be deleted.
    """
    with make_client() as client:
        ids = list(partitions) or [
            p.partition for p in client.topic(topic, refresh=True).partitions
        ]
        codes = group_ops.delete_offsets(client, group_id, [(topic, p) for p in ids])
    rows = [
        {"topic": t, "partition": p, "error": error_name(c) if c else None}
        for (t, p), c in sorted(codes.items())
    ]
    if is_json():
        echo_json({"group_id": group_id, "partitions": rows})
    else:
        print_table(
            ["topic", "partition", "status"],
            [(r["topic"], r["partition"], r["error"] or "OK") for r in rows],
        )
    failed = [(t, p, c) for (t, p), c in sorted(codes.items()) if c]
    if failed:
        t, p, c = failed[0]
        raise KafkaError(c, f"delete offset of group {group_id!r} for {t}/{p}")
