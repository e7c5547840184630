"""DescribeTransactions (key 65), v0 (KIP-664).

Version notes: flexible from v0.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.schema import (
    INT16,
    INT32,
    INT64,
    STRING,
    Array,
    f,
    message,
    struct,
)


@message(api_key=65, kind="request", valid="0", flexible="0+")
@dataclass(frozen=True, slots=True, kw_only=True)
class DescribeTransactionsRequest:
    transactional_ids: tuple[str, ...] = f(Array(STRING))


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class TopicData:
    topic: str = f(STRING)
    partitions: tuple[int, ...] = f(Array(INT32))


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class TransactionState:
    error_code: int = f(INT16)
    transactional_id: str = f(STRING)
    transaction_state: str = f(STRING)
    transaction_timeout_ms: int = f(INT32)
    transaction_start_time_ms: int = f(INT64)
    producer_id: int = f(INT64)
    producer_epoch: int = f(INT16)
    topics: tuple[TopicData, ...] = f(Array(TopicData))


@message(api_key=65, kind="response", valid="0", flexible="0+")
@dataclass(frozen=True, slots=True, kw_only=True)
class DescribeTransactionsResponse:
    throttle_time_ms: int = f(INT32)
    transaction_states: tuple[TransactionState, ...] = f(Array(TransactionState))
