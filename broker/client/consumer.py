"""Where ``topic consume`` starts and stops, and how it reads: offset specs, the fetch loop.

Offset specs (``--offset``), as rpk writes them:

=============  ==============================================================
``start``      from the log start (also ``oldest``, ``earliest``)
``end``        from the high watermark: only new records (``newest``, ``latest``)
``N``          from offset N (clamped into [start, end]); ``N:`` is the same
``+N``         N records after the log start
``-N``         the last N records of each partition
``:end``       from the start until the current end, then stop
``:N``         from the start until offset N (exclusive)
``O1:O2``      from offset O1 until offset O2 (exclusive); ``O1:end`` too
``@T``         from the first record at or after time T; ``@T:`` the same
``@:T``        from the start until time T
``@T1:T2``     from time T1 until time T2
=============  ==============================================================

A time is milliseconds since the epoch, an ISO 8601 date or time (UTC unless it
says otherwise), ``end``/``now`` in the end position, or a duration relative to now
(``-1h``, ``-30m``, ``-2d``; units ms, s, m, h, d, w). In the end position a ``+``
duration counts from the start time (``@-2h:+30m``). A time after the last record
means the high watermark.
"""

from __future__ import annotations

import heapq
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from broker.client.client import EARLIEST, LATEST, KafkaClient
from broker.client.errors import InvalidArgument, KafkaError
from broker.client.types import ConsumedRecord
from protocol.error_codes import ErrorCode

TopicPartition = tuple[str, int]

