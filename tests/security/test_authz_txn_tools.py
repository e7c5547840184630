"""Authorisation of DescribeTransactions and ListTransactions, as Kafka's KafkaApis.

alice may DESCRIBE the transactional id ``tx-ok`` (a Kafka ACL) and READ the topic
``orders`` (which implies DESCRIBE), nothing else: DescribeTransactions answers
TRANSACTIONAL_ID_AUTHORIZATION_FAILED for other ids without asking the handler
and names only the topics she may describe; ListTransactions lists only ``tx-ok``.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from broker.security.acl_binding import (
    AclBinding,
    AclOperation,
    PatternType,
    Permission,
    ResourceType,
)
from broker.security.service import SecurityService
from broker.security.settings import SecuritySettings
from protocol.error_codes import ErrorCode
from protocol.messages import describe_transactions as dt
from protocol.messages import list_transactions as lt
from tests.security.test_authz_hook import authorize, rctx


@pytest.fixture
def svc(tmp_path: Path) -> SecurityService:
    service = SecurityService(
        SecuritySettings(super_users=frozenset({"root"})),
        data_dir=tmp_path,
        listeners=("sasl_plaintext",),
    )
    service.store.set_password("alice", "pw", mechanisms=("SCRAM-SHA-256",))
    service.store.set_acls(
        "alice",
        ({"resource": "topic", "name": "orders", "operations": ["read"]},),
    )
    anyio.run(
        service.acls.create,
        [
            AclBinding(
                resource_type=ResourceType.TRANSACTIONAL_ID,
                name="tx-ok",
                pattern=PatternType.LITERAL,
                principal="User:alice",
                host="*",
                operation=AclOperation.DESCRIBE,
                permission=Permission.ALLOW,
            )
        ],
    )
    return service


def _described(txn_id: str) -> dt.TransactionState:
    return dt.TransactionState(
        error_code=0,
        transactional_id=txn_id,
        transaction_state="Ongoing",
        transaction_timeout_ms=60000,
        transaction_start_time_ms=1,
        producer_id=7,
        producer_epoch=0,
        topics=(
            dt.TopicData(topic="orders", partitions=(0,)),
            dt.TopicData(topic="secret", partitions=(1,)),
        ),
    )


def test_describe_transactions_checks_each_id_and_filters_topics(
    svc: SecurityService,
) -> None:
    """A denied id answers 53 and never reaches the handler; an allowed one keeps
    only the topics the principal may describe."""
    seen: list[tuple[str, ...]] = []

    def handler(req: object) -> object:
        assert isinstance(req, dt.DescribeTransactionsRequest)
        seen.append(req.transactional_ids)
        return dt.DescribeTransactionsResponse(
            transaction_states=tuple(_described(t) for t in req.transactional_ids)
        )

    resp = authorize(
        rctx(svc, "alice", 65, 0),
        dt.DescribeTransactionsRequest(transactional_ids=("tx-ok", "tx-no")),
        handler,
    )
    assert seen == [("tx-ok",)]
    assert isinstance(resp, dt.DescribeTransactionsResponse)
    by_id = {s.transactional_id: s for s in resp.transaction_states}
    assert by_id["tx-no"].error_code == ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    assert by_id["tx-ok"].error_code == ErrorCode.NONE
    assert [t.topic for t in by_id["tx-ok"].topics] == ["orders"]


def test_describe_transactions_all_denied_is_answered_at_once(
    svc: SecurityService,
) -> None:
    """Every id denied: the handler is not called."""

    def handler(req: object) -> object:
        raise AssertionError("handler called")

    resp = authorize(
        rctx(svc, "alice", 65, 0),
        dt.DescribeTransactionsRequest(transactional_ids=("tx-no",)),
        handler,
    )
    assert isinstance(resp, dt.DescribeTransactionsResponse)
    assert [s.error_code for s in resp.transaction_states] == [53]


def test_list_transactions_lists_only_describable_ids(svc: SecurityService) -> None:
    """ListTransactions keeps the ids the principal may DESCRIBE; a super user
    sees them all."""

    def handler(req: object) -> object:
        return lt.ListTransactionsResponse(
            error_code=0,
            transaction_states=tuple(
                lt.TransactionState(
                    transactional_id=t, producer_id=i, transaction_state="Ongoing"
                )
                for i, t in enumerate(("tx-ok", "tx-no"))
            ),
        )

    for user, expected in (("alice", ["tx-ok"]), ("root", ["tx-ok", "tx-no"])):
        resp = authorize(rctx(svc, user, 66, 1), lt.ListTransactionsRequest(), handler)
        assert isinstance(resp, lt.ListTransactionsResponse)
        assert [s.transactional_id for s in resp.transaction_states] == expected
