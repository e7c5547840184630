"""Authorisation adapters of the group APIs (see :mod:`broker.authz.middleware`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Final

from broker.authz.base import (
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
from broker.authz.transactions import may_describe_txn, may_write_txn
from broker.security.acl import Op, Resource
from broker.security.acl_binding import AclOperation, ResourceType
from protocol.error_codes import ErrorCode

if TYPE_CHECKING:
    from protocol.messages import delete_groups as dg
    from protocol.messages import describe_groups as dsg
    from protocol.messages import find_coordinator as fc
    from protocol.messages import heartbeat as hb
    from protocol.messages import init_producer_id as ip
    from protocol.messages import join_group as jg
    from protocol.messages import leave_group as lg
    from protocol.messages import list_groups as lsg
    from protocol.messages import offset_commit as oc
    from protocol.messages import offset_fetch as of
    from protocol.messages import sync_group as sg
    from protocol.messages import txn_offset_commit as toc
else:
    dg = LazyModule("protocol.messages.delete_groups")
    dsg = LazyModule("protocol.messages.describe_groups")
    fc = LazyModule("protocol.messages.find_coordinator")
    hb = LazyModule("protocol.messages.heartbeat")
    ip = LazyModule("protocol.messages.init_producer_id")
    jg = LazyModule("protocol.messages.join_group")
    lg = LazyModule("protocol.messages.leave_group")
    lsg = LazyModule("protocol.messages.list_groups")
    oc = LazyModule("protocol.messages.offset_commit")
    of = LazyModule("protocol.messages.offset_fetch")
    sg = LazyModule("protocol.messages.sync_group")
    toc = LazyModule("protocol.messages.txn_offset_commit")


def _group_op(op: Op, deny: Callable[[], object]) -> Callable[[Checker, Any], Outcome]:
    def adapter(c: Checker, req: Any) -> Outcome:
        if c.may(op, Resource.GROUP, req.group_id):
            return Forward(req)
        return Respond(deny())

    return adapter


def _offset_commit(c: Checker, req: oc.OffsetCommitRequest) -> Outcome:
    group_ok = c.may(Op.READ, Resource.GROUP, req.group_id)
    ok, denied = split(
        req.topics, lambda t: group_ok and c.topic(Op.READ, t.name, t.topic_id)
    )

    def results(t: oc.OffsetCommitRequestTopic) -> oc.OffsetCommitResponseTopic:
        return oc.OffsetCommitResponseTopic(
            name=t.name,
            topic_id=t.topic_id,
            partitions=tuple(
                oc.OffsetCommitResponsePartition(
                    partition_index=p.partition_index,
                    error_code=TOPIC_DENIED if group_ok else GROUP_DENIED,
                )
                for p in t.partitions
            ),
        )

    errors = tuple(results(t) for t in denied)
    if not group_ok:
        return Respond(oc.OffsetCommitResponse(topics=errors))
    return partial(
        req,
        "topics",
        ok,
        errors,
        "topics",
        lambda: oc.OffsetCommitResponse(topics=errors),
    )


def _txn_offset_commit(c: Checker, req: toc.TxnOffsetCommitRequest) -> Outcome:
    """Kafka's ``handleTxnOffsetCommitRequest``: WRITE on the transactional id,
    else every partition is TRANSACTIONAL_ID_AUTHORIZATION_FAILED; READ on the
    group, else GROUP_AUTHORIZATION_FAILED; READ on each topic."""

    def answer(topics: tuple[Any, ...], code: ErrorCode) -> tuple[Any, ...]:
        return tuple(
            toc.TxnOffsetCommitResponseTopic(
                name=t.name,
                partitions=tuple(
                    toc.TxnOffsetCommitResponsePartition(
                        partition_index=p.partition_index, error_code=code
                    )
                    for p in t.partitions
                ),
            )
            for t in topics
        )

    if not c.may_kafka(
        AclOperation.WRITE, ResourceType.TRANSACTIONAL_ID, req.transactional_id
    ):
        code = ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
        return Respond(toc.TxnOffsetCommitResponse(topics=answer(req.topics, code)))
    if not c.may(Op.READ, Resource.GROUP, req.group_id):
        return Respond(
            toc.TxnOffsetCommitResponse(topics=answer(req.topics, GROUP_DENIED))
        )
    ok, denied = split(req.topics, lambda t: c.topic(Op.READ, t.name))
    errors = answer(denied, TOPIC_DENIED)
    return partial(
        req,
        "topics",
        ok,
        errors,
        "topics",
        lambda: toc.TxnOffsetCommitResponse(topics=errors),
    )


def _offset_fetch(c: Checker, req: of.OffsetFetchRequest) -> Outcome:
    def group_ok(group_id: str) -> bool:
        return c.may(Op.DESCRIBE, Resource.GROUP, group_id)

    def describable(name: str) -> bool:
        return c.may(Op.DESCRIBE, Resource.TOPIC, name)

    if c.version < 8:
        if not group_ok(req.group_id):
            topics = tuple(
                of.OffsetFetchResponseTopic(
                    name=t.name,
                    partitions=tuple(
                        of.OffsetFetchResponsePartition(
                            partition_index=i,
                            committed_offset=-1,
                            error_code=GROUP_DENIED,
                        )
                        for i in t.partition_indexes
                    ),
                )
                for t in req.topics or ()
            )
            return Respond(
                of.OffsetFetchResponse(topics=topics, error_code=GROUP_DENIED)
            )
        explicit = req.topics is not None

        def filter_old(resp: of.OffsetFetchResponse) -> object:
            kept = []
            for t in resp.topics:
                if describable(t.name):
                    kept.append(t)
                elif explicit:
                    kept.append(
                        replace(
                            t,
                            partitions=tuple(
                                replace(
                                    p,
                                    committed_offset=-1,
                                    metadata="",
                                    error_code=TOPIC_DENIED,
                                )
                                for p in t.partitions
                            ),
                        )
                    )
            return replace(resp, topics=tuple(kept))

        return Forward(req, filter_old)
    ok, denied = split(req.groups, lambda g: group_ok(g.group_id))
    errors = tuple(
        of.OffsetFetchResponseGroup(group_id=g.group_id, error_code=GROUP_DENIED)
        for g in denied
    )
    explicit_groups = {g.group_id for g in req.groups if g.topics is not None}

    def filter_new(resp: of.OffsetFetchResponse) -> object:
        groups = []
        for g in resp.groups:
            kept = []
            for t in g.topics:
                if describable(t.name):
                    kept.append(t)
                elif g.group_id in explicit_groups:
                    kept.append(
                        replace(
                            t,
                            partitions=tuple(
                                replace(
                                    p,
                                    committed_offset=-1,
                                    metadata="",
                                    error_code=TOPIC_DENIED,
                                )
                                for p in t.partitions
                            ),
                        )
                    )
            groups.append(replace(g, topics=tuple(kept)))
        return replace(resp, groups=tuple(groups) + errors)

    if not ok:
        return Respond(of.OffsetFetchResponse(groups=errors))
    return Forward(replace(req, groups=ok), filter_new)


def _find_coordinator(c: Checker, req: fc.FindCoordinatorRequest) -> Outcome:
    def code(key: str) -> ErrorCode:
        if req.key_type == 0:
            ok = c.may(Op.DESCRIBE, Resource.GROUP, key)
            return ErrorCode.NONE if ok else GROUP_DENIED
        if req.key_type == 1 and not may_describe_txn(c, key):
            return ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
        return ErrorCode.NONE

    if c.version < 4:
        err = code(req.key)
        if err == ErrorCode.NONE:
            return Forward(req)
        return Respond(
            fc.FindCoordinatorResponse(
                error_code=err,
                error_message=DENIED_MESSAGE,
                node_id=-1,
                host="",
                port=-1,
            )
        )
    ok, denied = split(req.coordinator_keys, lambda k: code(k) == ErrorCode.NONE)
    errors = tuple(
        fc.Coordinator(
            key=k,
            node_id=-1,
            host="",
            port=-1,
            error_code=code(k),
            error_message=DENIED_MESSAGE,
        )
        for k in denied
    )
    return partial(
        req,
        "coordinator_keys",
        ok,
        errors,
        "coordinators",
        lambda: fc.FindCoordinatorResponse(coordinators=errors),
    )


def _describe_groups(c: Checker, req: dsg.DescribeGroupsRequest) -> Outcome:
    ok, denied = split(req.groups, lambda g: c.may(Op.DESCRIBE, Resource.GROUP, g))
    errors = tuple(
        dsg.DescribedGroup(
            error_code=GROUP_DENIED,
            group_id=g,
            group_state="",
            protocol_type="",
            protocol_data="",
        )
        for g in denied
    )
    return partial(
        req,
        "groups",
        ok,
        errors,
        "groups",
        lambda: dsg.DescribeGroupsResponse(groups=errors),
    )


def _list_groups(c: Checker, req: lsg.ListGroupsRequest) -> Outcome:
    if c.may(Op.DESCRIBE, Resource.CLUSTER):
        return Forward(req)

    def only_describable(resp: lsg.ListGroupsResponse) -> object:
        return replace(
            resp,
            groups=tuple(
                g for g in resp.groups if c.may(Op.DESCRIBE, Resource.GROUP, g.group_id)
            ),
        )

    return Forward(req, only_describable)


def _delete_groups(c: Checker, req: dg.DeleteGroupsRequest) -> Outcome:
    ok, denied = split(req.groups_names, lambda g: c.may(Op.DELETE, Resource.GROUP, g))
    errors = tuple(
        dg.DeletableGroupResult(group_id=g, error_code=GROUP_DENIED) for g in denied
    )
    return partial(
        req,
        "groups_names",
        ok,
        errors,
        "results",
        lambda: dg.DeleteGroupsResponse(results=errors),
    )


def _init_producer_id(c: Checker, req: ip.InitProducerIdRequest) -> Outcome:
    if not req.transactional_id or may_write_txn(c, req.transactional_id):
        return Forward(req)
    return Respond(
        ip.InitProducerIdResponse(
            error_code=ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
            producer_id=-1,
            producer_epoch=-1,
        )
    )


GROUP_ADAPTERS: Final[dict[int, Adapter]] = {
    8: _offset_commit,
    9: _offset_fetch,
    10: _find_coordinator,
    11: _group_op(Op.READ, lambda: jg.JoinGroupResponse(error_code=GROUP_DENIED)),
    12: _group_op(Op.READ, lambda: hb.HeartbeatResponse(error_code=GROUP_DENIED)),
    13: _group_op(Op.READ, lambda: lg.LeaveGroupResponse(error_code=GROUP_DENIED)),
    14: _group_op(Op.READ, lambda: sg.SyncGroupResponse(error_code=GROUP_DENIED)),
    15: _describe_groups,
    16: _list_groups,
    22: _init_producer_id,
    28: _txn_offset_commit,
    42: _delete_groups,
}
