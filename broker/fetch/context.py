"""What a FetchRequest asks of the session cache (Kafka's ``FetchManager.newContext``).

By (session_id, session_epoch), v7+:

- (0, -1), and every request before v7: no session (``Sessionless``);
- (any, 0): a full fetch that closes the named session, if any, and asks for a new
  one (``Full``; it is created when the response is, holding what it told);
- (id, -1): closes session ``id``, then a full fetch without a session;
- (id, n > 0): an incremental fetch of session ``id`` (``Incremental``): the
  request's partitions are added to or updated in the session, its
  ``forgotten_topics_data`` removed, and the epoch moves on. Errors, answered for
  the whole request with no partitions: FETCH_SESSION_ID_NOT_FOUND (no such
  session: evicted, or never made), INVALID_FETCH_SESSION_EPOCH (not the epoch the
  session expects: a lost or repeated request), FETCH_SESSION_TOPIC_ID_ERROR (a
  session made with topic ids, v13+, used by a request without them or the other
  way round). A session left with no partitions is closed and the fetch answered
  without one.

:func:`finish` turns the built response of an incremental fetch into the partitions
with news — records, a changed high watermark or log start offset, an error, a
diverging epoch — remembers what they were told and moves them to the back of the
session (so ``max_bytes`` does not starve the same partitions every time; Kafka
does the same); for a full fetch it creates the session.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from broker.fetch.sessions import (
    FINAL_EPOCH,
    INITIAL_EPOCH,
    INVALID_SESSION_ID,
    CachedPartition,
    FetchSession,
    FetchSessionCache,
    PartitionKey,
    next_epoch,
)
from protocol.error_codes import ErrorCode
from protocol.messages.fetch import (
    FetchableTopicResponse,
    FetchPartition,
    FetchRequest,
    FetchResponse,
    PartitionData,
)

SESSIONS_FROM_VERSION = 7
TOPIC_IDS_FROM_VERSION = 13


@dataclass(frozen=True, slots=True)
class Sessionless:
    """Answer every requested partition; no session."""


@dataclass(frozen=True, slots=True)
class Full:
    """Answer every requested partition and create a session if a slot is free."""


@dataclass(frozen=True, slots=True)
class Incremental:
    """Fetch every partition of ``session``; answer those with news."""

    session: FetchSession


@dataclass(frozen=True, slots=True)
class SessionError:
    """Refuse the request as a whole with ``code``."""

    code: ErrorCode


FetchContext = Sessionless | Full | Incremental | SessionError
SESSIONLESS = Sessionless()
FULL = Full()


def key_of(topic: str, topic_id: bytes, partition: int, by_id: bool) -> PartitionKey:
    return (topic_id if by_id else topic, partition)


def cached_from(topic: str, topic_id: bytes, p: FetchPartition) -> CachedPartition:
    return CachedPartition(
        topic=topic,
        topic_id=topic_id,
        partition=p.partition,
        fetch_offset=p.fetch_offset,
        partition_max_bytes=p.partition_max_bytes,
        current_leader_epoch=p.current_leader_epoch,
        last_fetched_epoch=p.last_fetched_epoch,
        log_start_offset=p.log_start_offset,
    )


def new_context(
    cache: FetchSessionCache, request: FetchRequest, version: int, now_ms: int
) -> FetchContext:
    """Classify ``request`` and, for an incremental fetch, update its session."""
    if version < SESSIONS_FROM_VERSION:
        return SESSIONLESS
    session_id, epoch = request.session_id, request.session_epoch
    if epoch in (INITIAL_EPOCH, FINAL_EPOCH):
        if session_id != INVALID_SESSION_ID:
            cache.remove(session_id)
        return SESSIONLESS if epoch == FINAL_EPOCH else FULL
    session = cache.get(session_id)
    if session is None:
        return SessionError(ErrorCode.FETCH_SESSION_ID_NOT_FOUND)
    if session.epoch != epoch:
        return SessionError(ErrorCode.INVALID_FETCH_SESSION_EPOCH)
    by_id = version >= TOPIC_IDS_FROM_VERSION
    if session.uses_topic_ids != by_id:
        return SessionError(ErrorCode.FETCH_SESSION_TOPIC_ID_ERROR)
    parts = session.partitions
    for topic in request.topics:
        for p in topic.partitions:
            key = key_of(topic.topic, topic.topic_id, p.partition, by_id)
            cached = parts.get(key)
            if cached is None:
                parts[key] = cached_from(topic.topic, topic.topic_id, p)
            else:
                cached.fetch_offset = p.fetch_offset
                cached.partition_max_bytes = p.partition_max_bytes
                cached.current_leader_epoch = p.current_leader_epoch
                cached.last_fetched_epoch = p.last_fetched_epoch
                cached.log_start_offset = p.log_start_offset
    for forgotten in request.forgotten_topics_data:
        for index in forgotten.partitions:
            parts.pop(key_of(forgotten.topic, forgotten.topic_id, index, by_id), None)
    if not parts:
        cache.remove(session.id)
        return SESSIONLESS
    cache.touch(session, now_ms)
    session.epoch = next_epoch(session.epoch)
    return Incremental(session)


def session_wanted(
    session: FetchSession,
) -> list[tuple[str, bytes, list[CachedPartition]]]:
    """The session's partitions in order, as runs of one topic each (a topic may
    come back later in the list, as in Kafka's responses)."""
    runs: list[tuple[str, bytes, list[CachedPartition]]] = []
    last: tuple[str, bytes] | None = None
    for cached in session.partitions.values():
        here = (cached.topic, cached.topic_id)
        if here != last:
            runs.append((cached.topic, cached.topic_id, []))
            last = here
        runs[-1][2].append(cached)
    return runs


