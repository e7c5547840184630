"""Replica placement: which brokers hold each partition of a new topic.

Kafka's ZooKeeper-era ``AdminUtils.assignReplicasToBrokers``, as pure functions:

- rack-unaware (no broker has a rack): brokers sorted by id; partition ``p``'s
  first replica (its preferred leader) is broker ``(p + start) % n``, and the
  followers come after it at a shift that grows by one every ``n`` partitions, so
  leaders and followers both spread evenly;
- rack-aware (every broker has a rack): the same walk over the brokers interleaved
  by rack (:func:`rack_alternated`), skipping a broker whose rack already holds a
  replica of the partition while a rack without one remains (so a partition spans
  ``min(RF, racks)`` racks), and a broker already holding one while another
  remains.

The start index and the shift are random unless given (Kafka's ``fixedStartIndex``;
growing a topic passes one so new partitions continue the existing pattern). When
only some brokers have a rack the placement is rack-unaware (Kafka's
``RackAwareMode.Safe``). Refusals carry the Kafka error code the request fails
with.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Final, Protocol

from protocol.error_codes import ErrorCode


class _Random(Protocol):
    def randrange(self, stop: int, /) -> int: ...


class PlacementError(ValueError):
    """A placement the request cannot have; ``code`` is the Kafka error code."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


Assignment = list[tuple[int, ...]]

_DEFAULT_RNG: Final = random.Random()  # noqa: S311 (placement, not secrets)


def rack_alternated(brokers: Mapping[int, str]) -> list[int]:
    """The brokers interleaved by rack: racks in name order, each rack's brokers
    in id order, one broker of each rack in turn (Kafka's
    ``getRackAlternatedBrokerList``): ``{0:a,1:a,2:b,3:c,4:c}`` gives
    ``[0, 2, 3, 1, 4]``."""
    by_rack: dict[str, list[int]] = {}
    for node, rack in sorted(brokers.items()):
        by_rack.setdefault(rack, []).append(node)
    queues = [by_rack[r] for r in sorted(by_rack)]
    out: list[int] = []
    depth = 0
    while len(out) < len(brokers):
        out.extend(q[depth] for q in queues if depth < len(q))
        depth += 1
    return out


def _follower_index(first: int, shift: int, k: int, n: int) -> int:
    """The ``k``-th follower's index: never the first replica's own index."""
    return (first + 1 + (shift + k) % (n - 1)) % n


def assign(
    brokers: Mapping[int, str | None],
    partitions: int,
    replication_factor: int,
    *,
    start_index: int | None = None,
    start_partition: int = 0,
    rng: _Random = _DEFAULT_RNG,
) -> Assignment:
    """Replicas for ``partitions`` partitions (numbered from ``start_partition``)
    over the live ``brokers`` (node id → rack or None), first replica first.

    Raises:
        PlacementError: INVALID_PARTITIONS (fewer than one partition),
            INVALID_REPLICATION_FACTOR (below one, or above the brokers available).
    """
    if partitions <= 0:
        raise PlacementError(
            ErrorCode.INVALID_PARTITIONS, "Number of partitions must be larger than 0."
        )
    if replication_factor <= 0:
        raise PlacementError(
            ErrorCode.INVALID_REPLICATION_FACTOR,
            "Replication factor must be larger than 0.",
        )
    if replication_factor > len(brokers):
        raise PlacementError(
            ErrorCode.INVALID_REPLICATION_FACTOR,
            f"Replication factor: {replication_factor} larger than available "
            f"brokers: {len(brokers)}.",
        )
    racks = {b: r for b, r in brokers.items() if r is not None}
    if len(racks) == len(brokers):
        return _rack_aware(
            racks, partitions, replication_factor, start_index, start_partition, rng
        )
    return _rack_unaware(
        sorted(brokers),
        partitions,
        replication_factor,
        start_index,
        start_partition,
        rng,
    )


