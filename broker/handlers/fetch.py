"""Fetch (key 1), v4–18.

Behaviour: reads whole batches from each partition's log up to its high watermark
(= durable offset, see broker.durability.acks; with followers in the ISR, also
no further than every ISR follower has fetched, broker.topics.followers), at most ``partition_max_bytes`` per
partition and ``max_bytes`` per response — except that the first batch of the
response is returned even when larger than both (KIP-74, so a consumer always
progresses); a later partition whose next batch does not fit in what is left of
``max_bytes`` (or in its ``partition_max_bytes``) gets no records this time. The
storage buffers go into the response as they are (never joined). Per partition:
high watermark, last_stable_offset (min of the first open transaction's offset and
the high watermark), log_start_offset; OFFSET_OUT_OF_RANGE below the log start or past the log end;
UNKNOWN_TOPIC_OR_PARTITION (v13+: UNKNOWN_TOPIC_ID); FENCED_LEADER_EPOCH /
UNKNOWN_LEADER_EPOCH for a stale / future current_leader_epoch;
NOT_LEADER_OR_FOLLOWER when this node does not lead the partition (see
broker.topics.state; never on a single node).

Long poll: when fewer than ``min_bytes`` are available and no partition has an
error, the response waits up to ``max_wait_ms`` for an anyio Event that group
commit (or an append to a write-caching topic) sets when one of the partitions'
high watermark moves — no timer polling; in an incremental fetch only the
session's partitions wake it as any others would, and a partition without new data
does not make the response go out (its answer waits for ``min_bytes`` like a full
fetch's).

Fetch sessions (KIP-227, v7+): broker.fetch.context says how a request's
(session_id, session_epoch) is served — without a session, a full fetch that
creates one, or an incremental fetch of a session's partitions whose response
carries only those with news — and which whole-request errors it gets
(FETCH_SESSION_ID_NOT_FOUND, INVALID_FETCH_SESSION_EPOCH,
FETCH_SESSION_TOPIC_ID_ERROR); broker.fetch.sessions is the bounded cache
(``max.incremental.fetch.session.cache.slots``) and its eviction rules. Replica
fetchers (broker.replication.fetcher) send full fetches without a session.
Version notes: v4 isolation level; v5 log start offset; v7 sessions; v11 rack;
v12 flexible; v13 topic ids; v15 replica state.

Isolation (KIP-98): isolation_level 1 (read_committed) reads no further than the
last stable offset and answers ``aborted_transactions``, the (producer id, first
offset) of every aborted transaction overlapping the returned batches, from the
segments' ``.txnindex`` (the consumer drops their records; control batches are
skipped by every client; null when there is none); isolation_level 0 reads up to
the high watermark and answers null.

Follower fetches (``replica_id >= 0``, v15+ ``replica_state.replica_id``; Kafka's
``FetchRequest.isFromFollower``): read up to the log end offset, not the high
watermark; each partition's fetch offset is recorded in
``TopicService.followers`` (broker.topics.followers, the ISR's input; a fetch
that moves the high watermark of a replicated partition wakes its acks=all waits
and long polls); and, v12+,
a ``last_fetched_epoch`` whose history diverges from this log's epoch cache is
answered with ``diverging_epoch`` = (the largest epoch <= it, that epoch's end
offset) and no records, so the follower truncates there (KIP-320,
``Partition.fetchRecords``). Authorisation of follower fetches (Kafka asks for
CLUSTER_ACTION) is the authz adapter's: with ACLs enforced only super users may
fetch as a replica.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import anyio

from broker.context import BrokerContext
from broker.fetch.context import (
    Incremental,
    SessionError,
    Sessionless,
    finish,
    new_context,
    session_wanted,
)
from broker.net.dispatch import handler
from broker.net.request import Deferred, RequestContext
from broker.topics.errors import error_code
from protocol.error_codes import ErrorCode
from protocol.messages.fetch import (
    AbortedTransaction,
    EpochEndOffset,
    FetchableTopicResponse,
    FetchRequest,
    FetchResponse,
    PartitionData,
)
from storage.errors import StorageError
from storage.partition_log import PartitionLog

READ_COMMITTED = 1  # isolation_level


@dataclass(slots=True)
class _Built:
    response: FetchResponse
    size: int
    has_error: bool
    logs: list[PartitionLog]


def _partition(
    index: int, code: ErrorCode, hw: int = -1, start: int = -1
) -> PartitionData:
    return PartitionData(
        partition_index=index,
        error_code=code,
        high_watermark=hw,
        last_stable_offset=hw,
        log_start_offset=start,
        records=b"",
    )


def _aborted(
    plog: PartitionLog, start: int, upper: int
) -> tuple[AbortedTransaction, ...] | None:
    """The aborted transactions a read_committed consumer needs for [start, upper)
    (None when there are none, as for read_uncommitted)."""
    found = plog.aborted_transactions(start, upper)
    if not found:
        return None
    return tuple(
        AbortedTransaction(producer_id=e.producer_id, first_offset=e.first_offset)
        for e in found
    )


def _replica_id(request: FetchRequest, version: int) -> int:
    """The fetching replica's node id; negative for consumers."""
    return request.replica_state.replica_id if version >= 15 else request.replica_id