def _has_news(cached: CachedPartition, data: PartitionData) -> bool:
    """Kafka's ``CachedPartition.maybeUpdateResponseData``; remembers what the
    fetcher is told."""
    news = False
    if data.records:
        news = True
    if data.high_watermark != cached.high_watermark:
        news = True
        cached.high_watermark = data.high_watermark
    if data.log_start_offset != cached.local_log_start:
        news = True
        cached.local_log_start = data.log_start_offset
    if data.error_code:
        news = True
        cached.high_watermark = -1  # re-sent once the error goes away
    if data.diverging_epoch.epoch >= 0:
        news = True
    return news


def finish(
    context: FetchContext,
    cache: FetchSessionCache,
    response: FetchResponse,
    wanted: Sequence[tuple[str, bytes, Sequence[object]]],
    *,
    privileged: bool,
    version: int,
    now_ms: int,
) -> FetchResponse:
    """The response to send for ``context`` (see the module docstring)."""
    if isinstance(context, Full):
        return _create(cache, response, wanted, privileged, version, now_ms)
    if not isinstance(context, Incremental):
        return response
    session = context.session
    moved: list[tuple[PartitionKey, CachedPartition]] = []
    topics: list[FetchableTopicResponse] = []
    by_id = session.uses_topic_ids
    for (_, _, cached_run), topic in zip(wanted, response.responses, strict=True):
        kept: list[PartitionData] = []
        for cached, data in zip(cached_run, topic.partitions, strict=True):
            assert isinstance(cached, CachedPartition)
            if _has_news(cached, data):
                kept.append(data)
                key = key_of(cached.topic, cached.topic_id, cached.partition, by_id)
                moved.append((key, cached))
        if kept:
            if topics and (topics[-1].topic, topics[-1].topic_id) == (
                topic.topic,
                topic.topic_id,
            ):
                merged = (*topics[-1].partitions, *kept)
                topics[-1] = FetchableTopicResponse(
                    topic=topic.topic, topic_id=topic.topic_id, partitions=merged
                )
            else:
                topics.append(
                    FetchableTopicResponse(
                        topic=topic.topic,
                        topic_id=topic.topic_id,
                        partitions=tuple(kept),
                    )
                )
    parts = session.partitions
    for key, cached in moved:
        if parts.get(key) is cached:  # still in the session: to the back
            del parts[key]
            parts[key] = cached
    return FetchResponse(
        throttle_time_ms=response.throttle_time_ms,
        error_code=ErrorCode.NONE,
        session_id=session.id,
        responses=tuple(topics),
    )


def _create(
    cache: FetchSessionCache,
    response: FetchResponse,
    wanted: Sequence[tuple[str, bytes, Sequence[object]]],
    privileged: bool,
    version: int,
    now_ms: int,
) -> FetchResponse:
    by_id = version >= TOPIC_IDS_FROM_VERSION
    partitions: dict[PartitionKey, CachedPartition] = {}
    for (name, topic_id, requested), topic in zip(
        wanted, response.responses, strict=True
    ):
        for p, data in zip(requested, topic.partitions, strict=True):
            assert isinstance(p, FetchPartition)
            cached = cached_from(name, topic_id, p)
            cached.high_watermark = -1 if data.error_code else data.high_watermark
            cached.local_log_start = data.log_start_offset
            partitions[key_of(name, topic_id, p.partition, by_id)] = cached
    if not partitions:
        return response
    session = cache.create(
        partitions, privileged=privileged, uses_topic_ids=by_id, now_ms=now_ms
    )
    if session is None:
        return response
    return FetchResponse(
        throttle_time_ms=response.throttle_time_ms,
        error_code=ErrorCode.NONE,
        session_id=session.id,
        responses=response.responses,
    )
