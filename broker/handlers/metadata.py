"""Metadata (key 3), v0–13.

Behaviour: one broker (this node) at the advertised address of the listener the
client connected to; it leads every partition (leader epoch from the log, replicas
and ISR = [node]). A null topic list (v1+; empty in v0) means all topics. A missing
topic is created with the broker defaults when auto.create.topics.enable is on and
the request allows it (v4+ ``allow_auto_topic_creation``), else
UNKNOWN_TOPIC_OR_PARTITION; an invalid name gets INVALID_TOPIC_EXCEPTION. One request
auto-creates at most ``ailurus.auto.create.topics.per.request`` topics, in a worker
thread; further missing topics get UNKNOWN_TOPIC_OR_PARTITION (a client retrying
creates them in later requests), and a topic beyond the partition caps gets
POLICY_VIOLATION.

Cluster mode: everything comes from the watched cache, never from etcd: every live
broker at its endpoint of the listener the client connected to (a broker without
that listener is left out), the controller, every topic of the cluster
(``__consumer_offsets`` marked internal) with each partition's leader, epoch,
replicas, ISR and offline replicas (replicas not live); a partition without a leader
gets LEADER_NOT_AVAILABLE. A topic's entry is built once per version of the cache
(``MetadataCache.memo``), and without authorisation a whole answer is encoded once
per version of the cache, listener, API version and topic list: a full Metadata of
1,000 partitions is otherwise milliseconds of encoding. Auto-creation asks the controller (via the topic service)
and answers once the topic is in the cache.
With ``include_topic_authorized_operations`` (v8+) each topic found carries the
caller's operations on it, with ``include_cluster_authorized_operations`` (v8–10)
the response those on the cluster, as Kafka's bitfields (every supported operation
when the authorizer is off); otherwise Kafka's sentinel (INT32 min).
Version notes: v7 leader epoch; v8 authorized operations; v9 flexible; v10 topic ids; v12 lookup by topic id
(unknown id -> UNKNOWN_TOPIC_ID); v13 top-level error code.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial

from broker.cluster.cache import MetadataCache
from broker.cluster.model import NO_LEADER, TopicRecord
from broker.cluster.view import INTERNAL_TOPICS
from broker.net.dispatch import handler
from broker.net.request import Deferred, RequestContext
from broker.security.acl_binding import CLUSTER_NAME, ResourceType
from broker.topics.errors import error_code
from broker.topics.service import ZERO_UUID, NewTopic
from protocol.codec import encode_response_body
from protocol.error_codes import ErrorCode
from protocol.messages.metadata import (
    MetadataRequest,
    MetadataResponse,
    MetadataResponseBroker,
    MetadataResponsePartition,
    MetadataResponseTopic,
)
from storage.errors import StorageError, TopicExists, UnknownPartition, UnknownTopic
from storage.log_manager import TopicMeta, validate_topic_name


def _topic_response(rctx: RequestContext, meta: TopicMeta) -> MetadataResponseTopic:
    node = rctx.broker.config.node_id
    topics = rctx.broker.topics
    partitions = []
    for idx in range(meta.partition_count):
        try:
            state = topics.state(meta, topics.logs.partition(meta.name, idx))
        except (UnknownTopic, UnknownPartition):
            partitions.append(
                MetadataResponsePartition(
                    error_code=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                    partition_index=idx,
                    leader_id=node,
                    leader_epoch=-1,
                    replica_nodes=(node,),
                    isr_nodes=(node,),
                )
            )
            continue
        partitions.append(
            MetadataResponsePartition(
                error_code=ErrorCode.NONE,
                partition_index=idx,
                leader_id=state.leader_id,
                leader_epoch=state.leader_epoch,
                replica_nodes=state.replicas,
                isr_nodes=state.isr,
            )
        )
    return MetadataResponseTopic(
        error_code=ErrorCode.NONE,
        name=meta.name,
        topic_id=meta.topic_id,
        is_internal=meta.name in INTERNAL_TOPICS,
        partitions=tuple(partitions),
    )


def _cluster_topic(cache: MetadataCache, record: TopicRecord) -> MetadataResponseTopic:
    """A topic's entry from the cluster's cache (built once per cache version)."""
    return cache.memo(
        ("metadata_topic", record.name), partial(_build_cluster_topic, cache, record)
    )


def _build_cluster_topic(
    cache: MetadataCache, record: TopicRecord
) -> MetadataResponseTopic:
    live = {b.node_id for b in cache.brokers()}
    partitions = []
    for idx in range(record.partitions):
        p = cache.partition(record.name, idx)
        if p is None:  # written after the topic record: not seen yet
            partitions.append(
                MetadataResponsePartition(
                    error_code=ErrorCode.LEADER_NOT_AVAILABLE,
                    partition_index=idx,
                    leader_id=NO_LEADER,
                    leader_epoch=-1,
                )
            )
            continue
        partitions.append(
            MetadataResponsePartition(
                error_code=ErrorCode.NONE
                if p.online
                else ErrorCode.LEADER_NOT_AVAILABLE,
                partition_index=idx,
                leader_id=p.leader,
                leader_epoch=p.leader_epoch,
                replica_nodes=p.replicas,
                isr_nodes=p.isr,
                offline_replicas=tuple(r for r in p.replicas if r not in live),
            )
        )
    return MetadataResponseTopic(
        error_code=ErrorCode.NONE,
        name=record.name,
        topic_id=record.topic_id.bytes,
        is_internal=record.internal or record.name in INTERNAL_TOPICS,
        partitions=tuple(partitions),
    )


def _missing(
    name: str | None, code: ErrorCode, topic_id: bytes = ZERO_UUID
) -> MetadataResponseTopic:
    return MetadataResponseTopic(error_code=code, name=name, topic_id=topic_id)


@handler(api_key=3, name="metadata", max_version=13)
def metadata(rctx: RequestContext, request: MetadataRequest) -> object:
    ctx = rctx.broker
    version = rctx.api_version
    view = ctx.cluster
    brokers = tuple(
        MetadataResponseBroker(node_id=b.node_id, host=e.host, port=e.port, rack=b.rack)
        for b in view.brokers()
        if (e := b.endpoint(rctx.listener)) is not None
    )
    cache = ctx.topics.cache
    topics: list[MetadataResponseTopic | str] = []  # a name: auto-created below
    creating: dict[str, NewTopic] = {}
    wanted = request.topics
    if wanted is None or (version == 0 and not wanted):
        topics = (
            [_topic_response(rctx, meta) for meta in ctx.topics.logs.topics()]
            if cache is None
            else [_cluster_topic(cache, r) for r in cache.topics()]
        )
    else:
        allow_create = ctx.config.auto_create_topics and (
            version < 4 or request.allow_auto_topic_creation
        )
        budget = ctx.config.auto_create_topics_per_request
        partitions = ctx.config.default_partitions
        for t in wanted:
            if cache is not None:
                record = (
                    cache.topic(t.name)
                    if t.name is not None
                    else _by_id(cache, t.topic_id)
                )
                if record is not None:
                    topics.append(_cluster_topic(cache, record))
                    continue
                if t.name is None:
                    topics.append(
                        _missing(None, ErrorCode.UNKNOWN_TOPIC_ID, t.topic_id)
                    )
                    continue
            elif t.name is None:
                meta = ctx.topics.find_by_id(t.topic_id)
                if meta is None:
                    topics.append(
                        _missing(None, ErrorCode.UNKNOWN_TOPIC_ID, t.topic_id)
                    )
                else:
                    topics.append(_topic_response(rctx, meta))
                continue
            meta = ctx.topics.find(t.name) if cache is None else None
            if meta is not None:
                topics.append(_topic_response(rctx, meta))
                continue
            try:
                validate_topic_name(t.name)
            except StorageError:
                topics.append(_missing(t.name, ErrorCode.INVALID_TOPIC_EXCEPTION))
                continue
            if not allow_create:
                topics.append(_missing(t.name, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION))
                continue
            if t.name not in creating:
                if len(creating) >= budget:
                    ctx.metrics.error(
                        "metadata", ErrorCode.UNKNOWN_TOPIC_OR_PARTITION.name
                    )
                    topics.append(
                        _missing(t.name, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
                    )
                    continue
                creating[t.name] = NewTopic(t.name, partitions)
            topics.append(t.name)

    topic_ops = version >= 8 and request.include_topic_authorized_operations
    cluster_ops = 8 <= version <= 10 and request.include_cluster_authorized_operations

    def response() -> MetadataResponse:
        answer = MetadataResponse(
            brokers=brokers,
            cluster_id=view.cluster_id,
            controller_id=view.controller_id,
            topics=tuple(t for t in topics if not isinstance(t, str)),
        )
        return _with_operations(rctx, answer, topic_ops, cluster_ops)

    if not creating:
        # authorisation filters objects; authorized operations depend on the caller
        if cache is None or ctx.security.enforces or topic_ops or cluster_ops:
            return response()
        # the same request against the same cache answers the same bytes
        key = (
            "metadata_encoded",
            version,
            rctx.listener,
            None if wanted is None else tuple((t.name, t.topic_id) for t in wanted),
        )
        return cache.memo(key, lambda: encode_response_body(3, version, response()))

    async def auto_create() -> MetadataResponse:
        created = await ctx.topics.create_topics(list(creating.values()), reason="auto")
        answers = {
            t.name: _created(rctx, t.name, result)
            for t, result in zip(creating.values(), created, strict=True)
        }
        topics[:] = [answers[t] if isinstance(t, str) else t for t in topics]
        return response()

    return Deferred(auto_create)


def _created(
    rctx: RequestContext, name: str, result: TopicMeta | StorageError
) -> MetadataResponseTopic:
    """A topic's entry after trying to auto-create it."""
    cache = rctx.broker.topics.cache
    if cache is not None and (
        isinstance(result, TopicExists) or not isinstance(result, StorageError)
    ):
        record = cache.topic(name)  # created, by us or by another request
        if record is not None:
            return _cluster_topic(cache, record)
        return _missing(name, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
    if isinstance(result, TopicExists):
        meta = rctx.broker.topics.find(name)  # another request created it
        if meta is not None:
            return _topic_response(rctx, meta)
        return _missing(name, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
    if isinstance(result, StorageError):
        code = error_code(result)
        rctx.broker.metrics.error("metadata", code.name)
        return _missing(name, code)
    return _topic_response(rctx, result)


def _with_operations(
    rctx: RequestContext, answer: MetadataResponse, topic_ops: bool, cluster_ops: bool
) -> MetadataResponse:
    """The answer with the caller's authorized operations where they were asked for
    (Kafka's bitfields; the response's defaults are the "not requested" sentinel)."""
    if not (topic_ops or cluster_ops):
        return answer
    security, conn = rctx.broker.security, rctx.security
    if topic_ops:
        answer = replace(
            answer,
            topics=tuple(
                replace(
                    t,
                    topic_authorized_operations=security.authorized_operations(
                        conn, ResourceType.TOPIC, t.name
                    ),
                )
                if t.name is not None and t.error_code == ErrorCode.NONE
                else t
                for t in answer.topics
            ),
        )
    if cluster_ops:
        answer = replace(
            answer,
            cluster_authorized_operations=security.authorized_operations(
                conn, ResourceType.CLUSTER, CLUSTER_NAME
            ),
        )
    return answer


def _by_id(cache: MetadataCache, raw_id: bytes) -> TopicRecord | None:
    if raw_id == ZERO_UUID:
        return None
    for record in cache.topics():
        if record.topic_id.bytes == raw_id:
            return record
    return None
