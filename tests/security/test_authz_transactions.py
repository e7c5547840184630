"""The transaction APIs' authorisation: WRITE on the transactional id first."""

from __future__ import annotations

import pytest

from broker.security.service import SecurityService
from protocol.error_codes import ErrorCode
from protocol.messages import add_offsets_to_txn as aot
from protocol.messages import add_partitions_to_txn as apt
from protocol.messages import end_txn as et
from protocol.messages import init_producer_id as ip
from tests.security.test_authz_hook import authorize, rctx, svc

__all__ = ["svc"]  # the fixture, shared with the hook's tests

DENIED = ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED


def _add_partitions() -> apt.AddPartitionsToTxnRequest:
    return apt.AddPartitionsToTxnRequest(
        v3_and_below_transactional_id="tx",
        v3_and_below_producer_id=1,
        v3_and_below_producer_epoch=0,
        v3_and_below_topics=(
            apt.AddPartitionsToTxnTopic(name="orders", partitions=(0, 1)),
        ),
    )


def test_without_write_on_the_transactional_id_everything_is_refused(
    svc: SecurityService,
) -> None:
    """A principal without WRITE on the transactional id gets
    TRANSACTIONAL_ID_AUTHORIZATION_FAILED from every transaction API, and the
    handler is never called."""

    def handler(req: object) -> object:
        pytest.fail("handler called")

    resp = authorize(rctx(svc, "alice", 24, 3), _add_partitions(), handler)
    assert isinstance(resp, apt.AddPartitionsToTxnResponse)
    assert {
        r.partition_error_code
        for t in resp.results_by_topic_v3_and_below
        for r in t.results_by_partition
    } == {DENIED}
    offsets = aot.AddOffsetsToTxnRequest(
        transactional_id="tx", producer_id=1, producer_epoch=0, group_id="app"
    )
    assert authorize(rctx(svc, "alice", 25, 3), offsets, handler) == (
        aot.AddOffsetsToTxnResponse(error_code=DENIED)
    )
    end = et.EndTxnRequest(
        transactional_id="tx", producer_id=1, producer_epoch=0, committed=True
    )
    assert authorize(rctx(svc, "alice", 26, 3), end, handler) == et.EndTxnResponse(
        error_code=DENIED
    )
    init = ip.InitProducerIdRequest(transactional_id="tx", transaction_timeout_ms=1)
    resp = authorize(rctx(svc, "alice", 22, 4), init, handler)
    assert isinstance(resp, ip.InitProducerIdResponse)
    assert resp.error_code == DENIED


def test_super_user_reaches_the_handlers(svc: SecurityService) -> None:
    """A super user's transaction requests reach the handlers unchanged."""
    seen: list[object] = []

    def handler(req: object) -> object:
        seen.append(req)
        return et.EndTxnResponse(error_code=0)

    end = et.EndTxnRequest(
        transactional_id="tx", producer_id=1, producer_epoch=0, committed=True
    )
    authorize(rctx(svc, "root", 26, 3), end, handler)
    authorize(rctx(svc, "root", 24, 3), _add_partitions(), handler)
    assert seen == [end, _add_partitions()]
