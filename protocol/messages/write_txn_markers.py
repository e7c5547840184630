"""WriteTxnMarkers (key 27), v0–2: the transaction coordinator's COMMIT/ABORT markers.

An inter-broker API (KIP-98): the coordinator asks each partition leader to append
a marker for a producer's transaction. Version notes: v1 flexible (v0 is removed in
Kafka 4, KIP-896); v2 adds the marker's transaction version (KIP-890 part 2).
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.schema import (
    BOOL,
    INT8,
    INT16,
    INT32,
    INT64,
    STRING,
    Array,
    f,
    message,
    struct,
)


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class WritableTxnMarkerTopic:
    name: str = f(STRING)
    partition_indexes: tuple[int, ...] = f(Array(INT32))


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class WritableTxnMarker:
    producer_id: int = f(INT64)
    producer_epoch: int = f(INT16)
    transaction_result: bool = f(BOOL)
    topics: tuple[WritableTxnMarkerTopic, ...] = f(Array(WritableTxnMarkerTopic))
    coordinator_epoch: int = f(INT32)
    transaction_version: int = f(INT8, versions="2+")


@message(api_key=27, kind="request", valid="0-2", flexible="1+")
@dataclass(frozen=True, slots=True, kw_only=True)
class WriteTxnMarkersRequest:
    markers: tuple[WritableTxnMarker, ...] = f(Array(WritableTxnMarker))


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class WritableTxnMarkerPartitionResult:
    partition_index: int = f(INT32)
    error_code: int = f(INT16)


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class WritableTxnMarkerTopicResult:
    name: str = f(STRING)
    partitions: tuple[WritableTxnMarkerPartitionResult, ...] = f(
        Array(WritableTxnMarkerPartitionResult)
    )


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class WritableTxnMarkerResult:
    producer_id: int = f(INT64)
    topics: tuple[WritableTxnMarkerTopicResult, ...] = f(
        Array(WritableTxnMarkerTopicResult)
    )


@message(api_key=27, kind="response", valid="0-2", flexible="1+")
@dataclass(frozen=True, slots=True, kw_only=True)
class WriteTxnMarkersResponse:
    markers: tuple[WritableTxnMarkerResult, ...] = f(Array(WritableTxnMarkerResult))
