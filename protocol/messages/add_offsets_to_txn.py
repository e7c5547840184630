"""AddOffsetsToTxn (key 25), v0–4.

A transactional producer adds a consumer group's offsets to its ongoing transaction
before TxnOffsetCommit (KIP-98). Version notes: v1 same as v0; v2 may return
PRODUCER_FENCED (KIP-588); v3 flexible; v4 may return TRANSACTION_ABORTABLE
(KIP-890).
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.schema import INT16, INT32, INT64, STRING, f, message


@message(api_key=25, kind="request", valid="0-4", flexible="3+")
@dataclass(frozen=True, slots=True, kw_only=True)
class AddOffsetsToTxnRequest:
    transactional_id: str = f(STRING)
    producer_id: int = f(INT64)
    producer_epoch: int = f(INT16)
    group_id: str = f(STRING)


@message(api_key=25, kind="response", valid="0-4", flexible="3+")
@dataclass(frozen=True, slots=True, kw_only=True)
class AddOffsetsToTxnResponse:
    throttle_time_ms: int = f(INT32)
    error_code: int = f(INT16)
