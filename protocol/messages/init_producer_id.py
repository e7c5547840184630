"""InitProducerId (key 22), v0–6.

Version notes: v1 same as v0; v2 flexible; v3 adds the current producer id/epoch
(KIP-360, bumping the epoch of an existing producer); v4 may return
PRODUCER_FENCED; v5 may return TRANSACTION_ABORTABLE (KIP-890); v6 adds the
two-phase-commit flags and the ongoing transaction's producer id/epoch (KIP-939).
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.schema import BOOL, INT16, INT32, INT64, STRING, Nullable, f, message


@message(api_key=22, kind="request", valid="0-6", flexible="2+")
@dataclass(frozen=True, slots=True, kw_only=True)
class InitProducerIdRequest:
    transactional_id: str | None = f(Nullable(STRING, "0+"))
    transaction_timeout_ms: int = f(INT32)
    producer_id: int = f(INT64, versions="3+", default=-1)
    producer_epoch: int = f(INT16, versions="3+", default=-1)
    enable2_pc: bool = f(BOOL, versions="6+")
    keep_prepared_txn: bool = f(BOOL, versions="6+")


@message(api_key=22, kind="response", valid="0-6", flexible="2+")
@dataclass(frozen=True, slots=True, kw_only=True)
class InitProducerIdResponse:
    throttle_time_ms: int = f(INT32)
    error_code: int = f(INT16)
    producer_id: int = f(INT64, default=-1)
    producer_epoch: int = f(INT16)
    ongoing_txn_producer_id: int = f(INT64, versions="6+", default=-1)
    ongoing_txn_producer_epoch: int = f(INT16, versions="6+", default=-1)
