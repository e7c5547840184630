"""Authorisation adapters of the admin tools' APIs (see :mod:`broker.authz.middleware`).

Kafka's checks: DescribeLogDirs and DescribeUserScramCredentials need DESCRIBE on
the cluster, AlterUserScramCredentials ALTER on it, DescribeClientQuotas DESCRIBE
(Kafka's DESCRIBE_CONFIGS) on it; DescribeTopicPartitions DESCRIBE on each topic
(an all-topics answer lists only describable ones); DescribeProducers READ on each
topic; OffsetDelete DELETE on the group and READ on each topic;
DescribeTransactions DESCRIBE on each transactional id (and its answer names only
the topics the principal may DESCRIBE), ListTransactions lists only the ids the
principal may DESCRIBE (Kafka's ``KafkaApis``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Final

from broker.authz.base import (
    CLUSTER_DENIED,
    DENIED_MESSAGE,
    GROUP_DENIED,
    TOPIC_DENIED,
    Adapter,
    Checker,
    Forward,
    LazyModule,
    Outcome,
    Respond,
    partial,
    split,
)
from broker.security.acl import Op, Resource
from broker.security.acl_binding import AclOperation, ResourceType
from broker.topics.service import ZERO_UUID
from protocol.error_codes import ErrorCode

if TYPE_CHECKING:
    from protocol.messages import alter_user_scram_credentials as aus
    from protocol.messages import describe_client_quotas as dcq
    from protocol.messages import describe_log_dirs as dld
    from protocol.messages import describe_producers as dp
    from protocol.messages import describe_topic_partitions as dtp
    from protocol.messages import describe_transactions as dt
    from protocol.messages import describe_user_scram_credentials as dus
    from protocol.messages import list_transactions as lt
    from protocol.messages import offset_delete as od
else:
    aus = LazyModule("protocol.messages.alter_user_scram_credentials")
    dcq = LazyModule("protocol.messages.describe_client_quotas")
    dld = LazyModule("protocol.messages.describe_log_dirs")
    dp = LazyModule("protocol.messages.describe_producers")
    dtp = LazyModule("protocol.messages.describe_topic_partitions")
    dt = LazyModule("protocol.messages.describe_transactions")
    lt = LazyModule("protocol.messages.list_transactions")
    dus = LazyModule("protocol.messages.describe_user_scram_credentials")
    od = LazyModule("protocol.messages.offset_delete")


def _log_dirs(c: Checker, req: dld.DescribeLogDirsRequest) -> Outcome:
    if c.may(Op.DESCRIBE, Resource.CLUSTER):
        return Forward(req)
    return Respond(dld.DescribeLogDirsResponse(error_code=CLUSTER_DENIED))


def _client_quotas(c: Checker, req: dcq.DescribeClientQuotasRequest) -> Outcome:
    if c.may(Op.DESCRIBE, Resource.CLUSTER):
        return Forward(req)
    return Respond(
        dcq.DescribeClientQuotasResponse(
            error_code=CLUSTER_DENIED, error_message=DENIED_MESSAGE, entries=None
        )
    )


def _describe_scram(
    c: Checker, req: dus.DescribeUserScramCredentialsRequest
) -> Outcome:
    if c.may(Op.DESCRIBE, Resource.CLUSTER):
        return Forward(req)
    return Respond(
        dus.DescribeUserScramCredentialsResponse(
            error_code=CLUSTER_DENIED, error_message=DENIED_MESSAGE
        )
    )


def _alter_scram(c: Checker, req: aus.AlterUserScramCredentialsRequest) -> Outcome:
    if c.may(Op.ALTER, Resource.CLUSTER):
        return Forward(req)
    users = [d.name for d in req.deletions] + [u.name for u in req.upsertions]
    return Respond(
        aus.AlterUserScramCredentialsResponse(
            results=tuple(
                aus.AlterUserScramCredentialsResult(
                    user=u, error_code=CLUSTER_DENIED, error_message=DENIED_MESSAGE
                )
                for u in dict.fromkeys(users)
            )
        )
    )


def _topic_partitions(c: Checker, req: dtp.DescribeTopicPartitionsRequest) -> Outcome:
    if not req.topics:

        def describable(resp: dtp.DescribeTopicPartitionsResponse) -> object:
            return replace(
                resp,
                topics=tuple(
                    t
                    for t in resp.topics
                    if t.name is not None and c.may(Op.DESCRIBE, Resource.TOPIC, t.name)
                ),
            )

        return Forward(req, describable)
    ok, denied = split(req.topics, lambda t: c.may(Op.DESCRIBE, Resource.TOPIC, t.name))
    errors = tuple(
        dtp.DescribeTopicPartitionsResponseTopic(
            error_code=TOPIC_DENIED, name=t.name, topic_id=ZERO_UUID
        )
        for t in denied
    )
    return partial(
        req,
        "topics",
        ok,
        errors,
        "topics",
        lambda: dtp.DescribeTopicPartitionsResponse(topics=errors),
    )


def _producers(c: Checker, req: dp.DescribeProducersRequest) -> Outcome:
    ok, denied = split(req.topics, lambda t: c.may(Op.READ, Resource.TOPIC, t.name))
    errors = tuple(
        dp.TopicResponse(
            name=t.name,
            partitions=tuple(
                dp.PartitionResponse(
                    partition_index=i,
                    error_code=TOPIC_DENIED,
                    error_message=DENIED_MESSAGE,
                )
                for i in t.partition_indexes
            ),
        )
        for t in denied
    )
    return partial(
        req,
        "topics",
        ok,
        errors,
        "topics",
        lambda: dp.DescribeProducersResponse(topics=errors),
    )


def _offset_delete(c: Checker, req: od.OffsetDeleteRequest) -> Outcome:
    if not c.may(Op.DELETE, Resource.GROUP, req.group_id):
        return Respond(od.OffsetDeleteResponse(error_code=GROUP_DENIED))
    ok, denied = split(req.topics, lambda t: c.may(Op.READ, Resource.TOPIC, t.name))
    errors = tuple(
        od.OffsetDeleteResponseTopic(
            name=t.name,
            partitions=tuple(
                od.OffsetDeleteResponsePartition(
                    partition_index=p.partition_index, error_code=TOPIC_DENIED
                )
                for p in t.partitions
            ),
        )
        for t in denied
    )
    return partial(
        req,
        "topics",
        ok,
        errors,
        "topics",
        lambda: od.OffsetDeleteResponse(topics=errors),
    )


def _may_describe_txn(c: Checker, transactional_id: str) -> bool:
    return c.may_kafka(
        AclOperation.DESCRIBE, ResourceType.TRANSACTIONAL_ID, transactional_id
    )


def _describe_txns(c: Checker, req: dt.DescribeTransactionsRequest) -> Outcome:
    ok, denied = split(req.transactional_ids, lambda t: _may_describe_txn(c, t))
    errors = tuple(
        dt.TransactionState(
            error_code=ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
            transactional_id=t,
            transaction_state="",
            transaction_timeout_ms=0,
            transaction_start_time_ms=-1,
            producer_id=-1,
            producer_epoch=-1,
        )
        for t in denied
    )

    def describable_topics(resp: dt.DescribeTransactionsResponse) -> object:
        # Kafka answers only the partitions of topics the principal may DESCRIBE.
        states = tuple(
            replace(
                s,
                topics=tuple(
                    t for t in s.topics if c.may(Op.DESCRIBE, Resource.TOPIC, t.topic)
                ),
            )
            for s in resp.transaction_states
        )
        return replace(resp, transaction_states=states + errors)

    if not ok:
        return Respond(dt.DescribeTransactionsResponse(transaction_states=errors))
    return Forward(replace(req, transactional_ids=ok), describable_topics)


def _list_txns(c: Checker, req: lt.ListTransactionsRequest) -> Outcome:
    def only_describable(resp: lt.ListTransactionsResponse) -> object:
        return replace(
            resp,
            transaction_states=tuple(
                s
                for s in resp.transaction_states
                if _may_describe_txn(c, s.transactional_id)
            ),
        )

    return Forward(req, only_describable)


TOOLING_ADAPTERS: Final[dict[int, Adapter]] = {
    35: _log_dirs,
    47: _offset_delete,
    48: _client_quotas,
    50: _describe_scram,
    51: _alter_scram,
    61: _producers,
    65: _describe_txns,
    66: _list_txns,
    75: _topic_partitions,
}
