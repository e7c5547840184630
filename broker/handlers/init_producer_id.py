"""InitProducerId (key 22), v0–5.

Behaviour: without a transactional id, always a fresh producer id with epoch 0
(Kafka's rule, also when v3+ passes the current id/epoch to bump it, KIP-360); with
a transactional id, the same producer id with its epoch bumped. Ids are allocated in
blocks persisted in the data dir (a worker thread fsyncs a new block), so they are
never reused after a restart. Transactions themselves are not implemented.
Errors: COORDINATOR_NOT_AVAILABLE (producer service not wired), KAFKA_STORAGE_ERROR
(the id block could not be persisted).
Version notes: v2 flexible; v3 current producer id/epoch; v4 PRODUCER_FENCED; v6
(two-phase commit, KIP-939) is not offered.
"""

from __future__ import annotations

import anyio

from broker.dispatch import Deferred, RequestContext, handler
from broker.groups.access import producer_service
from protocol.error_codes import ErrorCode
from protocol.messages.init_producer_id import (
    InitProducerIdRequest,
    InitProducerIdResponse,
)
from storage.errors import StorageError


@handler(api_key=22, name="init_producer_id", max_version=5)
def init_producer_id(rctx: RequestContext, request: InitProducerIdRequest) -> object:
    svc = producer_service(rctx)
    if svc is None:
        return InitProducerIdResponse(
            error_code=ErrorCode.COORDINATOR_NOT_AVAILABLE,
            producer_id=-1,
            producer_epoch=-1,
        )
    txn = request.transactional_id

    async def allocate() -> InitProducerIdResponse:
        try:
            code, pid, epoch = await anyio.to_thread.run_sync(svc.init_producer_id, txn)
        except StorageError:
            return InitProducerIdResponse(
                error_code=ErrorCode.KAFKA_STORAGE_ERROR,
                producer_id=-1,
                producer_epoch=-1,
            )
        return InitProducerIdResponse(
            error_code=code, producer_id=pid, producer_epoch=epoch
        )

    return Deferred(allocate)
