"""Transaction markers sent to each partition's leader (cluster mode).

Kafka's ``TransactionMarkerChannelManager``: the coordinator groups a transaction's
partitions by their current leader (the watched cache), writes the markers of the
partitions this broker leads itself (:class:`LocalMarkers`) and sends one
WriteTxnMarkers request to every other leader, over a connection kept per broker
(plain TCP on the listener named like this broker's first, as the replica
fetchers). A partition whose leader is unknown, unreachable or answers an error is
reported with that error (NOT_LEADER_OR_FOLLOWER for connection failures); the
coordinator retries those with the cache as it is then.
"""

from __future__ import annotations

from collections.abc import Iterable

import anyio
import structlog

from broker.cluster.cache import MetadataCache
from broker.cluster.model import NO_LEADER
from broker.replication.leader_client import LeaderConnection, LeaderConnectionError
from broker.transactions.markers import LocalMarkers
from broker.transactions.model import TopicPartition
from protocol.error_codes import ErrorCode
from protocol.messages.write_txn_markers import (
    WritableTxnMarker,
    WritableTxnMarkerTopic,
    WriteTxnMarkersRequest,
    WriteTxnMarkersResponse,
)

log = structlog.get_logger("broker.transactions")

_WRITE_TXN_MARKERS = 27
_TIMEOUT_S = 30.0


class ClusterMarkers:
    """Writes markers locally or through WriteTxnMarkers to remote leaders."""

    def __init__(
        self, cache: MetadataCache, local: LocalMarkers, listener: str
    ) -> None:
        self.cache = cache
        self.local = local
        self.listener = listener
        self._conns: dict[int, LeaderConnection] = {}
        # one exchange at a time per connection (completions run concurrently)
        self._locks: dict[int, anyio.Lock] = {}

    async def write_all(
        self,
        partitions: Iterable[TopicPartition],
        *,
        producer_id: int,
        producer_epoch: int,
        commit: bool,
        coordinator_epoch: int,
    ) -> dict[TopicPartition, ErrorCode]:
        """Each partition's marker answer (NONE: written)."""
        by_leader: dict[int, list[TopicPartition]] = {}
        codes: dict[TopicPartition, ErrorCode] = {}
        for topic, index in partitions:
            record = self.cache.partition(topic, index)
            if record is None:
                known = self.cache.topic(topic) is not None
                codes[(topic, index)] = (
                    ErrorCode.NOT_LEADER_OR_FOLLOWER
                    if known
                    else ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                )
                continue
            by_leader.setdefault(record.leader, []).append((topic, index))
        for leader, parts in by_leader.items():
            if leader == self.cache.node_id:
                codes.update(
                    await self.local.write_all(
                        parts,
                        producer_id=producer_id,
                        producer_epoch=producer_epoch,
                        commit=commit,
                        coordinator_epoch=coordinator_epoch,
                    )
                )
            elif leader == NO_LEADER:
                codes.update(dict.fromkeys(parts, ErrorCode.NOT_LEADER_OR_FOLLOWER))
            else:
                codes.update(
                    await self._send(
                        leader,
                        parts,
                        WritableTxnMarker(
                            producer_id=producer_id,
                            producer_epoch=producer_epoch,
                            transaction_result=commit,
                            topics=_topics(parts),
                            coordinator_epoch=coordinator_epoch,
                        ),
                    )
                )
        return codes

    async def _send(
        self, leader: int, parts: list[TopicPartition], marker: WritableTxnMarker
    ) -> dict[TopicPartition, ErrorCode]:
        failed = dict.fromkeys(parts, ErrorCode.NOT_LEADER_OR_FOLLOWER)
        lock = self._locks.setdefault(leader, anyio.Lock())
        async with lock:
            return await self._exchange(leader, parts, marker, failed)

    async def _exchange(
        self,
        leader: int,
        parts: list[TopicPartition],
        marker: WritableTxnMarker,
        failed: dict[TopicPartition, ErrorCode],
    ) -> dict[TopicPartition, ErrorCode]:
        try:
            conn = await self._connection(leader)
            if conn is None:
                return failed
            version = conn.version(_WRITE_TXN_MARKERS)
            if version is None:
                return failed
            response = await conn.request(
                WriteTxnMarkersRequest(markers=(marker,)),
                WriteTxnMarkersResponse,
                version=min(version, 1),
            )
        except LeaderConnectionError as e:
            log.info("txn_markers_send_failed", leader=leader, error=str(e))
            stale = self._conns.pop(leader, None)
            if stale is not None:
                await stale.aclose()
            return failed
        codes: dict[TopicPartition, ErrorCode] = {}
        for result in response.markers:
            for topic in result.topics:
                for p in topic.partitions:
                    codes[(topic.name, p.partition_index)] = ErrorCode(p.error_code)
        return {tp: codes.get(tp, ErrorCode.NOT_LEADER_OR_FOLLOWER) for tp in parts}

    async def _connection(self, leader: int) -> LeaderConnection | None:
        conn = self._conns.get(leader)
        if conn is not None and not conn.closed:
            return conn
        broker = self.cache.broker(leader)
        endpoint = None if broker is None else broker.endpoint(self.listener)
        if endpoint is None:
            return None
        conn = await LeaderConnection.connect(
            endpoint.host,
            endpoint.port,
            client_id=f"txn-coordinator-{self.cache.node_id}",
            timeout_s=_TIMEOUT_S,
        )
        self._conns[leader] = conn
        return conn

    async def aclose(self) -> None:
        """Close every connection."""
        for conn in self._conns.values():
            await conn.aclose()
        self._conns.clear()


def _topics(parts: list[TopicPartition]) -> tuple[WritableTxnMarkerTopic, ...]:
    by_topic: dict[str, list[int]] = {}
    for topic, index in parts:
        by_topic.setdefault(topic, []).append(index)
    return tuple(
        WritableTxnMarkerTopic(name=t, partition_indexes=tuple(ids))
        for t, ids in by_topic.items()
    )
