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

from broker.net.dispatch import handler
from broker.net.request import Deferred, RequestContext
from broker.transactions.markers import LocalMarkers, MarkerBatch, MarkerWrite
from protocol.error_codes import ErrorCode
from protocol.messages.write_txn_markers import (
    WritableTxnMarkerPartitionResult,
    WritableTxnMarkerResult,
    WritableTxnMarkerTopicResult,
    WriteTxnMarkersRequest,
    WriteTxnMarkersResponse,
)


@handler(api_key=27, name="write_txn_markers", min_version=0, max_version=1)
def write_txn_markers(rctx: RequestContext, request: WriteTxnMarkersRequest) -> object:
    ctx = rctx.broker
    local = LocalMarkers(
        ctx.topics, ctx.producers, ctx.durability, ctx.append_gate, ctx.groups
    )
    batch = local.append(
        [
            MarkerWrite(
                topic.name,
                index,
                marker.producer_id,
                marker.producer_epoch,
                marker.transaction_result,
                marker.coordinator_epoch,
            )
            for marker in request.markers
            for topic in marker.topics
            for index in topic.partition_indexes
        ]
    )
    if batch.settled:
        return _response(rctx, request, batch)

    async def settle() -> WriteTxnMarkersResponse:
        await local.settle(batch)
        return _response(rctx, request, batch)

    return Deferred(settle)


def _response(
    rctx: RequestContext, request: WriteTxnMarkersRequest, batch: MarkerBatch
) -> WriteTxnMarkersResponse:
    """The answer, in request order (``batch.codes`` follows it)."""
    codes = iter(batch.codes)
    markers = []
    for marker in request.markers:
        topics = []
        for topic in marker.topics:
            parts = []
            for index in topic.partition_indexes:
                code = next(codes)
                if code != ErrorCode.NONE:
                    rctx.broker.metrics.error("write_txn_markers", code.name)
                parts.append(
                    WritableTxnMarkerPartitionResult(
                        partition_index=index, error_code=code
                    )
                )
            topics.append(
                WritableTxnMarkerTopicResult(name=topic.name, partitions=tuple(parts))
            )
        markers.append(
            WritableTxnMarkerResult(
                producer_id=marker.producer_id, topics=tuple(topics)
            )
        )
    return WriteTxnMarkersResponse(markers=tuple(markers))
