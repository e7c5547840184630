"""ListTransactions (key 66), v0–1 (KIP-664, KIP-994).

Behaviour: the transactional ids this broker coordinates (Kafka's
``TransactionStateManager.listTransactionStates``; an admin client asks every
broker and joins the answers), each with its producer id and state under Kafka's
name. Filters: states by Kafka's names (case-sensitive; a name Kafka does not know
is echoed in ``unknown_state_filters`` and matches nothing), producer ids, and (v1)
a duration: only transactions open longer than that many milliseconds. Ids being
expired (Dead) are never listed. Authorisation (only ids the principal may
DESCRIBE) is :mod:`broker.authz.tooling`'s.
Version notes: flexible from v0; v1 adds the duration filter.
"""

from __future__ import annotations

import time

from broker.net.dispatch import handler
from broker.net.request import RequestContext
from broker.transactions.model import TxnState
from protocol.error_codes import ErrorCode
from protocol.messages.list_transactions import (
    ListTransactionsRequest,
    ListTransactionsResponse,
    TransactionState,
)


@handler(api_key=66, name="list_transactions", max_version=1)
def list_transactions(
    rctx: RequestContext, request: ListTransactionsRequest
) -> ListTransactionsResponse:
    states: set[TxnState] = set()
    unknown: list[str] = []
    for name in request.state_filters:
        try:
            states.add(TxnState.from_kafka_name(name))
        except ValueError:
            unknown.append(name)
    found = []
    # Kafka keeps a state filter of only unknown names: it matches nothing.
    if not request.state_filters or states:
        found = rctx.broker.transactions.list_transactions(
            states,
            set(request.producer_id_filters),
            # Kafka keeps those open *longer* than the filter
            request.duration_filter_ms + 1 if request.duration_filter_ms >= 0 else -1,
            now_ms=time.time_ns() // 1_000_000,
        )
    return ListTransactionsResponse(
        error_code=ErrorCode.NONE,
        unknown_state_filters=tuple(unknown),
        transaction_states=tuple(
            TransactionState(
                transactional_id=meta.transactional_id,
                producer_id=meta.producer_id,
                transaction_state=meta.state.kafka_name,
            )
            for meta in sorted(found, key=lambda m: m.transactional_id)
            if meta.state is not TxnState.DEAD
        ),
    )
