"""WriteTxnMarkers (key 27), v0–1: a transaction coordinator's COMMIT/ABORT markers.

Behaviour: for each marker and each of its partitions, the partition leader appends
a control batch in Kafka's format (``PartitionLog.append_marker``): the producer's
transaction in that partition closes, an ABORT is added to the segment's
``.txnindex`` and the last stable offset moves on. Like Kafka (``KafkaApis
.handleWriteTxnMarkersRequest``) the markers are written with acks=all: the answer
waits for the fsync (and on a replicated partition for its high watermark).
Per partition: UNKNOWN_TOPIC_OR_PARTITION, NOT_LEADER_OR_FOLLOWER (not the leader,
or a snapshot ingest holds the partition: the coordinator retries),
INVALID_PRODUCER_EPOCH (the marker's producer epoch is older than the producer's
in this partition), TRANSACTION_COORDINATOR_FENCED (its coordinator epoch is older
than the one of the producer's last marker), KAFKA_STORAGE_ERROR,
REQUEST_TIMED_OUT. An inter-broker API: with ACLs enforced it needs CLUSTER_ACTION
on the cluster (here: a super user), else every partition answers
CLUSTER_AUTHORIZATION_FAILED (broker.authz.topics).

In cluster mode the transaction coordinator (broker.transactions) sends this to
each partition's leader; a single node's coordinator writes its markers directly
through the same code (:class:`broker.transactions.markers.LocalMarkers`). A tool or
test may also close the transactions of raw transactional Produce requests with it.

A marker on a ``__consumer_offsets`` partition (cluster mode) also completes the
producer's pending transactional offsets (TxnOffsetCommit) of the groups of that
partition, once the marker is replicated (``GroupService.txn_marker_written``, as
Kafka's ``onTransactionCompleted``): COMMIT makes them what OffsetFetch reads,
ABORT drops them.
Version notes: v1 flexible; v2 (KIP-890 transaction version) is not served.
"""

from __future__ import annotations

import time

from broker.durability.acks import PendingAck
from broker.net.dispatch import handler
from broker.net.request import Deferred, RequestContext
from broker.topics.errors import error_code
from broker.transactions.markers import ACK_TIMEOUT_MS, LocalMarkers
from protocol.error_codes import ErrorCode
from protocol.messages.write_txn_markers import (
    WritableTxnMarker,
    WritableTxnMarkerPartitionResult,
    WritableTxnMarkerResult,
    WritableTxnMarkerTopicResult,
    WriteTxnMarkersRequest,
    WriteTxnMarkersResponse,
)

Results = list[tuple[int, list[tuple[str, list[WritableTxnMarkerPartitionResult]]]]]


@handler(api_key=27, name="write_txn_markers", min_version=0, max_version=1)
def write_txn_markers(rctx: RequestContext, request: WriteTxnMarkersRequest) -> object:
    results: Results = []
    pending: list[PendingAck] = []
    # (marker, topic, partition) position of each pending answer (its ack key)
    slots: list[tuple[int, int, int]] = []
    # markers written to __consumer_offsets: (slot, marker, topic, partition)
    offsets: list[tuple[int, WritableTxnMarker, str, int]] = []
    groups = rctx.broker.groups
    now = time.time_ns() // 1_000_000
    ctx = rctx.broker
    local = LocalMarkers(ctx.topics, ctx.producers, ctx.durability, ctx.append_gate)
    for m_idx, marker in enumerate(request.markers):
        topics: list[tuple[str, list[WritableTxnMarkerPartitionResult]]] = []
        results.append((marker.producer_id, topics))
        for topic in marker.topics:
            parts: list[WritableTxnMarkerPartitionResult] = []
            topics.append((topic.name, parts))
            for index in topic.partition_indexes:
                key = (len(slots), 0)
                slots.append((m_idx, len(topics) - 1, len(parts)))
                code = _write(local, marker, topic.name, index, now, pending, key)
                if code == ErrorCode.NONE and groups.completes_txn_offsets(topic.name):
                    offsets.append((key[0], marker, topic.name, index))
                parts.append(
                    WritableTxnMarkerPartitionResult(
                        partition_index=index, error_code=code
                    )
                )
    for _, topics in results:
        for _, parts in topics:
            for part in parts:
                if part.error_code:
                    rctx.broker.metrics.error(
                        "write_txn_markers", ErrorCode(part.error_code).name
                    )
    if not pending and not offsets:
        return _response(results)

    def result(slot: int) -> WritableTxnMarkerPartitionResult:
        m_idx, t_idx, p_idx = slots[slot]
        return results[m_idx][1][t_idx][1][p_idx]

    def fail(item: PendingAck, code: ErrorCode) -> None:
        m_idx, t_idx, p_idx = slots[item.key[0]]
        parts = results[m_idx][1][t_idx][1]
        parts[p_idx] = WritableTxnMarkerPartitionResult(
            partition_index=parts[p_idx].partition_index, error_code=code
        )

    async def acks_all() -> WriteTxnMarkersResponse:
        if pending:
            await rctx.broker.durability.acks_all(
                pending, ACK_TIMEOUT_MS, fail, error_code
            )
        for slot, marker, name, index in offsets:
            if result(slot).error_code == ErrorCode.NONE:
                await groups.txn_marker_written(
                    name,
                    index,
                    marker.producer_id,
                    marker.producer_epoch,
                    marker.transaction_result,
                )
        return _response(results)

    return Deferred(acks_all)


def _write(
    local: LocalMarkers,
    marker: WritableTxnMarker,
    topic: str,
    index: int,
    now: int,
    pending: list[PendingAck],
    key: tuple[int, int],
) -> ErrorCode:
    """Append one marker to one partition; its error code (NONE: written)."""
    return local.write(
        topic,
        index,
        producer_id=marker.producer_id,
        producer_epoch=marker.producer_epoch,
        commit=marker.transaction_result,
        coordinator_epoch=marker.coordinator_epoch,
        now_ms=now,
        pending=pending,
        key=key,
    )


def _response(results: Results) -> WriteTxnMarkersResponse:
    return WriteTxnMarkersResponse(
        markers=tuple(
            WritableTxnMarkerResult(
                producer_id=pid,
                topics=tuple(
                    WritableTxnMarkerTopicResult(name=name, partitions=tuple(parts))
                    for name, parts in topics
                ),
            )
            for pid, topics in results
        )
    )
