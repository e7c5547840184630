"""CreateTopics (key 19), v0–7.

Behaviour: creates each topic with its partition count (-1 = num.partitions) and
config overrides (Kafka names, validated by storage). Per topic:
TOPIC_ALREADY_EXISTS, INVALID_PARTITIONS (< 1 other than -1),
INVALID_REPLICATION_FACTOR (anything but -1 or 1: one node), INVALID_REPLICA_ASSIGNMENT
(manual assignments naming another broker), INVALID_CONFIG, INVALID_TOPIC_EXCEPTION;
duplicate names in one request -> INVALID_REQUEST for each; POLICY_VIOLATION for a
topic that would take the request past ``ailurus.max.partitions.per.request`` or the
broker past ``ailurus.max.partitions``. ``validate_only`` checks everything and
creates nothing. The topics are created in a worker thread, so a large create does
not stall other clients.

Cluster mode: the controller places the replicas (replication factor -1 = the
cluster's default) or takes the manual assignment, and refuses with Kafka's codes
(INVALID_REPLICATION_FACTOR above the live brokers, INVALID_REPLICA_ASSIGNMENT,
TOPIC_ALREADY_EXISTS, ...); the answer comes once this broker holds the topic
(REQUEST_TIMED_OUT after the cluster's request timeout).
Version notes: v1 validate_only and error messages; v5 flexible, returns the
partition count, replication factor and configs; v7 topic id.
"""

from __future__ import annotations

from collections import Counter

from broker.configs.describe import topic_entries
from broker.net.dispatch import handler
from broker.net.request import Deferred, RequestContext
from broker.topics.errors import error_code
from broker.topics.service import NewTopic
from protocol.error_codes import ErrorCode
from protocol.messages.create_topics import (
    CreatableTopicConfigs,
    CreatableTopicResult,
    CreateTopicsRequest,
    CreateTopicsResponse,
)
from storage.config import TopicConfig
from storage.errors import StorageError
from storage.log_manager import validate_topic_name


@handler(api_key=19, name="create_topics", max_version=7)
def create_topics(rctx: RequestContext, request: CreateTopicsRequest) -> object:
    ctx = rctx.broker
    cache = ctx.topics.cache  # None: a single node
    counts = Counter(t.name for t in request.topics)
    results: list[CreatableTopicResult | None] = []
    wanted: list[tuple[int, NewTopic]] = []  # (index in results, topic)
    requested = 0
    for t in request.topics:

        def fail(
            code: ErrorCode, message: str, name: str = t.name
        ) -> CreatableTopicResult:
            ctx.metrics.error("create_topics", code.name)
            return CreatableTopicResult(
                name=name, error_code=code, error_message=message
            )

        if counts[t.name] > 1:
            results.append(
                fail(ErrorCode.INVALID_REQUEST, "duplicate topic in request")
            )
            continue
        partitions = t.num_partitions
        assignment = None
        if t.assignments:
            partitions = len(t.assignments)
            node = ctx.config.node_id
            assignment = tuple(
                tuple(a.broker_ids)
                for a in sorted(t.assignments, key=lambda a: a.partition_index)
            )
            if cache is None and any(
                set(a.broker_ids) != {node} for a in t.assignments
            ):
                results.append(
                    fail(
                        ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                        f"only broker {node} exists",
                    )
                )
                continue
        elif partitions == -1:
            partitions = ctx.config.default_partitions
        if partitions < 1:
            results.append(
                fail(ErrorCode.INVALID_PARTITIONS, "partitions must be >= 1")
            )
            continue
        if cache is not None:
            live = len(cache.brokers())
            if not t.assignments and (
                t.replication_factor == 0
                or t.replication_factor < -1
                or t.replication_factor > live
            ):
                results.append(
                    fail(
                        ErrorCode.INVALID_REPLICATION_FACTOR,
                        f"replication factor {t.replication_factor}: "
                        f"{live} brokers are live",
                    )
                )
                continue
        elif t.replication_factor not in (-1, 1) and not t.assignments:
            results.append(
                fail(
                    ErrorCode.INVALID_REPLICATION_FACTOR, "replication factor must be 1"
                )
            )
            continue
        configs = {c.name: c.value for c in t.configs if c.value is not None}
        try:
            validate_topic_name(t.name)
            if ctx.topics.find(t.name) is not None or (
                cache is not None and cache.topic(t.name) is not None
            ):
                results.append(fail(ErrorCode.TOPIC_ALREADY_EXISTS, f"{t.name} exists"))
                continue
            config = TopicConfig.from_overrides(configs, ctx.topics.logs.defaults)
        except StorageError as e:
            results.append(fail(error_code(e), str(e)))
            continue
        refused = ctx.topics.request_room(
            requested, partitions
        ) or ctx.topics.partition_room(requested + partitions)
        if refused is not None:
            results.append(fail(ErrorCode.POLICY_VIOLATION, refused))
            continue
        requested += partitions
        if request.validate_only:
            results.append(_result(rctx, t.name, b"\x00" * 16, partitions, config))
            continue
        wanted.append(
            (
                len(results),
                NewTopic(
                    t.name,
                    partitions,
                    configs,
                    replication_factor=t.replication_factor,
                    assignment=assignment,
                ),
            )
        )
        results.append(None)
    if not wanted:
        return _response(results)

    async def create() -> CreateTopicsResponse:
        created = await ctx.topics.create_topics(
            [topic for _, topic in wanted], reason="create_topics"
        )
        for (i, topic), meta in zip(wanted, created, strict=True):
            if isinstance(meta, StorageError):
                code = error_code(meta)
                ctx.metrics.error("create_topics", code.name)
                results[i] = CreatableTopicResult(
                    name=topic.name, error_code=code, error_message=str(meta)
                )
            else:
                results[i] = _result(
                    rctx, topic.name, meta.topic_id, topic.partitions, meta.config
                )
        return _response(results)

    return Deferred(create)


def _response(results: list[CreatableTopicResult | None]) -> CreateTopicsResponse:
    return CreateTopicsResponse(topics=tuple(r for r in results if r is not None))


def _result(
    rctx: RequestContext,
    name: str,
    topic_id: bytes,
    partitions: int,
    config: TopicConfig,
) -> CreatableTopicResult:
    # sources as DescribeConfigs reports them (dynamic broker defaults included)
    configs = [
        CreatableTopicConfigs(
            name=e.name,
            value=e.value,
            read_only=False,
            config_source=e.source,
            is_sensitive=False,
        )
        for e in topic_entries(config.overrides, rctx.broker.configs)
    ]
    cache = rctx.broker.topics.cache
    replicas = None if cache is None else cache.partition(name, 0)
    return CreatableTopicResult(
        name=name,
        topic_id=topic_id,
        error_code=ErrorCode.NONE,
        error_message=None,
        num_partitions=partitions,
        replication_factor=1 if replicas is None else len(replicas.replicas),
        configs=tuple(configs),
    )
