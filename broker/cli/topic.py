"""``ailurus topic``: create, list, describe, delete, add-partitions, trim-prefix,
produce and consume, over the Kafka protocol (works against any Kafka broker).
"""

from __future__ import annotations

import os
import select
import sys
from collections.abc import Iterator, Sequence

import click

from broker.cli.output import (
    echo_json,
    format_record,
    is_json,
    options,
    print_pairs,
    print_table,
    record_json,
    run_command,
)
from broker.client import KafkaClient, ProducerRecord
from broker.client import admin as topic_admin
from broker.client import groups as group_ops
from broker.client.consumer import consume, parse_offset_spec, resolve_offsets
from broker.client.errors import InvalidArgument
from broker.client.types import ConsumedRecord, TopicInfo
from protocol.records import Compression


def make_client() -> KafkaClient:
    """A client for ``--brokers``."""
    return KafkaClient(options()[0])


def parse_pairs(values: Sequence[str], sep: str, what: str) -> dict[str, str]:
    """``k<sep>v`` strings as a dict (split at the first ``sep``)."""
    out: dict[str, str] = {}
    for item in values:
        key, found, value = item.partition(sep)
        if not found or not key:
            raise InvalidArgument(f"bad {what} {item!r}: expected key{sep}value")
        out[key] = value
    return out


@click.group(name="topic")
def topic() -> None:
    """Create, inspect, delete, produce to and consume from topics."""


COMMAND = topic


