"""A lost/duplicate-write checker for Kafka histories (after Jepsen's Kafka workload).

A :class:`History` records what producers attempted and what the cluster answered
(``send``, ``ack``, ``fail``) and every record any consumer read (``observe``), from
any thread. :meth:`History.check` judges it against Kafka's promise to an acks=all
idempotent producer and returns a :class:`Verdict`:

- **lost**: acknowledged, but absent from the final read;
- **duplicated**: one value at two positions (partition, offset), counting the
  position its acknowledgement named and every position a reader saw it at;
- **reordered**: two acknowledgements of one producer for one partition whose
  offsets run against the order the acknowledgements arrived in;
- **inconsistent**: two values at one position, by any reader or acknowledgement (a
  consumer read a record that was later truncated, or an acknowledged one was
  overwritten);
- **vanished**: a value some reader saw that the final read did not (a consumer
  read a record that was later truncated, with nothing written in its place);
- **unexpected**: a value read that no producer sent.

Values must be unique per history; the producer of a value is the text before its
last ``-`` (``f"{producer}-{seq}"``) unless the history is given another rule. A
failed send is indeterminate: it may or may not be read, and neither is an error.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

Position = tuple[int, int]  # (partition, offset)


def producer_of(value: str) -> str:
    """The producer of ``f"{producer}-{seq}"``: the text before the last ``-``."""
    return value.rsplit("-", 1)[0]


@dataclass(frozen=True, slots=True)
class Reorder:
    """Two acknowledgements of one producer for one partition out of offset order:
    ``first`` was acknowledged before ``second`` but has the higher offset."""

    producer: str
    partition: int
    first: str
    first_offset: int
    second: str
    second_offset: int


@dataclass(frozen=True, slots=True)
class Verdict:
    """What :meth:`History.check` found; ``ok`` when nothing is wrong."""

    lost: tuple[str, ...] = ()
    duplicated: Mapping[str, tuple[Position, ...]] = field(default_factory=dict)
    reordered: tuple[Reorder, ...] = ()
    inconsistent: Mapping[Position, tuple[str, ...]] = field(default_factory=dict)
    vanished: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()
    sent: int = 0
    acked: int = 0
    failed: int = 0
    read: int = 0  # distinct values any reader saw
    final_read: int = 0  # distinct values the final read saw
    failed_but_read: int = 0  # indeterminate sends that did land

    @property
    def ok(self) -> bool:
        return not (
            self.lost
            or self.duplicated
            or self.reordered
            or self.inconsistent
            or self.vanished
            or self.unexpected
        )

    def __str__(self) -> str:
        head = (
            f"{'OK' if self.ok else 'NOT OK'}: sent {self.sent}, acked {self.acked}, "
            f"failed {self.failed} ({self.failed_but_read} of them read), "
            f"read {self.read}, final read {self.final_read}"
        )
        lines = [head]

        def some(items: list[str], limit: int = 20) -> str:
            more = f" ... and {len(items) - limit} more" if len(items) > limit else ""
            return ", ".join(items[:limit]) + more

        if self.lost:
            lines.append(f"lost {len(self.lost)}: {some(list(self.lost))}")
        if self.duplicated:
            lines.append(
                f"duplicated {len(self.duplicated)}: "
                + some([f"{v} at {list(p)}" for v, p in self.duplicated.items()])
            )
        if self.reordered:
            lines.append(
                f"reordered {len(self.reordered)}: "
                + some(
                    [
                        f"{r.producer}@p{r.partition}: {r.first} (offset "
                        f"{r.first_offset}) acked before {r.second} (offset "
                        f"{r.second_offset})"
                        for r in self.reordered
                    ]
                )
            )
        if self.inconsistent:
            lines.append(
                f"inconsistent offsets {len(self.inconsistent)}: "
                + some(
                    [
                        f"p{p}@{o}: {list(vs)}"
                        for (p, o), vs in sorted(self.inconsistent.items())
                    ]
                )
            )
        if self.vanished:
            lines.append(f"vanished {len(self.vanished)}: {some(list(self.vanished))}")
        if self.unexpected:
            lines.append(
                f"unexpected {len(self.unexpected)}: {some(list(self.unexpected))}"
            )
        return "\n".join(lines)


class History:
    """Operations of producers and readers, recorded from any thread."""

    def __init__(self, producer: Callable[[str], str] = producer_of) -> None:
        self._producer = producer
        self._lock = threading.Lock()
        self._sent: dict[str, int | None] = {}
        self._acked: dict[str, Position] = {}
        self._ack_order: list[str] = []
        self._failed: dict[str, str] = {}
        # value -> positions seen by any reader; position -> values seen there
        self._positions: dict[str, set[Position]] = defaultdict(set)
        self._at: dict[Position, set[str]] = defaultdict(set)
        self._final: set[str] = set()

    # -- recording -------------------------------------------------------------

    def send(self, value: str, partition: int | None = None) -> None:
        """A producer attempts ``value`` (to ``partition``, or its partitioner's)."""
        with self._lock:
            if value in self._sent:
                raise ValueError(f"value {value!r} sent twice: values must be unique")
            self._sent[value] = partition

    def ack(self, value: str, partition: int, offset: int) -> None:
        """The cluster acknowledged ``value`` at ``partition``/``offset``."""
        with self._lock:
            self._acked[value] = (partition, offset)
            self._ack_order.append(value)

    def fail(self, value: str, error: str) -> None:
        """The producer gave ``value`` up with ``error`` (it may still be written)."""
        with self._lock:
            self._failed[value] = error

    def observe(
        self, partition: int, offset: int, value: str, *, final: bool = False
    ) -> None:
        """A reader saw ``value`` at ``partition``/``offset``; ``final`` for the read
        that decides what was lost."""
        with self._lock:
            self._positions[value].add((partition, offset))
            self._at[(partition, offset)].add(value)
            if final:
                self._final.add(value)

    # -- questions ---------------------------------------------------------------

    def acked(self) -> dict[str, Position]:
        """Every acknowledged value and the position its acknowledgement named."""
        with self._lock:
            return dict(self._acked)

    def unread(self) -> set[str]:
        """Acknowledged values the final read has not seen yet."""
        with self._lock:
            return set(self._acked) - self._final

    def check(self) -> Verdict:
        """Judge the history so far."""
        with self._lock:
            sent = dict(self._sent)
            acked = dict(self._acked)
            order = list(self._ack_order)
            failed = dict(self._failed)
            positions = {v: set(p) for v, p in self._positions.items()}
            at = {p: set(v) for p, v in self._at.items()}
            final = set(self._final)
        read = set(positions)  # before the acknowledgements' positions join
        for value, pos in acked.items():
            positions.setdefault(value, set()).add(pos)
            at.setdefault(pos, set()).add(value)
        lost = tuple(v for v in order if v not in final)
        duplicated = {
            v: tuple(sorted(p)) for v, p in sorted(positions.items()) if len(p) > 1
        }
        inconsistent = {
            p: tuple(sorted(vs)) for p, vs in sorted(at.items()) if len(vs) > 1
        }
        unexpected = tuple(sorted(v for v in positions if v not in sent))
        vanished = tuple(sorted(v for v in read - final if v in sent))
        reordered: list[Reorder] = []
        last: dict[tuple[str, int], tuple[str, int]] = {}
        for value in order:
            partition, offset = acked[value]
            key = (self._producer(value), partition)
            prev = last.get(key)
            if prev is not None and prev[1] >= offset:
                reordered.append(
                    Reorder(key[0], partition, prev[0], prev[1], value, offset)
                )
            if prev is None or offset > prev[1]:
                last[key] = (value, offset)
        return Verdict(
            lost=lost,
            duplicated=duplicated,
            reordered=tuple(reordered),
            inconsistent=inconsistent,
            vanished=vanished,
            unexpected=unexpected,
            sent=len(sent),
            acked=len(acked),
            failed=len(failed),
            read=len(read),
            final_read=len(final),
            failed_but_read=len(read.intersection(failed)),
        )
