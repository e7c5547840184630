"""Admin routes for transactions, and the transaction lines of ``GET /metrics``.

    GET /v1/transactions          the transactional ids this broker coordinates:
                                  state, producer id and epoch, timeout, how long
                                  the current transaction has been open, whether
                                  it is stuck; filters ``?state=Ongoing`` (Kafka's
                                  names, repeatable), ``?producer_id=N``
                                  (repeatable), ``?min_duration_ms=D`` (open
                                  longer than D ms)
    GET /v1/transactions/{id}     one id, with its partitions and groups (404 with
                                  the coordinator's node id when another broker
                                  coordinates it)

A transaction is *stuck* when it has been open longer than its timeout: the
coordinator aborts an expired Ongoing transaction, so one still open past its
timeout (markers that cannot be written, a coordinator that cannot write its log)
needs an operator. ``GET /v1/cluster`` lists them as a warning
(:func:`stuck_transactions`), and ``ailurus cluster health`` does the same over the
Kafka protocol. Like every non-public admin route these need the admin token when
one is set.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import unquote

from broker.admin.server import AdminView, HttpRequest, HttpResponse, RouteTable
from broker.context import BrokerContext
from broker.metrics import transaction_metric_lines
from broker.transactions.model import TransactionMetadata, TxnState

# The states of a transaction that has begun and not completed (Kafka's
# TransactionState: Ongoing until EndTxn, Prepare* while markers are written).
OPEN_STATES = (
    TxnState.ONGOING,
    TxnState.PREPARE_COMMIT,
    TxnState.PREPARE_ABORT,
    TxnState.PREPARE_EPOCH_FENCE,
)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def is_stuck(meta: TransactionMetadata, now_ms: int) -> bool:
    """Open for longer than its timeout."""
    return (
        meta.state in OPEN_STATES
        and meta.start_ms >= 0
        and now_ms - meta.start_ms > meta.timeout_ms
    )


def transaction_json(meta: TransactionMetadata, now_ms: int) -> dict[str, object]:
    """One transactional id as the admin API shows it."""
    return {
        "transactional_id": meta.transactional_id,
        "state": meta.state.kafka_name,
        "producer_id": meta.producer_id,
        "producer_epoch": meta.producer_epoch,
        "timeout_ms": meta.timeout_ms,
        "start_ms": meta.start_ms,
        "duration_ms": meta.duration_ms(now_ms),
        "stuck": is_stuck(meta, now_ms),
        "partitions": [
            {"topic": topic, "partition": partition}
            for topic, partition in sorted(meta.partitions)
        ],
        "groups": sorted(meta.groups),
    }


def stuck_transactions(ctx: BrokerContext, now_ms: int | None = None) -> list[str]:
    """The transactional ids this broker coordinates whose transaction has been
    open longer than its timeout, sorted."""
    now = _now_ms() if now_ms is None else now_ms
    return sorted(
        meta.transactional_id
        for meta in ctx.transactions.list_transactions(OPEN_STATES, now_ms=now)
        if is_stuck(meta, now)
    )


def _transactions(view: AdminView, request: HttpRequest) -> HttpResponse:
    ctx = view.ctx
    if ctx is None or not view.runtime.ready:
        return HttpResponse.error(503, "starting")
    try:
        states = {TxnState.from_kafka_name(s) for s in request.query.get("state", [])}
        producer_ids = {int(p) for p in request.query.get("producer_id", [])}
        min_duration = int(request.query.get("min_duration_ms", ["-1"])[-1])
    except ValueError as exc:
        return HttpResponse.error(400, str(exc))
    now = _now_ms()
    found = ctx.transactions.list_transactions(
        states,
        producer_ids,
        # open *longer* than the filter, as ListTransactions (KIP-994)
        min_duration + 1 if min_duration >= 0 else -1,
        now_ms=now,
    )
    return HttpResponse.json(
        [
            transaction_json(m, now)
            for m in sorted(found, key=lambda m: m.transactional_id)
            if m.state is not TxnState.DEAD
        ]
    )


def _transaction(view: AdminView, request: HttpRequest) -> HttpResponse:
    ctx = view.ctx
    if ctx is None or not view.runtime.ready:
        return HttpResponse.error(503, "starting")
    txn_id = unquote(request.params["transactional_id"])
    if not ctx.transactions.coordinates(txn_id):
        return HttpResponse.json(
            {
                "error": "another broker coordinates this transactional id",
                "coordinator": ctx.cluster.txn_coordinator(txn_id),
            },
            status=404,
        )
    meta = ctx.transactions.describe(txn_id)
    if meta is None or meta.state is TxnState.DEAD:
        return HttpResponse.error(404, "unknown transactional id")
    return HttpResponse.json(transaction_json(meta, _now_ms()))


def metric_lines(view: AdminView) -> Iterator[str]:
    """Open transactions by state, the oldest one's age and the stuck ones' count."""
    ctx = view.ctx
    if ctx is None or not view.runtime.ready:
        return iter(())
    now = _now_ms()
    open_txns = ctx.transactions.list_transactions(OPEN_STATES, now_ms=now)
    by_state = {s.kafka_name: 0 for s in OPEN_STATES}
    for meta in open_txns:
        by_state[meta.state.kafka_name] += 1
    oldest = max((m.duration_ms(now) for m in open_txns), default=0)
    stuck = sum(1 for m in open_txns if is_stuck(m, now))
    return transaction_metric_lines(by_state, oldest / 1000, stuck)


def register(routes: RouteTable) -> None:
    """Add this module's routes to ``routes``."""
    routes.add("GET", "/v1/transactions", _transactions)
    routes.add("GET", "/v1/transactions/{transactional_id}", _transaction)
