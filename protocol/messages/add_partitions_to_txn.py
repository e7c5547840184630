"""AddPartitionsToTxn (key 24), v0–5.

A transactional producer adds partitions to its ongoing transaction before it
produces to them (KIP-98). Version notes: v1 same as v0; v2 may return
PRODUCER_FENCED (KIP-588); v3 flexible; v4 is the batched broker-to-coordinator form
(KIP-890: one entry per transaction, ``verify_only``), answered by transaction with
a top-level error code; v5 the same (transaction version 2).
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.schema import BOOL, INT16, INT32, INT64, STRING, Array, f, message, struct


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class AddPartitionsToTxnTopic:
    name: str = f(STRING)
    partitions: tuple[int, ...] = f(Array(INT32))


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class AddPartitionsToTxnTransaction:
    transactional_id: str = f(STRING)
    producer_id: int = f(INT64)
    producer_epoch: int = f(INT16)
    verify_only: bool = f(BOOL)
    topics: tuple[AddPartitionsToTxnTopic, ...] = f(Array(AddPartitionsToTxnTopic))


@message(api_key=24, kind="request", valid="0-5", flexible="3+")
@dataclass(frozen=True, slots=True, kw_only=True)
class AddPartitionsToTxnRequest:
    transactions: tuple[AddPartitionsToTxnTransaction, ...] = f(
        Array(AddPartitionsToTxnTransaction), versions="4+"
    )
    v3_and_below_transactional_id: str = f(STRING, versions="0-3")
    v3_and_below_producer_id: int = f(INT64, versions="0-3")
    v3_and_below_producer_epoch: int = f(INT16, versions="0-3")
    v3_and_below_topics: tuple[AddPartitionsToTxnTopic, ...] = f(
        Array(AddPartitionsToTxnTopic), versions="0-3"
    )


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class AddPartitionsToTxnPartitionResult:
    partition_index: int = f(INT32)
    partition_error_code: int = f(INT16)


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class AddPartitionsToTxnTopicResult:
    name: str = f(STRING)
    results_by_partition: tuple[AddPartitionsToTxnPartitionResult, ...] = f(
        Array(AddPartitionsToTxnPartitionResult)
    )


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class AddPartitionsToTxnResult:
    transactional_id: str = f(STRING)
    topic_results: tuple[AddPartitionsToTxnTopicResult, ...] = f(
        Array(AddPartitionsToTxnTopicResult)
    )


@message(api_key=24, kind="response", valid="0-5", flexible="3+")
@dataclass(frozen=True, slots=True, kw_only=True)
class AddPartitionsToTxnResponse:
    throttle_time_ms: int = f(INT32)
    error_code: int = f(INT16, versions="4+")
    results_by_transaction: tuple[AddPartitionsToTxnResult, ...] = f(
        Array(AddPartitionsToTxnResult), versions="4+"
    )
    results_by_topic_v3_and_below: tuple[AddPartitionsToTxnTopicResult, ...] = f(
        Array(AddPartitionsToTxnTopicResult), versions="0-3"
    )
