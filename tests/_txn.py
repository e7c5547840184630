"""Raw Kafka requests for transaction tests: transactional batches, markers, offsets.

There is no transaction coordinator yet, so tests act as one: they take a producer
id with InitProducerId (no transactional id), produce transactional batches built
with ``protocol.record_builder`` and close transactions with WriteTxnMarkers.
"""

from __future__ import annotations

import socket

from protocol.error_codes import ErrorCode
from protocol.messages.fetch import (
    FetchPartition,
    FetchRequest,
    FetchResponse,
    FetchTopic,
    PartitionData,
)
from protocol.messages.init_producer_id import (
    InitProducerIdRequest,
    InitProducerIdResponse,
)
from protocol.messages.list_offsets import (
    ListOffsetsPartition,
    ListOffsetsRequest,
    ListOffsetsResponse,
    ListOffsetsTopic,
)
from protocol.messages.produce import (
    PartitionProduceData,
    ProduceRequest,
    ProduceResponse,
    TopicProduceData,
)
from protocol.messages.write_txn_markers import (
    WritableTxnMarker,
    WritableTxnMarkerTopic,
    WriteTxnMarkersRequest,
    WriteTxnMarkersResponse,
)
from protocol.record_builder import RecordInput, build_batch
from tests._broker import request


def producer_id(sock: socket.socket) -> int:
    """A fresh producer id (epoch 0) from InitProducerId."""
    resp = request(
        sock,
        22,
        4,
        InitProducerIdRequest(transactional_id=None, transaction_timeout_ms=60000),
    )
    assert isinstance(resp, InitProducerIdResponse)
    assert resp.error_code == 0
    assert resp.producer_epoch == 0
    return resp.producer_id


def plain(value: bytes) -> bytes:
    """A plain one-record batch."""
    return build_batch([RecordInput(key=None, value=value)])


def txn(pid: int, seq: int, *values: bytes) -> bytes:
    """A transactional batch of ``pid`` (epoch 0) starting at sequence ``seq``."""
    return build_batch(
        [RecordInput(key=None, value=v) for v in values],
        producer_id=pid,
        producer_epoch=0,
        base_sequence=seq,
        is_transactional=True,
    )


def produce(sock: socket.socket, topic: str, records: bytes) -> int:
    """Produce v9 acks=all to partition 0; the base offset (asserts no error)."""
    resp = request(
        sock,
        0,
        9,
        ProduceRequest(
            acks=-1,
            timeout_ms=10000,
            topic_data=(
                TopicProduceData(
                    name=topic,
                    partition_data=(PartitionProduceData(index=0, records=records),),
                ),
            ),
        ),
    )
    assert isinstance(resp, ProduceResponse)
    part = resp.responses[0].partition_responses[0]
    assert part.error_code == ErrorCode.NONE, part
    return part.base_offset


def markers(
    sock: socket.socket, topic: str, *marks: tuple[int, bool, int]
) -> list[int]:
    """WriteTxnMarkers v1 for partition 0, one marker per (producer id, commit,
    coordinator epoch); each marker's error code."""
    resp = request(
        sock,
        27,
        1,
        WriteTxnMarkersRequest(
            markers=tuple(
                WritableTxnMarker(
                    producer_id=pid,
                    producer_epoch=0,
                    transaction_result=commit,
                    topics=(
                        WritableTxnMarkerTopic(name=topic, partition_indexes=(0,)),
                    ),
                    coordinator_epoch=coordinator_epoch,
                )
                for pid, commit, coordinator_epoch in marks
            )
        ),
    )
    assert isinstance(resp, WriteTxnMarkersResponse)
    assert [m.producer_id for m in resp.markers] == [m[0] for m in marks]
    return [m.topics[0].partitions[0].error_code for m in resp.markers]


def latest(sock: socket.socket, topic: str, isolation_level: int) -> int:
    """ListOffsets v7 latest (-1) of partition 0 at ``isolation_level``."""
    resp = request(
        sock,
        2,
        7,
        ListOffsetsRequest(
            replica_id=-1,
            isolation_level=isolation_level,
            topics=(
                ListOffsetsTopic(
                    name=topic,
                    partitions=(ListOffsetsPartition(partition_index=0, timestamp=-1),),
                ),
            ),
        ),
    )
    assert isinstance(resp, ListOffsetsResponse)
    part = resp.topics[0].partitions[0]
    assert part.error_code == ErrorCode.NONE, part
    return part.offset


def fetch(sock: socket.socket, topic: str, isolation_level: int) -> PartitionData:
    """Fetch v11 of partition 0 from offset 0 at ``isolation_level`` (no wait)."""
    resp = request(
        sock,
        1,
        11,
        FetchRequest(
            max_wait_ms=0,
            min_bytes=0,
            isolation_level=isolation_level,
            topics=(
                FetchTopic(
                    topic=topic,
                    partitions=(
                        FetchPartition(
                            partition=0, fetch_offset=0, partition_max_bytes=1 << 20
                        ),
                    ),
                ),
            ),
        ),
    )
    assert isinstance(resp, FetchResponse)
    return resp.responses[0].partitions[0]
