"""EndTxn (key 26), v0–3.

Behaviour: the transaction coordinator (``broker.transactions``) moves the
producer's Ongoing transaction to PrepareCommit or PrepareAbort and answers once
that is durable in ``__transaction_state``; then, in the background, it writes the
COMMIT/ABORT markers to every partition of the transaction, completes the
transaction's group offsets and writes CompleteCommit/CompleteAbort. Until then a
new AddPartitionsToTxn/EndTxn of the producer answers CONCURRENT_TRANSACTIONS (the
client retries). As in Kafka, a retried EndTxn of a completed transaction answers
NONE, the opposite result INVALID_TXN_STATE; ending no transaction is
INVALID_TXN_STATE. Other errors: NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS,
INVALID_PRODUCER_ID_MAPPING, PRODUCER_FENCED (INVALID_PRODUCER_EPOCH before v2).
With ACLs enforced it needs WRITE on the transactional id.
Version notes: v1 same as v0; v2 PRODUCER_FENCED; v3 flexible; v4 (KIP-890's
TRANSACTION_ABORTABLE) and v5 (transaction version 2) are not offered.
"""

from __future__ import annotations

from broker.net.dispatch import handler
from broker.net.request import Deferred, RequestContext
from broker.transactions.state_machine import fenced_code
from protocol.error_codes import ErrorCode
from protocol.messages.end_txn import EndTxnRequest, EndTxnResponse

_FENCED_FROM_VERSION = 2  # KIP-588


@handler(api_key=26, name="end_txn", max_version=3)
def end_txn(rctx: RequestContext, request: EndTxnRequest) -> object:
    coordinator = rctx.broker.transactions
    version = rctx.api_version
    metrics = rctx.broker.metrics

    async def end() -> EndTxnResponse:
        code = await coordinator.end_txn(
            request.transactional_id,
            request.producer_id,
            request.producer_epoch,
            request.committed,
        )
        if code == ErrorCode.PRODUCER_FENCED:
            code = fenced_code(version, _FENCED_FROM_VERSION)
        if code != ErrorCode.NONE:
            metrics.error("end_txn", code.name)
        return EndTxnResponse(error_code=code)

    return Deferred(end)
