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
high watermark moves — no timer polling. Fetch sessions (KIP-227) are not kept:
``session_id`` is always 0 and a request naming a session gets
FETCH_SESSION_ID_NOT_FOUND, so clients fall back to full fetches.
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
from dataclasses import dataclass

import anyio

from broker.context import BrokerContext
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


def _build(ctx: BrokerContext, request: FetchRequest, version: int) -> _Built:
    by_id = version >= 13
    follower = _replica_id(request, version)
    committed = request.isolation_level == READ_COMMITTED and follower < 0
    budget = max(0, request.max_bytes)
    total = 0
    has_error = False
    logs: list[PartitionLog] = []
    topics = []
    for topic in request.topics:
        meta = (
            ctx.topics.find_by_id(topic.topic_id)
            if by_id
            else ctx.topics.find(topic.topic)
        )
        parts = []
        for p in topic.partitions:
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
                topic=topic.topic, topic_id=topic.topic_id, partitions=tuple(parts)
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
    if version >= 7 and request.session_id != 0:
        ctx.metrics.error("fetch", ErrorCode.FETCH_SESSION_ID_NOT_FOUND.name)
        return FetchResponse(
            error_code=ErrorCode.FETCH_SESSION_ID_NOT_FOUND, session_id=0, responses=()
        )
    built = _build(ctx, request, version)
    if (
        built.size >= request.min_bytes
        or built.has_error
        or request.max_wait_ms <= 0
        or not built.logs
        or ctx.runtime.shutting_down
    ):
        _count_errors(ctx, built)
        return built.response

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
                current = _build(ctx, request, version)
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
                current = _build(ctx, request, version)
                break
        _count_errors(ctx, current)
        return current.response

    return Deferred(long_poll)


def _stopping(ctx: BrokerContext) -> bool:
    return ctx.runtime.shutting_down  # a function: the flag changes while we await


def _count_errors(ctx: BrokerContext, built: _Built) -> None:
    if not built.has_error:
        return
    for topic in built.response.responses:
        for part in topic.partitions:
            if part.error_code:
                ctx.metrics.error("fetch", ErrorCode(part.error_code).name)
