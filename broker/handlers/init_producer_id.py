"""InitProducerId (key 22), v0–5.

Behaviour: without a transactional id, always a fresh producer id with epoch 0
(Kafka's rule, also when v3+ passes the current id/epoch to bump it, KIP-360). Ids
are allocated in blocks persisted in the data dir (a worker thread fsyncs a new
block), so they are never reused after a restart. Transactions are not supported:
a request with a transactional id is refused at once so that a transactional
producer fails fast instead of stalling until its own timeout — first, as Kafka's
``TransactionCoordinator.handleInitProducerId`` does, a ``transaction_timeout_ms``
above the broker's ``transaction.max.timeout.ms`` (default 900000) gets
INVALID_TRANSACTION_TIMEOUT; otherwise TRANSACTIONAL_ID_AUTHORIZATION_FAILED, the
one refusal librdkafka, kafka-python and kafkajs all treat as fatal at once
(UNSUPPORTED_VERSION, INVALID_TXN_STATE and the like make librdkafka retry until
its timeout), and the broker logs ``transactions_not_supported`` saying why.
Errors: COORDINATOR_NOT_AVAILABLE (producer service not wired), KAFKA_STORAGE_ERROR
(the id block could not be persisted).
Version notes: v2 flexible; v3 current producer id/epoch; v4 PRODUCER_FENCED; v6
(two-phase commit, KIP-939) is not offered.
"""

from __future__ import annotations

import anyio
import structlog

from broker.net.dispatch import handler
from broker.net.request import Deferred, RequestContext
from protocol.error_codes import ErrorCode
from protocol.messages.init_producer_id import (
    InitProducerIdRequest,
    InitProducerIdResponse,
)
from storage.errors import StorageError

log = structlog.get_logger("broker.producers")


def _refused(code: ErrorCode) -> InitProducerIdResponse:
    return InitProducerIdResponse(error_code=code, producer_id=-1, producer_epoch=-1)


@handler(api_key=22, name="init_producer_id", max_version=5)
def init_producer_id(rctx: RequestContext, request: InitProducerIdRequest) -> object:
    txn = request.transactional_id
    if txn:
        return _refuse_transactional(rctx, request, txn)
    svc = rctx.broker.producers
    if not svc.loaded:
        return _refused(ErrorCode.COORDINATOR_NOT_AVAILABLE)

    async def allocate() -> InitProducerIdResponse:
        try:
            code, pid, epoch = await anyio.to_thread.run_sync(svc.init_producer_id)
        except StorageError:
            return _refused(ErrorCode.KAFKA_STORAGE_ERROR)
        return InitProducerIdResponse(
            error_code=code, producer_id=pid, producer_epoch=epoch
        )

    return Deferred(allocate)


def _refuse_transactional(
    rctx: RequestContext, request: InitProducerIdRequest, transactional_id: str
) -> InitProducerIdResponse:
    limit = rctx.broker.config.transaction_max_timeout_ms
    timeout = request.transaction_timeout_ms
    if not 0 < timeout <= limit:
        log.warning(
            "transaction_timeout_refused",
            transactional_id=transactional_id,
            transaction_timeout_ms=timeout,
            transaction_max_timeout_ms=limit,
            client_id=rctx.header.client_id,
            peer=rctx.peer,
        )
        code = ErrorCode.INVALID_TRANSACTION_TIMEOUT
    else:
        log.warning(
            "transactions_not_supported",
            transactional_id=transactional_id,
            client_id=rctx.header.client_id,
            peer=rctx.peer,
            detail="this broker does not implement transactions; use an "
            "idempotent producer without transactional.id",
        )
        code = ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    rctx.broker.metrics.error("init_producer_id", code.name)
    return _refused(code)
