"""Transaction tooling through the CLI's client (KIP-664, KIP-994).

As Kafka's admin client: ListTransactions asks every broker (each answers the ids
it coordinates) and joins the answers; DescribeTransactions asks each id's
coordinator, found with FindCoordinator key type 1.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from broker.client.client import KafkaClient
from broker.client.errors import KafkaError
from broker.client.groups import coordinator_id
from broker.client.types import TransactionDescription, TransactionListing
from protocol.error_codes import ErrorCode
from protocol.messages.describe_transactions import (
    DescribeTransactionsRequest,
    DescribeTransactionsResponse,
)
from protocol.messages.list_transactions import (
    ListTransactionsRequest,
    ListTransactionsResponse,
)

# Kafka's TransactionState names, as ListTransactions filters them
_STATE_NAMES: Final = (
    "Empty",
    "Ongoing",
    "PrepareCommit",
    "PrepareAbort",
    "CompleteCommit",
    "CompleteAbort",
    "PrepareEpochFence",
)
_TXN_KEY: Final = 1  # FindCoordinator key type of a transactional id
_DESCRIBE_TRANSACTIONS: Final = 65
_LIST_TRANSACTIONS: Final = 66


def list_transactions(
    client: KafkaClient,
    *,
    states: Iterable[str] = (),
    producer_ids: Iterable[int] = (),
    min_duration_ms: int = -1,
) -> list[TransactionListing]:
    """Every transactional id of every broker, sorted by id, filtered by state
    names (Kafka's, e.g. "Ongoing"), producer ids, and how long (ms) the
    transaction has been open (-1: no filter; needs ListTransactions v1)."""
    cluster = client.metadata([])
    request = ListTransactionsRequest(
        state_filters=tuple(states),
        producer_id_filters=tuple(producer_ids),
        duration_filter_ms=min_duration_ms,
    )
    seen: dict[str, TransactionListing] = {}
    for node in [b.node_id for b in cluster.brokers] or [-1]:
        conn = client.connection_for(node) if node >= 0 else client.bootstrap()
        if min_duration_ms >= 0 and conn.version_for(_LIST_TRANSACTIONS) < 1:
            raise KafkaError(
                ErrorCode.UNSUPPORTED_VERSION,
                f"list transactions on {conn.address}",
                "the duration filter needs ListTransactions v1 (KIP-994)",
            )
        response = conn.request(request, ListTransactionsResponse)
        if response.error_code:
            raise KafkaError(response.error_code, f"list transactions on node {node}")
        if response.unknown_state_filters:
            raise KafkaError(
                ErrorCode.INVALID_REQUEST,
                "list transactions",
                "unknown state "
                + ", ".join(response.unknown_state_filters)
                + "; Kafka's states: "
                + ", ".join(_STATE_NAMES),
            )
        for s in response.transaction_states:
            seen[s.transactional_id] = TransactionListing(
                transactional_id=s.transactional_id,
                producer_id=s.producer_id,
                state=s.transaction_state,
                coordinator=node,
            )
    return [seen[k] for k in sorted(seen)]


def describe_transaction(
    client: KafkaClient, transactional_id: str
) -> TransactionDescription:
    """``transactional_id``'s state, asked of its coordinator."""
    node = coordinator_id(client, transactional_id, key_type=_TXN_KEY)
    conn = client.connection_for(node)
    response = conn.request(
        DescribeTransactionsRequest(transactional_ids=(transactional_id,)),
        DescribeTransactionsResponse,
    )
    for s in response.transaction_states:
        if s.error_code:
            raise KafkaError(s.error_code, f"describe transaction {transactional_id!r}")
        return TransactionDescription(
            transactional_id=s.transactional_id,
            coordinator=node,
            state=s.transaction_state,
            producer_id=s.producer_id,
            producer_epoch=s.producer_epoch,
            timeout_ms=s.transaction_timeout_ms,
            start_ms=s.transaction_start_time_ms,
            partitions=tuple(
                (t.topic, p) for t in s.topics for p in sorted(t.partitions)
            ),
        )
    raise KafkaError(
        ErrorCode.TRANSACTIONAL_ID_NOT_FOUND,
        f"describe transaction {transactional_id!r}",
    )


# A transaction that has begun and not completed, by Kafka's state names.
OPEN_STATES: Final = ("Ongoing", "PrepareCommit", "PrepareAbort", "PrepareEpochFence")


def stuck_transactions(client: KafkaClient, now_ms: int) -> list[str]:
    """The transactional ids, on every broker that serves the transaction APIs,
    whose transaction has been open longer than its timeout (sorted)."""
    cluster = client.metadata([])
    stuck: set[str] = set()
    for node in [b.node_id for b in cluster.brokers] or [-1]:
        conn = client.connection_for(node) if node >= 0 else client.bootstrap()
        if not (
            conn.supports(_LIST_TRANSACTIONS) and conn.supports(_DESCRIBE_TRANSACTIONS)
        ):
            continue
        listed = conn.request(
            ListTransactionsRequest(state_filters=OPEN_STATES),
            ListTransactionsResponse,
        )
        ids = tuple(s.transactional_id for s in listed.transaction_states)
        if listed.error_code or not ids:
            continue
        described = conn.request(
            DescribeTransactionsRequest(transactional_ids=ids),
            DescribeTransactionsResponse,
        )
        stuck.update(
            s.transactional_id
            for s in described.transaction_states
            if not s.error_code
            and s.transaction_state in OPEN_STATES
            and s.transaction_start_time_ms >= 0
            and now_ms - s.transaction_start_time_ms > s.transaction_timeout_ms
        )
    return sorted(stuck)
