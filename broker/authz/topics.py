"""Authorisation adapters of the topic APIs (see :mod:`broker.authz.middleware`)."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Final

from broker.authz.base import (
    CLUSTER_DENIED,
    DENIED_MESSAGE,
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
from broker.net.request import NO_RESPONSE
from broker.security.acl import Op, Resource
from broker.security.acl_binding import AclOperation, ResourceType
from protocol.error_codes import ErrorCode

if TYPE_CHECKING:
    from protocol.messages import alter_partition_reassignments as apr
    from protocol.messages import create_partitions as cp
    from protocol.messages import create_topics as ct
    from protocol.messages import delete_records as dr
    from protocol.messages import delete_topics as dt
    from protocol.messages import describe_configs as dc
    from protocol.messages import elect_leaders as el
    from protocol.messages import fetch as fe
    from protocol.messages import list_offsets as lo
    from protocol.messages import list_partition_reassignments as lpr
    from protocol.messages import metadata as md
    from protocol.messages import offset_for_leader_epoch as ofl
    from protocol.messages import produce as pr
    from protocol.messages import write_txn_markers as wtm
else:
    apr = LazyModule("protocol.messages.alter_partition_reassignments")
    cp = LazyModule("protocol.messages.create_partitions")
    ct = LazyModule("protocol.messages.create_topics")
    dr = LazyModule("protocol.messages.delete_records")
    dt = LazyModule("protocol.messages.delete_topics")
    dc = LazyModule("protocol.messages.describe_configs")
    el = LazyModule("protocol.messages.elect_leaders")
    fe = LazyModule("protocol.messages.fetch")
    lo = LazyModule("protocol.messages.list_offsets")
    lpr = LazyModule("protocol.messages.list_partition_reassignments")
    md = LazyModule("protocol.messages.metadata")
    ofl = LazyModule("protocol.messages.offset_for_leader_epoch")
    pr = LazyModule("protocol.messages.produce")
    wtm = LazyModule("protocol.messages.write_txn_markers")


def _produce(c: Checker, req: pr.ProduceRequest) -> Outcome:
    ok, denied = split(req.topic_data, lambda t: c.topic(Op.WRITE, t.name, t.topic_id))
    errors = tuple(
        pr.TopicProduceResponse(
            name=t.name,
            topic_id=t.topic_id,
            partition_responses=tuple(
                pr.PartitionProduceResponse(
                    index=p.index, error_code=TOPIC_DENIED, base_offset=-1
                )
                for p in t.partition_data
            ),
        )
        for t in denied
    )
    return partial(
        req,
        "topic_data",
        ok,
        errors,
        "responses",
        lambda: NO_RESPONSE if req.acks == 0 else pr.ProduceResponse(responses=errors),
    )


def _fetch(c: Checker, req: fe.FetchRequest) -> Outcome:
    # A follower's fetch (Kafka: CLUSTER_ACTION on the cluster) is kept simple:
    # only super users may fetch as a replica; every topic is denied otherwise, as
    # Kafka answers a follower without the right (TOPIC_AUTHORIZATION_FAILED).
    replica = req.replica_state.replica_id if c.version >= 15 else req.replica_id
    if replica >= 0:
        allowed = c.super_user()
        ok, denied = split(req.topics, lambda t: allowed)
    else:
        ok, denied = split(req.topics, lambda t: c.topic(Op.READ, t.topic, t.topic_id))
    errors = tuple(
        fe.FetchableTopicResponse(
            topic=t.topic,
            topic_id=t.topic_id,
            partitions=tuple(
                fe.PartitionData(
                    partition_index=p.partition,
                    error_code=TOPIC_DENIED,
                    high_watermark=-1,
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
        "responses",
        lambda: fe.FetchResponse(session_id=req.session_id, responses=errors),
    )


def _list_offsets(c: Checker, req: lo.ListOffsetsRequest) -> Outcome:
    ok, denied = split(req.topics, lambda t: c.topic(Op.DESCRIBE, t.name))
    errors = tuple(
        lo.ListOffsetsTopicResponse(
            name=t.name,
            partitions=tuple(
                lo.ListOffsetsPartitionResponse(
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
        lambda: lo.ListOffsetsResponse(topics=errors),
    )


def _epochs(c: Checker, req: ofl.OffsetForLeaderEpochRequest) -> Outcome:
    ok, denied = split(req.topics, lambda t: c.topic(Op.DESCRIBE, t.topic))
    errors = tuple(
        ofl.OffsetForLeaderTopicResult(
            topic=t.topic,
            partitions=tuple(
                ofl.EpochEndOffset(error_code=TOPIC_DENIED, partition=p.partition)
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
        lambda: ofl.OffsetForLeaderEpochResponse(topics=errors),
    )


def _metadata(c: Checker, req: md.MetadataRequest) -> Outcome:

    if req.topics is None or (c.version == 0 and not req.topics):

        def only_describable(resp: md.MetadataResponse) -> object:
            return replace(
                resp,
                topics=tuple(
                    t for t in resp.topics if c.topic(Op.DESCRIBE, t.name, t.topic_id)
                ),
            )

        return Forward(req, only_describable)
    creating = c.rctx.broker.config.auto_create_topics and (
        c.version < 4 or req.allow_auto_topic_creation
    )

    def allowed(t: md.MetadataRequestTopic) -> bool:
        if not c.topic(Op.DESCRIBE, t.name, t.topic_id):
            return False
        if creating and t.name and c.topics.find(t.name) is None:
            return c.may(Op.CREATE, Resource.TOPIC, t.name)
        return True

    ok, denied = split(req.topics, allowed)
    errors = tuple(
        md.MetadataResponseTopic(
            error_code=TOPIC_DENIED, name=t.name, topic_id=t.topic_id
        )
        for t in denied
    )
    return (
        Forward(
            replace(req, topics=ok),
            lambda resp: replace(resp, topics=resp.topics + errors),
        )
        if errors
        else Forward(req)
    )


def _create_topics(c: Checker, req: ct.CreateTopicsRequest) -> Outcome:
    ok, denied = split(req.topics, lambda t: c.may(Op.CREATE, Resource.TOPIC, t.name))
    errors = tuple(
        ct.CreatableTopicResult(
            name=t.name, error_code=TOPIC_DENIED, error_message=DENIED_MESSAGE
        )
        for t in denied
    )
    return partial(
        req,
        "topics",
        ok,
        errors,
        "topics",
        lambda: ct.CreateTopicsResponse(topics=errors),
    )


def _delete_topics(c: Checker, req: dt.DeleteTopicsRequest) -> Outcome:
    if c.version < 6:
        ok, denied = split(
            req.topic_names, lambda n: c.may(Op.DELETE, Resource.TOPIC, n)
        )
        errors = tuple(
            dt.DeletableTopicResult(name=n, error_code=TOPIC_DENIED) for n in denied
        )
        field = "topic_names"
    else:
        ok, denied = split(req.topics, lambda t: c.topic(Op.DELETE, t.name, t.topic_id))
        errors = tuple(
            dt.DeletableTopicResult(
                name=t.name,
                topic_id=t.topic_id,
                error_code=TOPIC_DENIED,
                error_message=DENIED_MESSAGE,
            )
            for t in denied
        )
        field = "topics"
    return partial(
        req,
        field,
        ok,
        errors,
        "responses",
        lambda: dt.DeleteTopicsResponse(responses=errors),
    )


def _delete_records(c: Checker, req: dr.DeleteRecordsRequest) -> Outcome:
    ok, denied = split(req.topics, lambda t: c.may(Op.DELETE, Resource.TOPIC, t.name))
    errors = tuple(
        dr.DeleteRecordsTopicResult(
            name=t.name,
            partitions=tuple(
                dr.DeleteRecordsPartitionResult(
                    partition_index=p.partition_index,
                    low_watermark=-1,
                    error_code=TOPIC_DENIED,
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
        lambda: dr.DeleteRecordsResponse(topics=errors),
    )


def _create_partitions(c: Checker, req: cp.CreatePartitionsRequest) -> Outcome:
    ok, denied = split(req.topics, lambda t: c.may(Op.ALTER, Resource.TOPIC, t.name))
    errors = tuple(
        cp.CreatePartitionsTopicResult(
            name=t.name, error_code=TOPIC_DENIED, error_message=DENIED_MESSAGE
        )
        for t in denied
    )
    return partial(
        req,
        "topics",
        ok,
        errors,
        "results",
        lambda: cp.CreatePartitionsResponse(results=errors),
    )


_TOPIC_RESOURCE, _BROKER_RESOURCE, _BROKER_LOGGER = 2, 4, 8


def _describe_configs(c: Checker, req: dc.DescribeConfigsRequest) -> Outcome:
    # Kafka asks DESCRIBE_CONFIGS (implied by ALTER_CONFIGS); DESCRIBE, what a
    # users-file rule can grant, is accepted too.
    def code(r: dc.DescribeConfigsResource) -> ErrorCode:
        if r.resource_type == _TOPIC_RESOURCE:
            name = r.resource_name
            ok = c.may(Op.DESCRIBE, Resource.TOPIC, name) or c.may_kafka(
                AclOperation.DESCRIBE_CONFIGS, ResourceType.TOPIC, name
            )
            return ErrorCode.NONE if ok else TOPIC_DENIED
        if r.resource_type in (_BROKER_RESOURCE, _BROKER_LOGGER):
            ok = c.may(Op.DESCRIBE, Resource.CLUSTER) or c.may_kafka(
                AclOperation.DESCRIBE_CONFIGS, ResourceType.CLUSTER
            )
            return ErrorCode.NONE if ok else CLUSTER_DENIED
        return ErrorCode.NONE

    ok, denied = split(req.resources, lambda r: code(r) == ErrorCode.NONE)
    errors = tuple(
        dc.DescribeConfigsResult(
            error_code=code(r),
            error_message=DENIED_MESSAGE,
            resource_type=r.resource_type,
            resource_name=r.resource_name,
        )
        for r in denied
    )
    return partial(
        req,
        "resources",
        ok,
        errors,
        "results",
        lambda: dc.DescribeConfigsResponse(results=errors),
    )


def _elect_leaders(c: Checker, req: el.ElectLeadersRequest) -> Outcome:
    """ALTER on the cluster (Kafka's ``KafkaApis.handleElectLeaders``)."""
    if c.may(Op.ALTER, Resource.CLUSTER):
        return Forward(req)
    return Respond(
        el.ElectLeadersResponse(
            error_code=CLUSTER_DENIED,
            replica_election_results=tuple(
                el.ReplicaElectionResult(
                    topic=t.topic,
                    partition_result=tuple(
                        el.PartitionResult(
                            partition_id=i,
                            error_code=CLUSTER_DENIED,
                            error_message=DENIED_MESSAGE,
                        )
                        for i in t.partitions
                    ),
                )
                for t in req.topic_partitions or ()
            ),
        )
    )


def _write_txn_markers(c: Checker, req: wtm.WriteTxnMarkersRequest) -> Outcome:
    """CLUSTER_ACTION on the cluster (an inter-broker API; here: super users, as a
    follower's fetch), else CLUSTER_AUTHORIZATION_FAILED for every partition."""
    if c.super_user():
        return Forward(req)
    return Respond(
        wtm.WriteTxnMarkersResponse(
            markers=tuple(
                wtm.WritableTxnMarkerResult(
                    producer_id=m.producer_id,
                    topics=tuple(
                        wtm.WritableTxnMarkerTopicResult(
                            name=t.name,
                            partitions=tuple(
                                wtm.WritableTxnMarkerPartitionResult(
                                    partition_index=i, error_code=CLUSTER_DENIED
                                )
                                for i in t.partition_indexes
                            ),
                        )
                        for t in m.topics
                    ),
                )
                for m in req.markers
            )
        )
    )


def _alter_reassignments(
    c: Checker, req: apr.AlterPartitionReassignmentsRequest
) -> Outcome:
    """ALTER on the cluster."""
    if c.may(Op.ALTER, Resource.CLUSTER):
        return Forward(req)
    return Respond(
        apr.AlterPartitionReassignmentsResponse(
            error_code=CLUSTER_DENIED, error_message=DENIED_MESSAGE
        )
    )


def _list_reassignments(
    c: Checker, req: lpr.ListPartitionReassignmentsRequest
) -> Outcome:
    """DESCRIBE on the cluster."""
    if c.may(Op.DESCRIBE, Resource.CLUSTER):
        return Forward(req)
    return Respond(
        lpr.ListPartitionReassignmentsResponse(
            error_code=CLUSTER_DENIED, error_message=DENIED_MESSAGE
        )
    )


TOPIC_ADAPTERS: Final[dict[int, Adapter]] = {
    0: _produce,
    1: _fetch,
    2: _list_offsets,
    3: _metadata,
    19: _create_topics,
    20: _delete_topics,
    21: _delete_records,
    23: _epochs,
    27: _write_txn_markers,
    32: _describe_configs,
    37: _create_partitions,
    43: _elect_leaders,
    45: _alter_reassignments,
    46: _list_reassignments,
}
