"""EndTxn (key 26), v0–5.

A transactional producer commits or aborts its ongoing transaction (KIP-98).
Version notes: v1 same as v0; v2 may return PRODUCER_FENCED (KIP-588); v3 flexible;
v4 may return TRANSACTION_ABORTABLE (KIP-890); v5 answers the producer id and epoch
(transaction version 2: the epoch is bumped on every transaction).
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.schema import BOOL, INT16, INT32, INT64, STRING, f, message


@message(api_key=26, kind="request", valid="0-5", flexible="3+")
@dataclass(frozen=True, slots=True, kw_only=True)
class EndTxnRequest:
    transactional_id: str = f(STRING)
    producer_id: int = f(INT64)
    producer_epoch: int = f(INT16)
    committed: bool = f(BOOL)


@message(api_key=26, kind="response", valid="0-5", flexible="3+")
@dataclass(frozen=True, slots=True, kw_only=True)
class EndTxnResponse:
    throttle_time_ms: int = f(INT32)
    error_code: int = f(INT16)
    producer_id: int = f(INT64, versions="5+", default=-1)
    producer_epoch: int = f(INT16, versions="5+", default=-1)
