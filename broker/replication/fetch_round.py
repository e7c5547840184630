"""One round of a replica fetcher: the partitions' progress, the Fetch for them,
which answers still apply, and whether the next Fetch may go out before they are
appended (used by :mod:`broker.replication.fetcher`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from broker.replication.follower_log import next_offset_after
from broker.replication.follower_sync import MAX_UNSYNCED_BYTES
from protocol.error_codes import ErrorCode
from protocol.messages.fetch import (
    FetchPartition,
    FetchRequest,
    FetchResponse,
    FetchTopic,
    PartitionData,
    ReplicaState,
)
from storage.partition_log import PartitionLog

ZERO_UUID: Final = b"\x00" * 16


@dataclass(frozen=True, slots=True, order=True)
class TopicPartition:
    """A partition by topic name and index."""

    topic: str
    partition: int


@dataclass(frozen=True, slots=True, kw_only=True)
class FetcherSettings:
    """How a replica fetcher fetches (Kafka's ``replica.fetch.*`` settings)."""

    max_wait_ms: int = 500  # replica.fetch.wait.max.ms
    min_bytes: int = 1  # replica.fetch.min.bytes
    max_bytes: int = 10 * 1024 * 1024  # replica.fetch.response.max.bytes
    # replica.fetch.max.bytes; Kafka's is 1 MiB, but a follower here pays a round
    # trip and a worker-thread append per Fetch, so a far-behind one catches up
    # faster with fewer, bigger Fetches (docs/benchmarks.md, "Replication").
    partition_max_bytes: int = 8 * 1024 * 1024
    # Below the leader's high watermark, how many appended bytes may wait for their
    # fsync while the follower fetches on (broker/replication/follower_sync.py).
    max_unsynced_bytes: int = MAX_UNSYNCED_BYTES
    request_timeout_s: float = 30.0
    backoff_initial_s: float = 0.1  # replica.fetch.backoff.ms
    backoff_max_s: float = 5.0
    max_connect_failures: int | None = None  # None: retry until stopped
    # Skip OffsetForLeaderEpoch and let Fetch's diverging_epoch find where the logs
    # part (what Kafka does once every broker speaks Fetch v12, KIP-320).
    truncate_on_fetch: bool = False


@dataclass(slots=True, kw_only=True)
class PartitionProgress:
    """One partition's copy: where it is and how far behind the leader."""

    tp: TopicPartition
    log: PartitionLog = field(repr=False)
    topic_id: bytes
    leader_epoch: int  # the epoch of the leader we fetch from (-1: unchecked)
    fetch_offset: int  # the local log end offset (durable once it reaches the HW)
    leader_high_watermark: int = -1  # -1 until the first answer
    leader_log_start: int = -1
    needs_truncation: bool = True  # OffsetForLeaderEpoch before the next Fetch
    caught_up: bool = False
    retry_at: float = 0.0  # monotonic: skip until then after a retriable error
    last_error: ErrorCode = ErrorCode.NONE

    @property
    def lag(self) -> int:
        """Records behind the leader's high watermark (-1 before the first answer)."""
        if self.leader_high_watermark < 0:
            return -1
        return max(0, self.leader_high_watermark - self.fetch_offset)


@dataclass(frozen=True, slots=True)
class Sent:
    """What one partition of a Fetch asked: of whom, in which epoch, from where."""

    progress: PartitionProgress
    epoch: int
    offset: int


def fetch_request(
    node_id: int,
    settings: FetcherSettings,
    parts: list[PartitionProgress],
    *,
    by_id: bool,
    at: dict[TopicPartition, int] | None = None,
) -> tuple[FetchRequest, dict[tuple[str | bytes, int], Sent]]:
    """The Fetch for ``parts`` (by topic id or name) and what each asked: from
    each log's end, or from the offsets ``at`` (the ends once the answers
    being appended are)."""
    sent: dict[tuple[str | bytes, int], Sent] = {}
    topics: dict[str | bytes, list[FetchPartition]] = {}
    for part in parts:
        key: str | bytes = part.topic_id if by_id else part.tp.topic
        offset = part.fetch_offset if at is None else at[part.tp]
        sent[(key, part.tp.partition)] = Sent(part, part.leader_epoch, offset)
        topics.setdefault(key, []).append(
            FetchPartition(
                partition=part.tp.partition,
                current_leader_epoch=part.leader_epoch,
                fetch_offset=offset,
                last_fetched_epoch=part.log.leader_epoch,
                log_start_offset=part.log.log_start_offset,
                partition_max_bytes=settings.partition_max_bytes,
            )
        )
    request = FetchRequest(
        replica_id=node_id,
        replica_state=ReplicaState(replica_id=node_id, replica_epoch=-1),
        max_wait_ms=settings.max_wait_ms,
        min_bytes=settings.min_bytes,
        max_bytes=settings.max_bytes,
        isolation_level=0,
        session_id=0,
        session_epoch=-1,
        topics=tuple(
            FetchTopic(
                topic=key if isinstance(key, str) else "",
                topic_id=key if isinstance(key, bytes) else ZERO_UUID,
                partitions=tuple(ps),
            )
            for key, ps in topics.items()
        ),
        forgotten_topics_data=(),
        rack_id="",
    )
    return request, sent


def current_answers(
    response: FetchResponse,
    sent: dict[tuple[str | bytes, int], Sent],
    parts: Mapping[TopicPartition, PartitionProgress],
    *,
    by_id: bool,
) -> list[tuple[PartitionProgress, PartitionData]]:
    """The answer's partitions that still match what was asked (a partition
    that changed while the Fetch was out has a stale answer: it is dropped)."""
    out = []
    for topic in response.responses:
        tkey: str | bytes = topic.topic_id if by_id else topic.topic
        for data in topic.partitions:
            entry = sent.get((tkey, data.partition_index))
            if entry is None:
                continue
            part = entry.progress
            if (
                parts.get(part.tp) is not part
                or part.leader_epoch != entry.epoch
                or part.fetch_offset != entry.offset
                or part.needs_truncation
            ):
                continue
            out.append((part, data))
    return out


def ahead(
    parts: list[PartitionProgress],
    answers: list[tuple[PartitionProgress, PartitionData]],
) -> dict[TopicPartition, int] | None:
    """Where each partition's log will end once ``answers`` are appended, if
    the next Fetch may go out before that: every partition answered plain
    records, and every new end is still below the leader's high watermark
    (so the offsets it reports move nothing on the leader, follower_sync.py);
    else None."""
    if len(answers) != len(parts):
        return None
    ends: dict[TopicPartition, int] = {}
    for part, data in answers:
        diverging = data.diverging_epoch
        if (
            data.error_code != ErrorCode.NONE
            or diverging.epoch >= 0
            or diverging.end_offset >= 0
        ):
            return None
        end = next_offset_after(data.records)
        if end is None or end >= data.high_watermark:
            return None
        ends[part.tp] = end
    return ends
