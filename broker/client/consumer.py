"""Where ``topic consume`` starts and how it reads: offset specs and the fetch loop.

Offset specs (``--offset``): ``start`` (log start), ``end`` (high watermark: only new
records), ``N`` (absolute, clamped into [start, end]), ``-N`` (the last N records of
each partition), ``@TIMESTAMP`` (the first record at or after a time in ms since the
epoch, or an ISO 8601 time; after the last record means ``end``).
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from broker.client.client import EARLIEST, LATEST, KafkaClient
from broker.client.errors import InvalidArgument, KafkaError
from broker.client.types import ConsumedRecord
from protocol.error_codes import ErrorCode


@dataclass(frozen=True, slots=True, kw_only=True)
class OffsetSpec:
    """A parsed ``--offset`` value."""

    kind: str  # "start" | "end" | "absolute" | "relative" | "timestamp"
    value: int = 0


def parse_offset_spec(text: str) -> OffsetSpec:
    """Parse ``start|end|N|-N|@timestamp``."""
    text = text.strip()
    if text in ("start", "earliest", "oldest", "beginning"):
        return OffsetSpec(kind="start")
    if text in ("end", "latest", "newest"):
        return OffsetSpec(kind="end")
    if text.startswith("@"):
        return OffsetSpec(kind="timestamp", value=_parse_time(text[1:]))
    try:
        number = int(text)
    except ValueError:
        raise InvalidArgument(
            f"bad offset {text!r}: use start, end, a number, -N or @timestamp"
        ) from None
    if text.startswith("-"):
        return OffsetSpec(kind="relative", value=-number)
    return OffsetSpec(kind="absolute", value=number)


def _parse_time(text: str) -> int:
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidArgument(
            f"bad timestamp {text!r}: use milliseconds since the epoch or ISO 8601"
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
    if spec.kind == "relative":
        return {p: max(starts[p], ends[p] - spec.value) for p in partitions}
    found = client.list_offsets(topic, partitions, spec.value)
    return {p: ends[p] if found[p] < 0 else found[p] for p in partitions}


def consume(
    client: KafkaClient,
    topic: str,
    positions: Mapping[int, int],
    *,
    until_end: bool = False,
    max_records: int | None = None,
    max_wait_ms: int = 500,
    deadline: float | None = None,
) -> Iterator[ConsumedRecord]:
    """Yield records from ``positions`` (partition -> next offset), in fetch order.

    Stops after ``max_records``, or when every partition reached the high watermark it
    had when consuming began (``until_end``), or at ``deadline`` (time.monotonic());
    otherwise follows new records until the caller stops iterating. ``positions`` is
    not modified; a caller committing offsets tracks the records it was given.
    """
    current = dict(positions)
    # The end is the high watermark when consuming began: ListOffsets, corrected by the
    # first Fetch of each partition (some brokers under-report the latest offset).
    ends = client.list_offsets(topic, sorted(current), LATEST) if until_end else {}
    seen_end: set[int] = set()
    count = 0
    while True:
        active = {
            p: o
            for p, o in current.items()
            if not until_end
            or o < ends.get(p, 0)
            or (p not in seen_end and ends.get(p, 0))
        }
        if not active or (max_records is not None and count >= max_records):
            return
        if deadline is not None and time.monotonic() >= deadline:
            return
        fetched = client.fetch(
            topic,
            active,
            max_wait_ms=min(max_wait_ms, 100) if until_end else max_wait_ms,
        )
        rounds: list[list[ConsumedRecord]] = []
        for partition, result in sorted(fetched.items()):
            if result.error_code == ErrorCode.OFFSET_OUT_OF_RANGE:
                # Trimmed under us (or asked beyond the end): restart from the log start.
                start = client.list_offsets(topic, [partition], EARLIEST)[partition]
                current[partition] = start
                continue
            if result.error_code:
                raise KafkaError(result.error_code, f"fetch {topic}/{partition}")
            if until_end and partition not in seen_end:
                seen_end.add(partition)
                ends[partition] = max(ends.get(partition, 0), result.high_watermark)
            end = ends.get(partition, 0)
            rounds.append(
                [r for r in result.records if not until_end or r.offset < end]
            )
            current[partition] = max(current[partition], result.next_offset)
        # Interleave partitions by timestamp; each partition keeps its own order.
        for record in heapq.merge(*rounds, key=lambda r: r.timestamp):
            yield record
            count += 1
            if max_records is not None and count >= max_records:
                return