def _starts(n: int, start_index: int | None, rng: _Random) -> tuple[int, int]:
    if start_index is not None and start_index >= 0:
        return start_index, start_index
    return rng.randrange(n), rng.randrange(n)


def _firsts(
    n: int,
    partitions: int,
    start_index: int | None,
    start_partition: int,
    rng: _Random,
) -> Iterator[tuple[int, int]]:
    """Kafka's walk over the partitions: each one's first-replica index among the
    ``n`` brokers, and the follower shift (one more every ``n`` partitions)."""
    start, shift = _starts(n, start_index, rng)
    p = max(0, start_partition)
    for _ in range(partitions):
        if p > 0 and p % n == 0:
            shift += 1
        yield (p + start) % n, shift
        p += 1


def _rack_unaware(
    ids: Sequence[int],
    partitions: int,
    rf: int,
    start_index: int | None,
    start_partition: int,
    rng: _Random,
) -> Assignment:
    n = len(ids)
    return [
        (
            ids[first],
            *(ids[_follower_index(first, shift, k, n)] for k in range(rf - 1)),
        )
        for first, shift in _firsts(n, partitions, start_index, start_partition, rng)
    ]


def _rack_aware(
    racks: Mapping[int, str],
    partitions: int,
    rf: int,
    start_index: int | None,
    start_partition: int,
    rng: _Random,
) -> Assignment:
    ids = rack_alternated(racks)
    n = len(ids)
    n_racks = len(set(racks.values()))
    out: Assignment = []
    for first, shift in _firsts(n, partitions, start_index, start_partition, rng):
        leader = ids[first]
        replicas = [leader]
        used_racks = {racks[leader]}
        k = 0
        while len(replicas) < rf:
            broker = ids[_follower_index(first, shift * n_racks, k, n)]
            k += 1
            rack = racks[broker]
            if (rack not in used_racks or len(used_racks) == n_racks) and (
                broker not in replicas or len(replicas) == n
            ):
                replicas.append(broker)
                used_racks.add(rack)
        out.append(tuple(replicas))
    return out


def grow_start_index(brokers: Mapping[int, str | None], first_replica: int) -> int:
    """Where placing a topic's new partitions starts: the position, among the
    brokers by id, of the first broker at or after partition 0's first replica
    (Kafka's ``addPartitions``), so new partitions continue the pattern."""
    ids = sorted(brokers)
    return next((i for i, b in enumerate(ids) if b >= first_replica), 0)


def validate(
    assignment: Sequence[Sequence[int]],
    live: Collection[int],
    *,
    replication_factor: int | None = None,
) -> Assignment:
    """A manual assignment checked: at least one partition, each with at least
    one replica, no broker twice in a partition, the same replication factor
    everywhere (``replication_factor`` when given: a grown topic keeps its own),
    only live brokers.

    Raises:
        PlacementError: INVALID_REPLICA_ASSIGNMENT, saying what is wrong.
    """
    bad = ErrorCode.INVALID_REPLICA_ASSIGNMENT
    if not assignment:
        raise PlacementError(bad, "Replica assignment cannot be empty.")
    expected = (
        replication_factor if replication_factor is not None else len(assignment[0])
    )
    live_set = set(live)
    out: Assignment = []
    for p, replicas in enumerate(assignment):
        if not replicas:
            raise PlacementError(bad, f"Partition {p} has no replicas.")
        if len(set(replicas)) != len(replicas):
            raise PlacementError(
                bad, f"Partition {p} has duplicate replicas: {list(replicas)}."
            )
        if len(replicas) != expected:
            raise PlacementError(
                bad,
                f"Inconsistent replication factor: partition {p} has "
                f"{len(replicas)} replicas, expected {expected}.",
            )
        missing = sorted(set(replicas) - live_set)
        if missing:
            raise PlacementError(
                bad,
                f"Partition {p} names brokers that are not available: {missing} "
                f"(available: {sorted(live_set)}).",
            )
        out.append(tuple(replicas))
    return out
