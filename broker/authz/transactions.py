"""Authorisation adapters of the transaction APIs (see :mod:`broker.authz.middleware`).

Kafka's rules (``KafkaApis``): InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn
and EndTxn need WRITE on the transactional id (TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
AddPartitionsToTxn also WRITE on each topic (denied topics answer
TOPIC_AUTHORIZATION_FAILED, the others OPERATION_NOT_ATTEMPTED); AddOffsetsToTxn
also READ on the group (GROUP_AUTHORIZATION_FAILED). FindCoordinator for a
transactional id needs DESCRIBE on it (:mod:`broker.authz.groups`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from broker.authz.base import (
    GROUP_DENIED,
    TOPIC_DENIED,
    Adapter,
    Checker,
    Forward,
    LazyModule,
    Outcome,
    Respond,
)
from broker.security.acl import Op, Resource
from broker.security.acl_binding import AclOperation, ResourceType
from protocol.error_codes import ErrorCode

if TYPE_CHECKING:
    from protocol.messages import add_offsets_to_txn as aot
    from protocol.messages import add_partitions_to_txn as apt
    from protocol.messages import end_txn as et
else:
    aot = LazyModule("protocol.messages.add_offsets_to_txn")
    apt = LazyModule("protocol.messages.add_partitions_to_txn")
    et = LazyModule("protocol.messages.end_txn")

TXN_DENIED: Final = ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED


def may_write_txn(c: Checker, transactional_id: str) -> bool:
    """WRITE on the transactional id (super users always)."""
    return c.super_user() or c.may_kafka(
        AclOperation.WRITE, ResourceType.TRANSACTIONAL_ID, transactional_id
    )


def may_describe_txn(c: Checker, transactional_id: str) -> bool:
    """DESCRIBE on the transactional id (implied by WRITE)."""
    return c.super_user() or c.may_kafka(
        AclOperation.DESCRIBE, ResourceType.TRANSACTIONAL_ID, transactional_id
    )


def _add_partitions(c: Checker, req: apt.AddPartitionsToTxnRequest) -> Outcome:
    topics = req.v3_and_below_topics
    if not may_write_txn(c, req.v3_and_below_transactional_id):
        denied = {t.name for t in topics}
        fallback = TXN_DENIED
    else:
        denied = {t.name for t in topics if not c.may(Op.WRITE, Resource.TOPIC, t.name)}
        fallback = ErrorCode.OPERATION_NOT_ATTEMPTED
        if not denied:
            return Forward(req)
    return Respond(
        apt.AddPartitionsToTxnResponse(
            results_by_topic_v3_and_below=tuple(
                apt.AddPartitionsToTxnTopicResult(
                    name=t.name,
                    results_by_partition=tuple(
                        apt.AddPartitionsToTxnPartitionResult(
                            partition_index=p,
                            partition_error_code=(
                                TOPIC_DENIED
                                if t.name in denied and fallback != TXN_DENIED
                                else fallback
                            ),
                        )
                        for p in t.partitions
                    ),
                )
                for t in topics
            )
        )
    )


def _add_offsets(c: Checker, req: aot.AddOffsetsToTxnRequest) -> Outcome:
    if not may_write_txn(c, req.transactional_id):
        return Respond(aot.AddOffsetsToTxnResponse(error_code=TXN_DENIED))
    if not c.may(Op.READ, Resource.GROUP, req.group_id):
        return Respond(aot.AddOffsetsToTxnResponse(error_code=GROUP_DENIED))
    return Forward(req)


def _end_txn(c: Checker, req: et.EndTxnRequest) -> Outcome:
    if not may_write_txn(c, req.transactional_id):
        return Respond(et.EndTxnResponse(error_code=TXN_DENIED))
    return Forward(req)


TXN_ADAPTERS: Final[dict[int, Adapter]] = {
    24: _add_partitions,
    25: _add_offsets,
    26: _end_txn,
}