_DURATION: Final = re.compile(r"([+-])(\d+)(ms|s|m|h|d|w)")
_UNIT_MS: Final = {
    "ms": 1,
    "s": 1000,
    "m": 60_000,
    "h": 3_600_000,
    "d": 86_400_000,
    "w": 604_800_000,
}
_HELP: Final = (
    "use start, end, N, +N, -N, O1:O2, :end, @TIME, @T1:T2 or @-1h "
    "(see `ailurus topic consume --help`)"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class OffsetSpec:
    """A parsed ``--offset`` value: where to start and, optionally, where to stop.

    ``kind``: "start" | "end" | "absolute" | "after-start" | "relative" | "timestamp";
    ``until``: None (follow), "end" (the current high watermark), "offset" or
    "timestamp", with ``until_value``.
    """

    kind: str
    value: int = 0
    until: str | None = None
    until_value: int = 0


def parse_offset_spec(text: str, *, now_ms: int | None = None) -> OffsetSpec:
    """Parse an rpk-style offset spec (see the module docstring)."""
    text = text.strip()
    now = int(time.time() * 1000) if now_ms is None else now_ms
    if text.startswith("@"):
        return _parse_time_spec(text, now)
    first, sep, second = text.partition(":")
    spec = _parse_start(first, text) if first else OffsetSpec(kind="start")
    if not sep or not second:
        if not first:
            raise InvalidArgument(f"bad offset {text!r}: {_HELP}")
        return spec
    if second == "end":
        return _until(spec, "end", 0)
    if not second.isdigit():
        raise InvalidArgument(f"bad offset {text!r}: the end must be an offset or end")
    end = int(second)
    if spec.kind == "absolute" and end < spec.value:
        raise InvalidArgument(f"bad offset {text!r}: the end is before the start")
    return _until(spec, "offset", end)


def _parse_time_spec(text: str, now: int) -> OffsetSpec:
    """``@T``, ``@T:``, ``@:T``, ``@T1:T2`` (times may hold colons: ISO 8601)."""
    body = text[1:]
    cuts = [-1] + [i for i, ch in enumerate(body) if ch == ":"]
    last_error: InvalidArgument | None = None
    for cut in cuts:  # no split first, then each colon from the left
        first, second = (body, "") if cut < 0 else (body[:cut], body[cut + 1 :])
        if cut < 0 and not first:
            continue
        try:
            return _time_range(first, second, text, now)
        except InvalidArgument as exc:
            last_error = exc
    raise last_error or InvalidArgument(f"bad offset {text!r}: {_HELP}")


def _time_range(first: str, second: str, text: str, now: int) -> OffsetSpec:
    start = _parse_time(first, now) if first else None
    spec = (
        OffsetSpec(kind="start")
        if start is None
        else OffsetSpec(kind="timestamp", value=start)
    )
    if not second:
        if start is None:
            raise InvalidArgument(f"bad offset {text!r}: {_HELP}")
        return spec
    if second in ("end", "now"):
        return _until(spec, "end", 0)
    if second.startswith("+") and _DURATION.fullmatch(second):
        if start is None:
            raise InvalidArgument(
                f"bad offset {text!r}: a +duration end needs a start time"
            )
        return _until(spec, "timestamp", start + _duration_ms(second))
    return _until(spec, "timestamp", _parse_time(second, now))


def _until(spec: OffsetSpec, until: str, value: int) -> OffsetSpec:
    return OffsetSpec(kind=spec.kind, value=spec.value, until=until, until_value=value)


def _parse_start(text: str, whole: str) -> OffsetSpec:
    if text in ("start", "earliest", "oldest", "beginning"):
        return OffsetSpec(kind="start")
    if text in ("end", "latest", "newest"):
        return OffsetSpec(kind="end")
    if re.fullmatch(r"[+-]?\d+", text) is None:
        raise InvalidArgument(f"bad offset {whole!r}: {_HELP}")
    number = int(text)
    if text.startswith("-"):
        return OffsetSpec(kind="relative", value=-number)
    if text.startswith("+"):
        return OffsetSpec(kind="after-start", value=number)
    return OffsetSpec(kind="absolute", value=number)


def _duration_ms(text: str) -> int:
    m = _DURATION.fullmatch(text)
    assert m is not None
    sign = -1 if m.group(1) == "-" else 1
    return sign * int(m.group(2)) * _UNIT_MS[m.group(3)]


def _parse_time(text: str, now_ms: int) -> int:
    if text.isdigit():
        return int(text)
    if text == "now":
        return now_ms
    if _DURATION.fullmatch(text):
        if text.startswith("+"):
            raise InvalidArgument(
                f"bad time {text!r}: a start time counts back from now (-1h), "
                "a +duration is only for the end"
            )
        return now_ms + _duration_ms(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidArgument(
            f"bad time {text!r}: use milliseconds since the epoch, ISO 8601 "
            "or a duration such as -1h"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def resolve_offsets(
    client: KafkaClient, topic: str, partitions: Sequence[int], spec: OffsetSpec
) -> dict[int, int]:
    """The offset each partition starts from for ``spec``."""
    if spec.kind == "start":
        return client.list_offsets(topic, partitions, EARLIEST)
    ends = client.list_offsets(topic, partitions, LATEST)
    if spec.kind == "end":
        return ends
    starts = client.list_offsets(topic, partitions, EARLIEST)
    if spec.kind == "absolute":
        return {p: min(max(spec.value, starts[p]), ends[p]) for p in partitions}
    if spec.kind == "after-start":
        return {p: min(starts[p] + spec.value, ends[p]) for p in partitions}
    if spec.kind == "relative":
        return {p: max(starts[p], ends[p] - spec.value) for p in partitions}
    found = client.list_offsets(topic, partitions, spec.value)
    return {p: ends[p] if found[p] < 0 else found[p] for p in partitions}


def resolve_stops(
    client: KafkaClient, topic: str, partitions: Sequence[int], spec: OffsetSpec
) -> dict[int, int] | None:
    """Where each partition stops (exclusive) for ``spec``; None: follow new records.

    "end" is resolved by :func:`consume` itself (the high watermark it first sees).
    """
    if spec.until == "offset":
        return dict.fromkeys(partitions, spec.until_value)
    if spec.until == "timestamp":
        ends = client.list_offsets(topic, partitions, LATEST)
        found = client.list_offsets(topic, partitions, spec.until_value)
        return {p: ends[p] if found[p] < 0 else found[p] for p in partitions}
    return None


def consume(
    client: KafkaClient,
    positions: Mapping[TopicPartition, int],
    *,
    until_end: bool = False,
    stop_at: Mapping[TopicPartition, int] | None = None,
    max_records: int | None = None,
    max_wait_ms: int = 500,
    deadline: float | None = None,
    on_poll: Callable[[], None] | None = None,
) -> Iterator[ConsumedRecord]:
    """Yield records from ``positions`` ((topic, partition) -> next offset).

    A partition stops at its ``stop_at`` offset (exclusive), or, with ``until_end``,
    at the high watermark it had when consuming began; iteration ends when every
    partition has stopped, after ``max_records``, or at ``deadline``
    (time.monotonic()); otherwise it follows new records until the caller stops.
    ``positions`` is not modified; a caller committing offsets tracks the records it
    was given. ``on_poll`` is called before each fetch round (a group member's
    heartbeat); what it raises ends the iteration.
    """
    current = dict(positions)
    stops: dict[TopicPartition, int] = dict(stop_at or {})
    pending_end: set[TopicPartition] = set()
    if until_end:
        # The end is the high watermark when consuming began: ListOffsets, corrected by
        # the first Fetch of each partition (some brokers under-report the latest).
        for topic, parts in _by_topic(current).items():
            for p, end in client.list_offsets(topic, parts, LATEST).items():
                if (topic, p) not in stops:
                    stops[(topic, p)] = end
                    pending_end.add((topic, p))
    bounded = until_end or stop_at is not None
    count = 0
    while True:
        active = {
            tp: o
            for tp, o in current.items()
            if tp not in stops or o < stops[tp] or (tp in pending_end and stops[tp])
        }
        if not active or (max_records is not None and count >= max_records):
            return
        if deadline is not None and time.monotonic() >= deadline:
            return
        if on_poll is not None:
            on_poll()
        groups = _by_topic(active)
        wait = min(max_wait_ms, 100) if bounded else max_wait_ms
        wait = max(wait // len(groups), 20)
        rounds: list[list[ConsumedRecord]] = []
        for topic, parts in groups.items():
            fetched = client.fetch(
                topic, {p: current[(topic, p)] for p in parts}, max_wait_ms=wait
            )
            for partition, result in sorted(fetched.items()):
                tp = (topic, partition)
                if result.error_code == ErrorCode.OFFSET_OUT_OF_RANGE:
                    # Trimmed under us (or asked beyond the end): restart at log start.
                    start = client.list_offsets(topic, [partition], EARLIEST)
                    current[tp] = start[partition]
                    continue
                if result.error_code:
                    raise KafkaError(result.error_code, f"fetch {topic}/{partition}")
                if tp in pending_end:
                    pending_end.discard(tp)
                    stops[tp] = max(stops[tp], result.high_watermark)
                stop = stops.get(tp)
                rounds.append(
                    [r for r in result.records if stop is None or r.offset < stop]
                )
                current[tp] = max(current[tp], result.next_offset)
        # Interleave partitions by timestamp; each partition keeps its own order.
        for record in heapq.merge(*rounds, key=lambda r: r.timestamp):
            yield record
            count += 1
            if max_records is not None and count >= max_records:
                return


def _by_topic(tps: Mapping[TopicPartition, int]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for topic, partition in sorted(tps):
        out.setdefault(topic, []).append(partition)
    return out
