"""``ailurus topic produce`` and ``ailurus topic consume``, with rpk's flags.

produce: ``-k KEY`` keys every record, ``-H key:value`` adds headers (repeatable),
``-f '%k:%v'`` splits stdin lines into key and value, ``--key-value k:v`` sends
records given on the command line. consume: one or more topics (``-r``: regular
expressions), rpk's offset syntax (:mod:`broker.client.consumer`), ``-g GROUP`` as
a member of a real consumer group (:mod:`broker.client.membership`) that commits
what it printed.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import sys
from collections.abc import Iterator, Sequence

import click

from broker.cli.output import (
    echo_json,
    format_record,
    is_json,
    record_json,
    run_command,
)
from broker.cli.topic import make_client
from broker.cli.topic import topic as topic_group
from broker.client import KafkaClient, ProducerRecord
from broker.client import groups as group_ops
from broker.client.consumer import (
    OffsetSpec,
    TopicPartition,
    consume,
    parse_offset_spec,
    resolve_offsets,
    resolve_stops,
)
from broker.client.errors import InvalidArgument
from broker.client.membership import GroupMember, RebalanceNeeded
from broker.client.types import ConsumedRecord
from protocol.records import Compression

# -- produce ---------------------------------------------------------------------------

_COMPRESSIONS = {c.name.lower(): c for c in Compression}


def parse_header(item: str) -> tuple[str, bytes]:
    """``key:value`` (rpk) or ``key=value``: split at the first ``:`` or ``=``."""
    cut = min((i for i in (item.find(":"), item.find("=")) if i >= 0), default=-1)
    if cut <= 0:
        raise InvalidArgument(f"bad header {item!r}: expected key:value")
    return item[:cut], item[cut + 1 :].encode()


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


_PRODUCE_EPILOG = """\\b
Examples:
  echo hello | ailurus topic produce orders
  echo hello | ailurus topic produce orders -k user-1 -H source:web -H v:2
  printf 'k1:v1\\\\nk2:v2\\\\n' | ailurus topic produce orders -f '%k:%v'
  ailurus topic produce orders --key-value k1:v1 --key-value k2:v2
"""


@topic_group.command(epilog=_PRODUCE_EPILOG)
@click.argument("name")
@click.option("-k", "--key", default=None, help="Key of every record (as rpk's -k).")
@click.option(
    "--key-value",
    "key_values",
    multiple=True,
    help="A record 'key:value' given here instead of stdin (split at the first "
    "colon); repeatable.",
)
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
    "-H",
    "--header",
    "headers",
    multiple=True,
    help="Header 'key:value' (or key=value); repeatable.",
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
    key: str | None,
    key_values: tuple[str, ...],
    input_format: str,
    partition: int | None,
    compression: str,
    headers: tuple[str, ...],
    acks: str,
    tombstone: bool,
) -> None:
    """Produce records from stdin lines (or --key-value options)."""
    header_items = tuple(parse_header(h) for h in headers)
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
        if sep is not None and key is not None:
            raise InvalidArgument("give either -k KEY or a '%k...%v' input format")
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

_CONSUME_EPILOG = """\\b
Offsets (-o):
  start | end           from the log start / only new records
  N | +N | -N           from offset N / N after the start / the last N
  O1:O2 | :end | :N     from O1 until O2 (exclusive) / until the current end
  @T | @T1:T2 | @:T     by time: ms since the epoch, ISO 8601, or -1h, -30m, -2d
  @-2h:+30m             from two hours ago, for thirty minutes
\\b
Examples:
  ailurus topic consume orders -o -10 -n 10
  ailurus topic consume orders payments -o :end
  ailurus topic consume -r '^orders-.*' -o @-1h
  ailurus topic consume orders -g billing      # a group member; commits
  ailurus topic consume orders -f '%t/%p@%o %k=%v\\\\n'
