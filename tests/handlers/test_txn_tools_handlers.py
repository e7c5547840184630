"""DescribeTransactions and ListTransactions handlers against a coordinator that
does not own the ids, or has no state log: Kafka's per-id errors, and the
ListTransactions filters that match nothing (unknown states, producer ids)."""

from __future__ import annotations

from types import SimpleNamespace

import anyio

from broker.handlers.describe_transactions import describe_transactions
from broker.handlers.list_transactions import list_transactions
from broker.metrics import Metrics
from broker.net.request import Deferred
from broker.transactions.coordinator import TransactionCoordinator
from protocol.error_codes import ErrorCode
from protocol.messages import describe_transactions as dt
from protocol.messages import list_transactions as lt


def _rctx(*, coordinates: bool) -> SimpleNamespace:
    txns = TransactionCoordinator(coordinates=lambda _: coordinates)
    return SimpleNamespace(
        broker=SimpleNamespace(transactions=txns, metrics=Metrics()), api_version=0
    )


def test_another_coordinators_id_is_not_coordinator() -> None:
    """An id this broker does not coordinate answers NOT_COORDINATOR at once."""
    rctx = _rctx(coordinates=False)
    resp = describe_transactions(
        rctx,  # type: ignore[arg-type]
        dt.DescribeTransactionsRequest(transactional_ids=("a", "b")),
    )
    assert isinstance(resp, dt.DescribeTransactionsResponse)
    assert [(s.transactional_id, s.error_code) for s in resp.transaction_states] == [
        ("a", ErrorCode.NOT_COORDINATOR),
        ("b", ErrorCode.NOT_COORDINATOR),
    ]
    assert resp.transaction_states[0].transaction_state == ""
    assert rctx.broker.metrics.errors[("describe_transactions", "NOT_COORDINATOR")] == 2


def test_unknown_id_asks_the_coordinator_why() -> None:
    """An id the coordinator does not know is answered after its readiness check
    (here: no state log, COORDINATOR_NOT_AVAILABLE)."""
    result = describe_transactions(
        _rctx(coordinates=True),  # type: ignore[arg-type]
        dt.DescribeTransactionsRequest(transactional_ids=("a",)),
    )
    assert isinstance(result, Deferred)
    resp = anyio.run(result.run)
    assert isinstance(resp, dt.DescribeTransactionsResponse)
    assert [s.error_code for s in resp.transaction_states] == [
        ErrorCode.COORDINATOR_NOT_AVAILABLE
    ]


def test_list_with_only_unknown_states_echoes_them_and_lists_nothing() -> None:
    """Unknown state names come back in unknown_state_filters (Kafka's names are
    case-sensitive) and match nothing."""
    resp = list_transactions(
        _rctx(coordinates=True),  # type: ignore[arg-type]
        lt.ListTransactionsRequest(state_filters=("ongoing", "Bogus")),
    )
    assert resp.error_code == ErrorCode.NONE
    assert resp.unknown_state_filters == ("ongoing", "Bogus")
    assert resp.transaction_states == ()
