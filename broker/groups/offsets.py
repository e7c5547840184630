"""Committed-offset rules (pure): what an OffsetCommit may write, what a fetch returns.

Owns the per-partition decisions of Kafka's ``GroupMetadataManager`` that do not
depend on membership (the coordinator's ``validate_commit`` decides those):
metadata size (``offset.metadata.max.bytes``, OFFSET_METADATA_TOO_LARGE), unknown
topics and partitions (UNKNOWN_TOPIC_OR_PARTITION), explicit retention of
OffsetCommit v2–4 (``retention_time_ms``) and v1's per-partition commit timestamp;
the shape of OffsetFetch answers (a partition without a commit answers offset -1,
no error); and the inputs of offset expiry (``offsets.retention.minutes``: offsets
of groups with members never expire; others expire counted from the later of their
commit and the moment their group became empty).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from broker.groups.coordinator import GroupCoordinator
from broker.groups.model import GroupState
from protocol.error_codes import ErrorCode
from storage.offset_store import CommittedOffset

DEFAULT_METADATA_MAX_BYTES = 4096  # offset.metadata.max.bytes
DEFAULT_RETENTION_MS = 7 * 24 * 3600 * 1000  # offsets.retention.minutes = 10080


@dataclass(frozen=True, slots=True, kw_only=True)
class CommitPartition:
    """One partition of an OffsetCommit request, version differences resolved."""

    topic: str
    partition: int
    offset: int
    leader_epoch: int = -1
    metadata: str | None = ""
    commit_timestamp_ms: int = -1  # OffsetCommit v1 only


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchedOffset:
    """One partition of an OffsetFetch answer."""

    topic: str
    partition: int
    offset: int
    leader_epoch: int
    metadata: str
    error: ErrorCode = ErrorCode.NONE


def plan_commit(
    partitions: Iterable[CommitPartition],
    *,
    now_ms: int,
    retention_time_ms: int = -1,
    partition_exists: Callable[[str, int], bool],
    metadata_max_bytes: int = DEFAULT_METADATA_MAX_BYTES,
) -> tuple[list[CommittedOffset], dict[tuple[str, int], ErrorCode]]:
    """Split a commit into the offsets to write and per-partition errors."""
    accepted: list[CommittedOffset] = []
    errors: dict[tuple[str, int], ErrorCode] = {}
    expire = now_ms + retention_time_ms if retention_time_ms >= 0 else None
    for p in partitions:
        key = (p.topic, p.partition)
        metadata = p.metadata or ""
        if len(metadata.encode()) > metadata_max_bytes:
            errors[key] = ErrorCode.OFFSET_METADATA_TOO_LARGE
        elif not partition_exists(p.topic, p.partition):
            errors[key] = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        else:
            accepted.append(
                CommittedOffset(
                    topic=p.topic,
                    partition=p.partition,
                    offset=p.offset,
                    leader_epoch=p.leader_epoch,
                    metadata=metadata,
                    commit_ms=p.commit_timestamp_ms
                    if p.commit_timestamp_ms >= 0
                    else now_ms,
                    expire_ms=expire,
                )
            )
            errors[key] = ErrorCode.NONE
    return accepted, errors


def fetch_answer(
    committed: Mapping[tuple[str, int], CommittedOffset],
    requested: Iterable[tuple[str, int]] | None,
) -> list[FetchedOffset]:
    """OffsetFetch rows: the listed partitions (-1 where nothing is committed) or all."""
    keys = sorted(committed) if requested is None else list(requested)
    out = []
    for topic, partition in keys:
        c = committed.get((topic, partition))
        out.append(
            FetchedOffset(
                topic=topic,
                partition=partition,
                offset=c.offset if c else -1,
                leader_epoch=c.leader_epoch if c else -1,
                metadata=c.metadata if c else "",
            )
        )
    return out


def offset_expired(
    c: CommittedOffset, *, now_ms: int, retention_ms: int, empty_since_ms: int | None
) -> bool:
    """Whether a committed offset of a group without members has expired (Kafka >=
    2.1): at its explicit expiry, else ``retention_ms`` after the later of its commit
    and the moment its group became empty."""
    if c.expire_ms is not None:
        return now_ms >= c.expire_ms
    base = c.commit_ms if empty_since_ms is None else max(c.commit_ms, empty_since_ms)
    return now_ms - base >= retention_ms


def expiry_inputs(
    coordinator: GroupCoordinator, *, mono_now_ms: int, wall_now_ms: int
) -> tuple[set[str], dict[str, int]]:
    """Groups whose offsets must not expire, and when the others became empty (wall ms)."""
    protected = coordinator.active_groups()
    empty_since = {
        g.group_id: wall_now_ms - (mono_now_ms - g.state_since_ms)
        for g in coordinator.groups.values()
        if g.state is GroupState.EMPTY
    }
    return protected, empty_since