"""


@topic_group.command(name="consume", epilog=_CONSUME_EPILOG)
@click.argument("topics", nargs=-1, required=True)
@click.option(
    "-r", "--regex", is_flag=True, help="TOPICS are regular expressions to match."
)
@click.option(
    "-o",
    "--offset",
    default=None,
    help="Where to start (and stop), see below  [default: start, or the group's commit]",
)
@click.option("-p", "--partition", "partitions", type=int, multiple=True)
@click.option(
    "-g",
    "--group",
    default=None,
    help="Consume as a member of this group: share partitions, resume from and "
    "commit to it.",
)
@click.option("-n", "--num", type=int, default=None, help="Stop after N records.")
@click.option("--until-end", is_flag=True, help="Stop at the end of each partition.")
@click.option(
    "-f",
    "--format",
    "template",
    default=None,
    help="Record format: %t %p %o %k %v %h %d %T, \\n \\t  "
    "[default: '%k:%v', '%v' for records without a key].",
)
@run_command
def consume_cmd(
    topics: tuple[str, ...],
    regex: bool,
    offset: str | None,
    partitions: tuple[int, ...],
    group: str | None,
    num: int | None,
    until_end: bool,
    template: str | None,
) -> None:
    """Print records of one or more topics; follows new ones until Ctrl-C unless
    --num, --until-end or an offset range ends it."""
    spec = parse_offset_spec(offset) if offset is not None else None
    if num is not None and num < 0:
        raise InvalidArgument("--num must be >= 0")
    if template is not None and not template.endswith(("\n", "\\n")):
        template += "\n"
    printer = _Printer(template, is_json())
    with make_client() as client:
        names = _topic_names(client, topics, regex)
        if group is not None:
            _consume_in_group(
                client, group, names, spec, partitions, num, until_end, printer
            )
            return
        positions: dict[TopicPartition, int] = {}
        stops: dict[TopicPartition, int] = {}
        for name in names:
            info = client.topic(name, refresh=True)
            ids = list(partitions) or [p.partition for p in info.partitions]
            start_spec = spec or OffsetSpec(kind="start")
            for p, o in resolve_offsets(client, name, ids, start_spec).items():
                positions[(name, p)] = o
            for p, o in (resolve_stops(client, name, ids, start_spec) or {}).items():
                stops[(name, p)] = o
        with contextlib.suppress(KeyboardInterrupt):
            for record in consume(
                client,
                positions,
                until_end=until_end or (spec is not None and spec.until == "end"),
                stop_at=stops
                if spec is not None and spec.until in ("offset", "timestamp")
                else None,
                max_records=num,
            ):
                printer(record)


def _topic_names(client: KafkaClient, topics: Sequence[str], regex: bool) -> list[str]:
    if not regex:
        return list(dict.fromkeys(topics))
    try:
        patterns = [re.compile(t) for t in topics]
    except re.error as exc:
        raise InvalidArgument(f"bad topic regular expression: {exc}") from None
    names = [
        t.name
        for t in client.metadata().topics
        if not t.internal and any(p.search(t.name) for p in patterns)
    ]
    if not names:
        raise InvalidArgument(
            f"no topic matches {', '.join(repr(t) for t in topics)} "
            "(see `ailurus topic list`)"
        )
    return names


def _consume_in_group(
    client: KafkaClient,
    group: str,
    names: list[str],
    spec: OffsetSpec | None,
    partitions: tuple[int, ...],
    num: int | None,
    until_end: bool,
    printer: _Printer,
) -> None:
    """Consume as a member of ``group``; commit what was printed (rebalances too)."""
    if partitions:
        raise InvalidArgument("-p cannot be used with -g: the group assigns partitions")
    for name in names:
        client.topic(name, refresh=True)  # exists? (a clear error before joining)
    member = GroupMember(client, group, names)
    start_spec = spec or OffsetSpec(kind="start")
    remaining = num
    consumed: dict[TopicPartition, int] = {}
    try:
        with contextlib.suppress(KeyboardInterrupt):
            while remaining is None or remaining > 0:
                assignment = member.join()
                positions: dict[TopicPartition, int] = {}
                stops: dict[TopicPartition, int] = {}
                for name, ids in assignment.items():
                    committed = group_ops.committed_offsets(client, group, {name: ids})
                    starts = resolve_offsets(client, name, ids, start_spec)
                    for p in ids:
                        use_spec = spec is not None or (name, p) not in committed
                        positions[(name, p)] = (
                            starts[p] if use_spec else committed[(name, p)]
                        )
                    for p, o in (
                        resolve_stops(client, name, ids, start_spec) or {}
                    ).items():
                        stops[(name, p)] = o
                spec = None  # after a rebalance, resume from the commits
                try:
                    for record in consume(
                        client,
                        positions,
                        until_end=until_end or start_spec.until == "end",
                        stop_at=stops or None,
                        max_records=remaining,
                        on_poll=member.poll,
                    ):
                        printer(record)
                        consumed[(record.topic, record.partition)] = record.offset + 1
                        if remaining is not None:
                            remaining -= 1
                except RebalanceNeeded:
                    member.commit(consumed)
                    consumed.clear()
                    continue
                break
    finally:
        member.commit(consumed)
        member.leave()


class _Printer:
    """Prints records: JSON lines, a template, or rpk-like ``key:value``/``value``."""

    def __init__(self, template: str | None, json_out: bool) -> None:
        self.template = template
        self.json_out = json_out

    def __call__(self, record: ConsumedRecord) -> None:
        if self.json_out:
            echo_json(record_json(record), compact=True)
            return
        template = self.template
        if template is None:
            template = "%v\n" if record.key is None else "%k:%v\n"
        click.echo(format_record(template, record), nl=False)