def _diverging(
    plog: PartitionLog, leader_epoch: int, last_fetched_epoch: int, offset: int
) -> EpochEndOffset | None:
    """KIP-320: (epoch, end offset) where a follower's history leaves ours, or None
    when its last fetched epoch and fetch offset agree with this log."""
    if last_fetched_epoch < 0:
        return None
    if last_fetched_epoch == leader_epoch or plog.leader_epoch < 0:
        epoch, end = leader_epoch, plog.log_end_offset
    elif last_fetched_epoch > leader_epoch:
        epoch, end = -1, -1
    else:
        epoch, end = plog.epoch_end_offset(last_fetched_epoch)
    if epoch < last_fetched_epoch or end < offset:
        return EpochEndOffset(epoch=epoch, end_offset=end)
    return None


class _Wanted(Protocol):
    """A partition to fetch: a request's FetchPartition or a session's
    CachedPartition (broker.fetch.sessions)."""

    @property
    def partition(self) -> int: ...
    @property
    def current_leader_epoch(self) -> int: ...
    @property
    def fetch_offset(self) -> int: ...
    @property
    def last_fetched_epoch(self) -> int: ...
    @property
    def log_start_offset(self) -> int: ...
    @property
    def partition_max_bytes(self) -> int: ...


# (topic name, topic id, partitions) runs, in response order
Wanted = Sequence[tuple[str, bytes, Sequence[_Wanted]]]


def _requested(request: FetchRequest) -> Wanted:
    return [(t.topic, t.topic_id, t.partitions) for t in request.topics]


def _build(
    ctx: BrokerContext, request: FetchRequest, version: int, wanted: Wanted
) -> _Built:
    by_id = version >= 13
    follower = _replica_id(request, version)
    committed = request.isolation_level == READ_COMMITTED and follower < 0
    budget = max(0, request.max_bytes)
    total = 0
    has_error = False
    logs: list[PartitionLog] = []
    topics = []
    for topic_name, topic_id, partitions in wanted:
        meta = ctx.topics.find_by_id(topic_id) if by_id else ctx.topics.find(topic_name)
        parts = []
        for p in partitions:
            if meta is None:
                code = (
                    ErrorCode.UNKNOWN_TOPIC_ID
                    if by_id
                    else ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                )
                parts.append(_partition(p.partition, code))
                has_error = True
                continue
            try:
                plog = ctx.topics.logs.partition(meta.name, p.partition)
                state = ctx.topics.state(meta, plog)
                if not state.is_local_leader:
                    parts.append(
                        _partition(p.partition, ErrorCode.NOT_LEADER_OR_FOLLOWER)
                    )
                    has_error = True
                    continue
                epoch = state.leader_epoch
                if p.current_leader_epoch > epoch:
                    parts.append(
                        _partition(p.partition, ErrorCode.UNKNOWN_LEADER_EPOCH)
                    )
                    has_error = True
                    continue
                if 0 <= p.current_leader_epoch < epoch:
                    parts.append(_partition(p.partition, ErrorCode.FENCED_LEADER_EPOCH))
                    has_error = True
                    continue
                hw = state.high_watermark
                start = state.log_start_offset
                offset = p.fetch_offset
                if follower >= 0 and version >= 12:
                    diverging = _diverging(plog, epoch, p.last_fetched_epoch, offset)
                    if diverging is not None:
                        parts.append(
                            PartitionData(
                                partition_index=p.partition,
                                error_code=ErrorCode.NONE,
                                high_watermark=hw,
                                last_stable_offset=state.last_stable_offset,
                                log_start_offset=start,
                                diverging_epoch=diverging,
                                records=b"",
                            )
                        )
                        has_error = True  # answer at once, like an error
                        continue
                if offset < start or offset > plog.log_end_offset:
                    parts.append(
                        _partition(
                            p.partition, ErrorCode.OFFSET_OUT_OF_RANGE, hw, start
                        )
                    )
                    has_error = True
                    continue
                logs.append(plog)
                # A follower copies the whole log; consumers see the high watermark
                # (read_committed: the last stable offset).
                upper = state.last_stable_offset if committed else hw
                if follower >= 0:
                    upper = plog.log_end_offset
                    if ctx.topics.follower_fetched(
                        meta,
                        plog,
                        replica_id=follower,
                        fetch_offset=offset,
                        log_start_offset=p.log_start_offset,
                    ):
                        # the high watermark moved: acks=all waits and consumers'
                        # long polls
                        ctx.durability.waiters.notify(plog)
                limit = min(p.partition_max_bytes, budget - total)
                records: bytes | memoryview | tuple[bytes | memoryview, ...] = b""
                aborted: tuple[AbortedTransaction, ...] | None = None
                if offset < upper and (limit > 0 or total == 0):
                    # KIP-74 (ReplicaManager.readFromLog's minOneMessage): only the
                    # first batch of the response may exceed the limits; every
                    # later partition gets the whole batches that fit.
                    result = plog.read(
                        offset, max(limit, 1), upper_bound=upper, min_one=total == 0
                    )
                    if result.size:
                        total += result.size
                        bufs = result.buffers
                        records = bufs[0] if len(bufs) == 1 else tuple(bufs)
                        if committed:
                            aborted = _aborted(plog, offset, result.next_offset)
            except StorageError as e:
                parts.append(_partition(p.partition, error_code(e)))
                has_error = True
                continue
            parts.append(
                PartitionData(
                    partition_index=p.partition,
                    error_code=ErrorCode.NONE,
                    high_watermark=hw,
                    last_stable_offset=state.last_stable_offset,
                    log_start_offset=start,
                    aborted_transactions=aborted,
                    records=records,
                )
            )
        topics.append(
            FetchableTopicResponse(
                topic=topic_name, topic_id=topic_id, partitions=tuple(parts)
            )
        )
    return _Built(
        response=FetchResponse(
            error_code=ErrorCode.NONE, session_id=0, responses=tuple(topics)
        ),
        size=total,
        has_error=has_error,
        logs=logs,
    )


