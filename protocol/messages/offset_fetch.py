"""OffsetFetch (key 9), v0–10.

Version notes: v0 reads ZooKeeper-era offsets; v1 same fields; v2 topics may be null (all
topics) and the response adds a top-level error_code; v3 response adds throttle_time_ms;
v4 same as v3; v5 response adds committed_leader_epoch; v6 flexible; v7 adds
require_stable; v8 asks for several groups at once: groups replaces group_id and topics
on both sides; v9 adds member_id and member_epoch (KIP-848); v10 topic_id replaces the
topic name.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.schema import (
    BOOL,
    INT16,
    INT32,
    INT64,
    STRING,
    UUID,
    Array,
    Nullable,
    f,
    message,
    struct,
)


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class OffsetFetchRequestTopic:
    name: str = f(STRING, versions="0-7")
    partition_indexes: tuple[int, ...] = f(Array(INT32), versions="0-7")


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class OffsetFetchRequestTopics:
    name: str = f(STRING, versions="8-9")
    topic_id: bytes = f(UUID, versions="10+")
    partition_indexes: tuple[int, ...] = f(Array(INT32), versions="8+")


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class OffsetFetchRequestGroup:
    group_id: str = f(STRING, versions="8+")
    member_id: str | None = f(Nullable(STRING, "9+"), versions="9+")
    member_epoch: int = f(INT32, versions="9+", default=-1)
    topics: tuple[OffsetFetchRequestTopics, ...] | None = f(
        Nullable(Array(OffsetFetchRequestTopics), "8+"), versions="8+"
    )


@message(api_key=9, kind="request", valid="0-10", flexible="6+")
@dataclass(frozen=True, slots=True, kw_only=True)
class OffsetFetchRequest:
    group_id: str = f(STRING, versions="0-7")
    topics: tuple[OffsetFetchRequestTopic, ...] | None = f(
        Nullable(Array(OffsetFetchRequestTopic), "2-7"), versions="0-7"
    )
    groups: tuple[OffsetFetchRequestGroup, ...] = f(
        Array(OffsetFetchRequestGroup), versions="8+"
    )
    require_stable: bool = f(BOOL, versions="7+")


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class OffsetFetchResponsePartition:
    partition_index: int = f(INT32, versions="0-7")
    committed_offset: int = f(INT64, versions="0-7")
    committed_leader_epoch: int = f(INT32, versions="5-7", default=-1)
    metadata: str | None = f(Nullable(STRING, "0-7"), versions="0-7")
    error_code: int = f(INT16, versions="0-7")


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class OffsetFetchResponseTopic:
    name: str = f(STRING, versions="0-7")
    partitions: tuple[OffsetFetchResponsePartition, ...] = f(
        Array(OffsetFetchResponsePartition), versions="0-7"
    )


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class OffsetFetchResponsePartitions:
    partition_index: int = f(INT32, versions="8+")
    committed_offset: int = f(INT64, versions="8+")
    committed_leader_epoch: int = f(INT32, versions="8+", default=-1)
    metadata: str | None = f(Nullable(STRING, "8+"), versions="8+")
    error_code: int = f(INT16, versions="8+")


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class OffsetFetchResponseTopics:
    name: str = f(STRING, versions="8-9")
    topic_id: bytes = f(UUID, versions="10+")
    partitions: tuple[OffsetFetchResponsePartitions, ...] = f(
        Array(OffsetFetchResponsePartitions), versions="8+"
    )


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class OffsetFetchResponseGroup:
    group_id: str = f(STRING, versions="8+")
    topics: tuple[OffsetFetchResponseTopics, ...] = f(
        Array(OffsetFetchResponseTopics), versions="8+"
    )
    error_code: int = f(INT16, versions="8+")


@message(api_key=9, kind="response", valid="0-10", flexible="6+")
@dataclass(frozen=True, slots=True, kw_only=True)
class OffsetFetchResponse:
    throttle_time_ms: int = f(INT32, versions="3+")
    topics: tuple[OffsetFetchResponseTopic, ...] = f(
        Array(OffsetFetchResponseTopic), versions="0-7"
    )
    error_code: int = f(INT16, versions="2-7")
    groups: tuple[OffsetFetchResponseGroup, ...] = f(
        Array(OffsetFetchResponseGroup), versions="8+"
    )
