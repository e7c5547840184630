"""ListTransactions (key 66), v0–1 (KIP-664).

Version notes: flexible from v0; v1 adds ``duration_filter_ms`` (KIP-994: only
transactions open longer than that many milliseconds).
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


@message(api_key=66, kind="request", valid="0-1", flexible="0+")
@dataclass(frozen=True, slots=True, kw_only=True)
class ListTransactionsRequest:
    state_filters: tuple[str, ...] = f(Array(STRING))
    producer_id_filters: tuple[int, ...] = f(Array(INT64))
    duration_filter_ms: int = f(INT64, versions="1+", default=-1)


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class TransactionState:
    transactional_id: str = f(STRING)
    producer_id: int = f(INT64)
    transaction_state: str = f(STRING)


@message(api_key=66, kind="response", valid="0-1", flexible="0+")
@dataclass(frozen=True, slots=True, kw_only=True)
class ListTransactionsResponse:
    throttle_time_ms: int = f(INT32)
    error_code: int = f(INT16)
    unknown_state_filters: tuple[str, ...] = f(Array(STRING))
    transaction_states: tuple[TransactionState, ...] = f(Array(TransactionState))
