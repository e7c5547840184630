"""Produce (key 0): v3–13 served; v0–2 advertised (KAFKA-18659) and refused per partition.

Behaviour: each partition's record batches are validated by storage (magic 2,
CRC32C, lengths, max.message.bytes) before anything is written, offsets assigned by
patching base offsets, leader epoch stamped; per-partition errors:
UNKNOWN_TOPIC_OR_PARTITION (v13: UNKNOWN_TOPIC_ID), CORRUPT_MESSAGE (bad CRC,
length, magic or count in any batch of the payload, plain, idempotent or
transactional; v8+ says why in error_message; nothing appended, the connection and
the request's other partitions unaffected), INVALID_RECORD (a magic-0/1 message
set in v3+, as Kafka's ``ProduceRequest.validateRecords``; a batch breaking one of
``LogValidator``'s rules: a control batch, a record count below its offset span, a
negative sequence of an idempotent batch, or records refused by
storage.record_rules — a record without a key on a compacted topic — with v8+
``record_errors`` naming each record's index in its batch and ``error_message``;
nothing appended), INVALID_TIMESTAMP (likewise, for a CreateTime timestamp outside
the topic's ``message.timestamp.before/after.max.ms`` bounds or a LogAppendTime
set by the producer), MESSAGE_TOO_LARGE,
KAFKA_STORAGE_ERROR (write/fsync failed; a write error other than ENOSPC also takes
the partition offline, see storage.partition_log), REQUEST_TIMED_OUT (acks=all and
the fsync did not finish within timeout_ms), INVALID_REQUIRED_ACKS,
NOT_LEADER_OR_FOLLOWER (this node does not lead the partition, see
broker.topics.state; never on a single node); idempotent
batches (producer id >= 0) are checked by ``ctx.producers``
(broker.producers.service): a duplicate of one of the last five batches is answered
with its original offsets and not appended, OUT_OF_ORDER_SEQUENCE_NUMBER /
INVALID_PRODUCER_EPOCH / UNKNOWN_PRODUCER_ID otherwise — each only for a payload
that passes validation; a transactional batch passes the same checks and opens its
producer's transaction in the partition (the last stable offset stays at its first
offset until a WriteTxnMarkers marker closes it; KIP-890's "partition added to the
transaction" verification is not done: INVALID_TXN_STATE only if
``ProducerService.verify_txn`` is set and says no); a control batch (a
transaction marker) from a client is CORRUPT_MESSAGE (only the coordinator writes
them, Kafka's ``LogValidator``). Should the producer service
be absent (only before start-up finished or during shutdown) an idempotent batch
is refused with the retriable NOT_LEADER_OR_FOLLOWER (what Kafka answers while a
partition's log, and so its producer state, is not loaded) rather than appended
unchecked. acks=0 sends no response; acks=1 answers after the write; acks=all (-1)
answers after the group-commit fsync covering the partition's last offset (unless
the topic has write.caching=true), and on a partition with followers in its ISR
once its high watermark covers it (every ISR follower fetched it;
NOT_LEADER_OR_FOLLOWER if the leadership moved meanwhile). In cluster mode an
acks=all write to a partition whose ISR is smaller than the topic's
``min.insync.replicas`` is refused with NOT_ENOUGH_REPLICAS before anything is
appended, and one whose ISR shrank below it by the time the high watermark covers
it answers NOT_ENOUGH_REPLICAS_AFTER_APPEND (Kafka's
``Partition.checkEnoughReplicasReachOffset``); acks=0/1 and a single node ignore
it. Appends happen synchronously on decode, so appends to one partition keep
request order across pipelined requests.

Produce v0–2 (magic 0/1 message sets) — decision: refused, not converted. They are
advertised only because librdkafka < 2.11 stops compressing when Produce's minimum
version is above 0 (librdkafka#4956, KAFKA-18659); no client we support sends them
(each negotiates v3+), Fetch is served from v4 only (magic 2), so a pre-0.11 client
could not read what it wrote anyway, and up-converting would put a per-record
rebuild on the produce path. Every partition of such a request is answered
UNSUPPORTED_VERSION in the requested version's response format (the connection
stays open; Kafka 4 closes it instead), nothing is appended.
Version notes: v1 throttle time; v2 log_append_time; v3 transactional id and magic
2 only; v5 log_start_offset; v8 record errors; v9 flexible; v10 current leader
(tagged); v13 topic ids.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

import structlog

from broker.context import BrokerContext
from broker.durability.acks import PendingAck
from broker.net.dispatch import handler
from broker.net.request import NO_RESPONSE, Deferred, RequestContext
from broker.producers.service import batch_identity, error_for
from broker.topics.errors import error_code
from broker.topics.state import PartitionState
from protocol.error_codes import ErrorCode
from protocol.messages.produce import (
    BatchIndexAndErrorMessage,
    PartitionProduceResponse,
    ProduceRequest,
    ProduceResponse,
    TopicProduceResponse,
)
from protocol.records import MAGIC_OFFSET
from storage.errors import InvalidBatch, InvalidRecord, StorageError
from storage.log_manager import TopicMeta
from storage.partition_log import PartitionLog
from storage.producer_state import Duplicate

log = structlog.get_logger("broker.produce")

FIRST_BATCH_VERSION = 3  # Produce v3+ carries magic-2 record batches only


def _partition_error(index: int, code: ErrorCode) -> PartitionProduceResponse:
    return PartitionProduceResponse(index=index, error_code=code, base_offset=-1)


@handler(api_key=0, name="produce", min_version=0, max_version=13)
def produce(rctx: RequestContext, request: ProduceRequest) -> object:
    if rctx.api_version < FIRST_BATCH_VERSION:
        return _refuse_legacy(rctx, request)
    gate = rctx.broker.append_gate
    if gate.active:
        # a snapshot ingest holds some partitions: a request appending to any of them
        # waits, whole and in arrival order, until the ingest releases them (live
        # producers are serialised with the ingest)
        plogs = _request_logs(rctx, request)
        if gate.busy(*plogs):
            queued = gate.enqueue(plogs, lambda: _produce(rctx, request))
            if request.acks == 0:
                return NO_RESPONSE

            async def after_ingest() -> object:
                await queued.done.wait()
                result = queued.result
                return await result.run() if isinstance(result, Deferred) else result

            return Deferred(after_ingest, serial=True)
    return _produce(rctx, request)


def _refuse_legacy(rctx: RequestContext, request: ProduceRequest) -> object:
    """Produce v0–2: UNSUPPORTED_VERSION for every partition, nothing appended."""
    code = ErrorCode.UNSUPPORTED_VERSION
    rctx.broker.metrics.error("produce", code.name)
    if request.acks == 0:
        return NO_RESPONSE
    return _response(
        [
            (
                topic.name,
                topic.topic_id,
                [_partition_error(p.index, code) for p in topic.partition_data],
            )
            for topic in request.topic_data
        ]
    )


def _request_logs(rctx: RequestContext, request: ProduceRequest) -> list[PartitionLog]:
    """The partition logs a produce request appends to (unknown ones left out)."""
    ctx = rctx.broker
    out = []
    for topic in request.topic_data:
        meta = (
            ctx.topics.find_by_id(topic.topic_id)
            if rctx.api_version >= 13
            else ctx.topics.find(topic.name)
        )
        if meta is None:
            continue
        for p in topic.partition_data:
            try:
                out.append(ctx.topics.logs.partition(meta.name, p.index))
            except StorageError:
                continue
    return out


def _ack_wait(
    ctx: BrokerContext,
    acks: int,
    meta: TopicMeta,
    plog: PartitionLog,
    state: PartitionState,
) -> Callable[[], int | None] | Literal[False] | None:
    """How an answer waits: False, not at all; None, for the fsync; else for the
    replicated high watermark this returns (followers in the ISR: acks=all waits
    for them, write caching or not)."""
    if acks != -1:
        return False
    if len(state.isr) > 1:
        topics = ctx.topics
        return lambda: topics.replicated_high_watermark(meta, plog)
    if ctx.durability.needs_ack_wait(acks, meta.config.write_caching):
        return None
    return False


def _enough_replicas(
    ctx: BrokerContext,
    meta: TopicMeta,
    plog: PartitionLog,
    wait: Callable[[], int | None] | None,
) -> Callable[[], bool] | None:
    """For an acks=all answer waiting on a replicated high watermark of a topic
    with ``min.insync.replicas`` above 1: whether the ISR still has that many
    members (else the answer is NOT_ENOUGH_REPLICAS_AFTER_APPEND); None otherwise."""
    need = meta.config.min_insync_replicas
    if wait is None or need <= 1:
        return None
    topics, name, index = ctx.topics, meta.name, plog.partition
    return lambda: topics.isr_size(name, index) >= need


def _produce(rctx: RequestContext, request: ProduceRequest) -> object:
    ctx = rctx.broker
    metrics = ctx.metrics
    durability = ctx.durability
    acks = request.acks
    by_id = rctx.api_version >= 13
    topics: list[tuple[str, bytes, list[PartitionProduceResponse]]] = []
    pending: list[PendingAck] = []
    now = time.time_ns() // 1_000_000
    for t_idx, topic in enumerate(request.topic_data):
        meta = (
            ctx.topics.find_by_id(topic.topic_id)
            if by_id
            else ctx.topics.find(topic.name)
        )
        parts: list[PartitionProduceResponse] = []
        topics.append((topic.name, topic.topic_id, parts))
        for p in topic.partition_data:
            if acks not in (0, 1, -1):
                parts.append(_partition_error(p.index, ErrorCode.INVALID_REQUIRED_ACKS))
                continue
            if meta is None:
                code = (
                    ErrorCode.UNKNOWN_TOPIC_ID
                    if by_id
                    else ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                )
                parts.append(_partition_error(p.index, code))
                continue
            records = p.records
            if records is None or isinstance(records, tuple) or len(records) == 0:
                parts.append(_partition_error(p.index, ErrorCode.CORRUPT_MESSAGE))
                continue
            if len(records) > MAGIC_OFFSET and records[MAGIC_OFFSET] in (0, 1):
                parts.append(_legacy_in_v3(p.index, rctx.api_version))
                continue
            producers = ctx.producers
            plog: PartitionLog | None = None
            was_failed = False
            try:
                ident = batch_identity(records)
                if ident is not None and not producers.loaded:
                    # No idempotence state to check against: appending would risk a
                    # duplicate, so the client retries (and refreshes metadata).
                    parts.append(
                        _partition_error(p.index, ErrorCode.NOT_LEADER_OR_FOLLOWER)
                    )
                    continue
                plog = ctx.topics.logs.partition(meta.name, p.index)
                state = ctx.topics.state(meta, plog)
                if not state.is_local_leader:
                    parts.append(
                        _partition_error(p.index, ErrorCode.NOT_LEADER_OR_FOLLOWER)
                    )
                    continue
                if (
                    acks == -1
                    and len(state.isr) < meta.config.min_insync_replicas
                    and ctx.topics.cluster is not None
                ):
                    # Kafka's Partition.appendRecordsToLeader: refused before
                    # anything is appended (a single node does not enforce it)
                    parts.append(
                        _partition_error(p.index, ErrorCode.NOT_ENOUGH_REPLICAS)
                    )
                    continue
                was_failed = plog.failed is not None
                if ident is not None:
                    check = producers.check(plog, ident, records)
                    if isinstance(check, Duplicate):
                        # Already in the log: answer with the original offsets.
                        parts.append(
                            PartitionProduceResponse(
                                index=p.index,
                                error_code=ErrorCode.NONE,
                                base_offset=check.base_offset,
                                log_start_offset=plog.log_start_offset,
                            )
                        )
                        wait = _ack_wait(ctx, acks, meta, plog, state)
                        if wait is not False:
                            pending.append(
                                PendingAck(
                                    plog,
                                    check.last_offset + 1,
                                    (t_idx, len(parts) - 1),
                                    wait,
                                    _enough_replicas(ctx, meta, plog, wait),
                                )
                            )
                        continue
                    refused = error_for(check)
                    if refused is not None:
                        parts.append(_refusal(p.index, refused))
                        continue
                result = plog.append(
                    records, leader_epoch=state.leader_epoch, now_ms=now
                )
                if ident is not None:
                    producers.record(plog, ident, result)
            except StorageError as e:
                if plog is not None and plog.failed is not None and not was_failed:
                    log.error(
                        "partition_offline",
                        topic=plog.topic,
                        partition=plog.partition,
                        error=str(e),
                    )
                parts.append(_storage_refusal(p.index, e))
                continue
            durability.after_append(plog, meta.config.write_caching)
            parts.append(
                PartitionProduceResponse(
                    index=p.index,
                    error_code=ErrorCode.NONE,
                    base_offset=result.base_offset,
                    log_append_time_ms=result.log_append_time_ms,
                    log_start_offset=result.log_start_offset,
                )
            )
            wait = _ack_wait(ctx, acks, meta, plog, state)
            if wait is not False:
                pending.append(
                    PendingAck(
                        plog,
                        result.last_offset + 1,
                        (t_idx, len(parts) - 1),
                        wait,
                        _enough_replicas(ctx, meta, plog, wait),
                    )
                )
    for _, _, parts in topics:
        for part in parts:
            if part.error_code:
                metrics.error("produce", ErrorCode(part.error_code).name)
    if acks == 0:
        return NO_RESPONSE
    if not pending:
        return _response(topics)

    def fail(item: PendingAck, code: ErrorCode) -> None:
        t_idx, p_idx = item.key
        parts = topics[t_idx][2]
        parts[p_idx] = _partition_error(parts[p_idx].index, code)

    async def acks_all() -> ProduceResponse:
        await durability.acks_all(pending, request.timeout_ms, fail, error_code)
        return _response(topics)

    return Deferred(acks_all, serial=True)


def _storage_refusal(index: int, exc: StorageError) -> PartitionProduceResponse:
    """A partition refused by storage; v8+ says what is wrong with the batch and,
    for Kafka's per-record rules, which records (KIP-467)."""
    told = isinstance(exc, InvalidBatch | InvalidRecord)
    return PartitionProduceResponse(
        index=index,
        error_code=error_code(exc),
        base_offset=-1,
        record_errors=tuple(
            BatchIndexAndErrorMessage(batch_index=i, batch_index_error_message=m)
            for i, m in exc.record_errors
        )
        if isinstance(exc, InvalidRecord)
        else (),
        error_message=str(exc) if told else None,
    )


def _refusal(index: int, code: ErrorCode) -> PartitionProduceResponse:
    message = (
        "the partition is not part of the producer's ongoing transaction"
        if code == ErrorCode.INVALID_TXN_STATE
        else None
    )
    return PartitionProduceResponse(
        index=index, error_code=code, base_offset=-1, error_message=message
    )


def _legacy_in_v3(index: int, version: int) -> PartitionProduceResponse:
    return PartitionProduceResponse(
        index=index,
        error_code=ErrorCode.INVALID_RECORD,
        base_offset=-1,
        error_message=(
            f"Produce requests with version {version} may only contain record "
            "batches with magic 2"
        ),
    )


def _response(
    topics: list[tuple[str, bytes, list[PartitionProduceResponse]]],
) -> ProduceResponse:
    return ProduceResponse(
        responses=tuple(
            TopicProduceResponse(
                name=name, topic_id=tid, partition_responses=tuple(parts)
            )
            for name, tid, parts in topics
        )
    )