# -- admin ------------------------------------------------------------------------------


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
    config = parse_pairs(configs, "=", "config")
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
    partitions = [
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


# -- produce ---------------------------------------------------------------------------

_COMPRESSIONS = {c.name.lower(): c for c in Compression}


def _parse_input_template(template: str) -> str | None:
    """The separator of a ``%k<sep>%v`` input template, or None for ``%v``."""
    template = template.removesuffix("\\n").removesuffix("\n")
    if template == "%v":
        return None
    if template.startswith("%k") and template.endswith("%v") and len(template) > 4:
        return template[2:-2]
    raise InvalidArgument(
        f"bad input format {template!r}: use '%v' or '%k<separator>%v'"
    )


_MAX_BATCH_RECORDS = 1000
_MAX_BATCH_BYTES = 512 * 1024  # well under the default max.message.bytes (1 MiB)


def _stdin_lines() -> Iterator[list[bytes]]:
    """Lines of stdin in batches, sent as soon as no more input is waiting.

    Reading the raw file descriptor (not Python's buffered reader) lets ``select``
    tell whether more is waiting, so ``tail -f log | ailurus topic produce`` sends
    each line promptly while a large file is still sent in large batches.
    """
    try:
        fd = sys.stdin.fileno()
    except (OSError, ValueError):  # not a real file (an in-memory test stream)
        lines = [raw.removesuffix(b"\n") for raw in sys.stdin.buffer]
        for i in range(0, len(lines), _MAX_BATCH_RECORDS):
            yield lines[i : i + _MAX_BATCH_RECORDS]
        return
    pending = b""
    batch: list[bytes] = []
    size = 0
    while data := os.read(fd, 1 << 16):
        *lines, pending = (pending + data).split(b"\n")
        batch.extend(lines)
        size += sum(len(line) for line in lines)
        more_waiting = select.select([fd], [], [], 0)[0]
        if batch and (
            not more_waiting
            or len(batch) >= _MAX_BATCH_RECORDS
            or size >= _MAX_BATCH_BYTES
        ):
            yield batch
            batch, size = [], 0
    if pending:
        batch.append(pending)
    if batch:
        yield batch


def _stdin_records(
    sep: str | None, key: bytes | None
) -> Iterator[list[tuple[bytes | None, bytes]]]:
    """Records from stdin lines: plain values, or split at the template's separator."""
    for lines in _stdin_lines():
        batch: list[tuple[bytes | None, bytes]] = []
        for raw in lines:
            line = raw.removesuffix(b"\r")
            if sep is None:
                batch.append((key, line))
                continue
            k, found, v = line.partition(sep.encode())
            if not found:
                raise InvalidArgument(
                    f"input line {line[:40]!r} has no key separator {sep!r}"
                )
            batch.append((k, v))
        yield batch


@topic.command()
@click.argument("name")
@click.option(
    "-k",
    "--key-value",
    "key_values",
    multiple=True,
    help="A record 'key:value' (split at the first colon); repeatable.",
)
@click.option("--key", default=None, help="Key for every record read from stdin.")
@click.option(
    "-f",
    "--format",
    "input_format",
    default="%v",
    show_default=True,
    help="Format of stdin lines: '%v' (values) or '%k:%v' (any separator).",
)
@click.option("-p", "--partition", type=int, default=None, help="Target partition.")
@click.option(
    "-z",
    "--compression",
    type=click.Choice(sorted(_COMPRESSIONS)),
    default="none",
    show_default=True,
)
@click.option(
    "-H", "--header", "headers", multiple=True, help="Header 'k=v'; repeatable."
)
@click.option(
    "--acks",
    type=click.Choice(["all", "-1", "0", "1"]),
    default="all",
    show_default=True,
)
@click.option(
    "--tombstone", is_flag=True, help="Send empty values as null (tombstones)."
)
@run_command
def produce(
    name: str,
    key_values: tuple[str, ...],
    key: str | None,
    input_format: str,
    partition: int | None,
    compression: str,
    headers: tuple[str, ...],
    acks: str,
    tombstone: bool,
) -> None:
    """Produce records from --key-value options or from stdin lines."""
    header_items = tuple(
        (k, v.encode()) for k, v in parse_pairs(headers, "=", "header").items()
    )
    acks_value = -1 if acks == "all" else int(acks)
    codec = _COMPRESSIONS[compression]

    def record(k: bytes | None, v: bytes) -> ProducerRecord:
        return ProducerRecord(
            key=k,
            value=None if tombstone and not v else v,
            headers=header_items,
            partition=partition,
        )

    if key_values:
        pairs: list[tuple[bytes | None, bytes]] = []
        for item in key_values:
            k, found, v = item.partition(":")
            if not found:
                raise InvalidArgument(f"bad --key-value {item!r}: expected key:value")
            pairs.append((k.encode(), v.encode()))
        batches: Iterator[list[tuple[bytes | None, bytes]]] = iter([pairs])
    else:
        sep = _parse_input_template(input_format)
        batches = _stdin_records(sep, None if key is None else key.encode())
    json_out = is_json()
    with make_client() as client:
        for batch in batches:
            results = client.produce(
                name,
                [record(k, v) for k, v in batch],
                acks=acks_value,
                compression=codec,
            )
            for r in results:
                if json_out:
                    echo_json(
                        {
                            "topic": r.topic,
                            "partition": r.partition,
                            "offset": r.offset,
                        },
                        compact=True,
                    )
                elif r.offset < 0:
                    click.echo(
                        f"Sent to partition {r.partition} (acks=0: offset unknown)"
                    )
                else:
                    click.echo(
                        f"Produced to partition {r.partition} at offset {r.offset}"
                    )


# -- consume -----------------------------------------------------------------------------


@topic.command(name="consume")
@click.argument("name")
@click.option(
    "-o",
    "--offset",
    default=None,
    help="start | end | N | -N | @timestamp  [default: start, or the group's commit]",
)
@click.option("-p", "--partition", "partitions", type=int, multiple=True)
@click.option(
    "-g", "--group", default=None, help="Resume from and commit to this group."
)
@click.option("-n", "--num", type=int, default=None, help="Stop after N records.")
@click.option("--until-end", is_flag=True, help="Stop at the end of each partition.")
@click.option(
    "-f",
    "--format",
    "template",
    default="%k:%v",
    show_default=True,
    help="Record format: %t %p %o %k %v %h %d %T, \\n \\t.",
)
@run_command
def consume_cmd(
    name: str,
    offset: str | None,
    partitions: tuple[int, ...],
    group: str | None,
    num: int | None,
    until_end: bool,
    template: str,
) -> None:
    """Print records; follows new ones until Ctrl-C unless --num or --until-end."""
    spec = parse_offset_spec(offset) if offset is not None else None
    if num is not None and num < 0:
        raise InvalidArgument("--num must be >= 0")
    json_out = is_json()
    if not template.endswith(("\n", "\\n")):
        template += "\n"
    with make_client() as client:
        info = client.topic(name, refresh=True)
        ids = list(partitions) or [p.partition for p in info.partitions]
        positions = resolve_offsets(
            client, name, ids, spec or parse_offset_spec("start")
        )
        if group is not None and spec is None:
            committed = group_ops.committed_offsets(client, group, {name: ids})
            for p in ids:
                if (name, p) in committed:
                    positions[p] = committed[(name, p)]
        consumed: dict[int, int] = {}
        try:
            for record in consume(
                client, name, positions, until_end=until_end, max_records=num
            ):
                _print_record(record, template, json_out)
                consumed[record.partition] = record.offset + 1
        except KeyboardInterrupt:
            pass
        finally:
            if group is not None and consumed:
                group_ops.commit_offsets(
                    client, group, {(name, p): o for p, o in consumed.items()}
                )


def _print_record(record: ConsumedRecord, template: str, json_out: bool) -> None:
    if json_out:
        echo_json(record_json(record), compact=True)
    else:
        click.echo(format_record(template, record), nl=False)