@handler(api_key=1, name="fetch", min_version=4, max_version=18)
def fetch(rctx: RequestContext, request: FetchRequest) -> object:
    ctx = rctx.broker
    version = rctx.api_version
    sessions = ctx.fetch_sessions
    now_ms = _now_ms()
    context = new_context(sessions, request, version, now_ms)
    if isinstance(context, SessionError):
        ctx.metrics.error("fetch", context.code.name)
        return FetchResponse(error_code=context.code, session_id=0, responses=())
    if isinstance(context, Incremental):
        ctx.metrics.fetch_incremental += 1
        wanted: Wanted = session_wanted(context.session)
    else:
        wanted = _requested(request)
    privileged = _replica_id(request, version) >= 0

    def respond(built: _Built) -> FetchResponse:
        _count_errors(ctx, built)
        if isinstance(context, Sessionless):
            if version >= 7 and request.session_id:  # a session was closed
                ctx.metrics.fetch_sessions = len(sessions)
            return built.response
        response = finish(
            context,
            sessions,
            built.response,
            wanted,
            privileged=privileged,
            version=version,
            now_ms=_now_ms(),
        )
        ctx.metrics.fetch_sessions = len(sessions)
        ctx.metrics.fetch_sessions_evicted = sessions.evicted
        return response

    built = _build(ctx, request, version, wanted)
    if (
        built.size >= request.min_bytes
        or built.has_error
        or request.max_wait_ms <= 0
        or not built.logs
        or ctx.runtime.shutting_down
    ):
        return respond(built)

    async def long_poll() -> FetchResponse:
        deadline = time.monotonic() + request.max_wait_ms / 1000
        current = built
        while True:
            event = anyio.Event()
            watched = current.logs
            ctx.durability.waiters.register(watched, event)
            try:
                # Rebuild after registering, so a wake-up between the first build
                # and the registration is not lost.
                current = _build(ctx, request, version, wanted)
                if current.size >= request.min_bytes or current.has_error:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0 or ctx.runtime.shutting_down:
                    break
                with anyio.move_on_after(remaining):
                    await event.wait()
            finally:
                ctx.durability.waiters.unregister(watched, event)
            if _stopping(ctx) or time.monotonic() >= deadline:
                current = _build(ctx, request, version, wanted)
                break
        return respond(current)

    return Deferred(long_poll)


def _now_ms() -> int:
    return time.monotonic_ns() // 1_000_000


def _stopping(ctx: BrokerContext) -> bool:
    return ctx.runtime.shutting_down  # a function: the flag changes while we await


def _count_errors(ctx: BrokerContext, built: _Built) -> None:
    if not built.has_error:
        return
    for topic in built.response.responses:
        for part in topic.partitions:
            if part.error_code:
                ctx.metrics.error("fetch", ErrorCode(part.error_code).name)
