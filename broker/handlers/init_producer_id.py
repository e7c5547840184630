"""InitProducerId (key 22), v0–5.

Behaviour: without a transactional id, always a fresh producer id with epoch 0
(Kafka's rule, also when v3+ passes the current id/epoch to bump it, KIP-360). Ids
are allocated in blocks persisted in the data dir (a worker thread fsyncs a new
block), so they are never reused after a restart.

With a transactional id the transaction coordinator answers
(``broker.transactions``, Kafka's ``TransactionCoordinator.handleInitProducerId``):
a new id gets a fresh producer id with epoch 0; a known one gets its epoch bumped,
which fences the previous producer of that id; an Ongoing transaction of that
producer is aborted first (CONCURRENT_TRANSACTIONS until its markers are written,
the client retries); an exhausted epoch gets a new producer id; v3+ with the
current producer id/epoch is the KIP-360 bump (a retry of an answered bump gets the
same answer, an older epoch PRODUCER_FENCED). ``transaction_timeout_ms`` above
``transaction.max.timeout.ms`` (default 900000) gets INVALID_TRANSACTION_TIMEOUT.
Errors: NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS, CONCURRENT_TRANSACTIONS,
PRODUCER_FENCED (INVALID_PRODUCER_EPOCH before v4, as Kafka maps it),
COORDINATOR_NOT_AVAILABLE (producer service not wired, or the state log
unavailable), KAFKA_STORAGE_ERROR (the id block could not be persisted).
Version notes: v2 flexible; v3 current producer id/epoch; v4 PRODUCER_FENCED; v6
(two-phase commit, KIP-939) is not offered.
"""

from __future__ import annotations

import anyio
import structlog

from broker.net.dispatch import handler
from broker.net.request import Deferred, RequestContext
from broker.transactions.state_machine import fenced_code
from protocol.error_codes import ErrorCode
from protocol.messages.init_producer_id import (
    InitProducerIdRequest,
    InitProducerIdResponse,
)
from storage.errors import StorageError

log = structlog.get_logger("broker.producers")

_FENCED_FROM_VERSION = 4  # KIP-588


def _refused(code: ErrorCode) -> InitProducerIdResponse:
    return InitProducerIdResponse(error_code=code, producer_id=-1, producer_epoch=-1)


@handler(api_key=22, name="init_producer_id", max_version=5)
def init_producer_id(rctx: RequestContext, request: InitProducerIdRequest) -> object:
    txn = request.transactional_id
    if txn:
        return _transactional(rctx, request, txn)
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


def _transactional(
    rctx: RequestContext, request: InitProducerIdRequest, transactional_id: str
) -> object:
    coordinator = rctx.broker.transactions
    limit = coordinator.config.max_timeout_ms
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
        rctx.broker.metrics.error(
            "init_producer_id", ErrorCode.INVALID_TRANSACTION_TIMEOUT.name
        )
        return _refused(ErrorCode.INVALID_TRANSACTION_TIMEOUT)
    expected = None
    if request.producer_id >= 0:
        expected = (request.producer_id, request.producer_epoch)
    version = rctx.api_version
    metrics = rctx.broker.metrics

    async def init() -> InitProducerIdResponse:
        code, pid, epoch = await coordinator.init_producer_id(
            transactional_id, timeout, expected
        )
        if code == ErrorCode.PRODUCER_FENCED:
            code = fenced_code(version, _FENCED_FROM_VERSION)
        if code != ErrorCode.NONE:
            metrics.error("init_producer_id", code.name)
            return _refused(code)
        return InitProducerIdResponse(
            error_code=ErrorCode.NONE, producer_id=pid, producer_epoch=epoch
        )

    return Deferred(init)
