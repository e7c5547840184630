"""AddOffsetsToTxn (key 25), v0–3.

Behaviour: the transaction coordinator (``broker.transactions``) adds the consumer
group to the producer's transaction, so that the offsets it then commits with
TxnOffsetCommit become committed (or are dropped) when the transaction ends; the
answer waits until the new state is durable in ``__transaction_state``. A single
node's coordinator completes the group's offsets itself
(``GroupService.complete_txn_offsets``); in a cluster the group's
``__consumer_offsets`` partition joins the transaction's partitions, as in Kafka,
and its marker completes them at the group's coordinator (no offsets topic yet:
COORDINATOR_NOT_AVAILABLE, which clients retry). Errors as
AddPartitionsToTxn: NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS,
INVALID_PRODUCER_ID_MAPPING, PRODUCER_FENCED (INVALID_PRODUCER_EPOCH before v2),
CONCURRENT_TRANSACTIONS. With ACLs enforced it needs WRITE on the transactional id
and READ on the group (broker.authz.groups).
Version notes: v1 same as v0; v2 PRODUCER_FENCED; v3 flexible; v4 (KIP-890's
TRANSACTION_ABORTABLE) is not offered.
"""

from __future__ import annotations

from broker.net.dispatch import handler
from broker.net.request import Deferred, RequestContext
from broker.transactions.state_machine import fenced_code
from protocol.error_codes import ErrorCode
from protocol.messages.add_offsets_to_txn import (
    AddOffsetsToTxnRequest,
    AddOffsetsToTxnResponse,
)

_FENCED_FROM_VERSION = 2  # KIP-588


@handler(api_key=25, name="add_offsets_to_txn", max_version=3)
def add_offsets_to_txn(rctx: RequestContext, request: AddOffsetsToTxnRequest) -> object:
    coordinator = rctx.broker.transactions
    version = rctx.api_version
    metrics = rctx.broker.metrics

    async def add() -> AddOffsetsToTxnResponse:
        code = await coordinator.add_offsets(
            request.transactional_id,
            request.producer_id,
            request.producer_epoch,
            request.group_id,
        )
        if code == ErrorCode.PRODUCER_FENCED:
            code = fenced_code(version, _FENCED_FROM_VERSION)
        if code != ErrorCode.NONE:
            metrics.error("add_offsets_to_txn", code.name)
        return AddOffsetsToTxnResponse(error_code=code)

    return Deferred(add)
