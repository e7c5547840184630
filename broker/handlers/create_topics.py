"""CreateTopics (key 19), v0–7.

Behaviour: creates each topic with its partition count (-1 = num.partitions) and
config overrides (Kafka names, validated by storage). Per topic:
TOPIC_ALREADY_EXISTS, INVALID_PARTITIONS (< 1 other than -1),
INVALID_REPLICATION_FACTOR (anything but -1 or 1: one node), INVALID_REPLICA_ASSIGNMENT
(manual assignments naming another broker), INVALID_CONFIG, INVALID_TOPIC_EXCEPTION;
duplicate names in one request -> INVALID_REQUEST for each. ``validate_only`` checks
everything and creates nothing.
Version notes: v1 validate_only and error messages; v5 flexible, returns the
partition count, replication factor and configs; v7 topic id.
"""

from __future__ import annotations

from collections import Counter

from broker.dispatch import RequestContext, handler
from broker.handlers._common import create_topic, error_code, find_topic
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

SOURCE_TOPIC = 1  # DescribeConfigs ConfigSource.TOPIC_CONFIG
SOURCE_DEFAULT = 5  # DEFAULT_CONFIG
SOURCE_STATIC_BROKER = 4  # STATIC_BROKER_CONFIG (--set topic defaults)


@handler(api_key=19, name="create_topics", max_version=7)
def create_topics(
    rctx: RequestContext, request: CreateTopicsRequest
) -> CreateTopicsResponse:
    ctx = rctx.broker
    counts = Counter(t.name for t in request.topics)
    results = []
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
        if t.assignments:
            partitions = len(t.assignments)
            node = ctx.config.node_id
            if any(set(a.broker_ids) != {node} for a in t.assignments):
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
        if t.replication_factor not in (-1, 1) and not t.assignments:
            results.append(
                fail(
                    ErrorCode.INVALID_REPLICATION_FACTOR, "replication factor must be 1"
                )
            )
            continue
        configs = {c.name: c.value for c in t.configs if c.value is not None}
        try:
            validate_topic_name(t.name)
            if find_topic(ctx, t.name) is not None:
                results.append(fail(ErrorCode.TOPIC_ALREADY_EXISTS, f"{t.name} exists"))
                continue
            config = TopicConfig.from_overrides(
                configs, dict(ctx.config.topic_defaults)
            )
            if request.validate_only:
                results.append(_result(rctx, t.name, b"\x00" * 16, partitions, config))
                continue
            meta = create_topic(
                ctx, t.name, partitions, configs, reason="create_topics"
            )
        except StorageError as e:
            results.append(fail(error_code(e), str(e)))
            continue
        results.append(_result(rctx, t.name, meta.topic_id, partitions, meta.config))
    return CreateTopicsResponse(topics=tuple(results))


def _result(
    rctx: RequestContext,
    name: str,
    topic_id: bytes,
    partitions: int,
    config: TopicConfig,
) -> CreatableTopicResult:
    broker_defaults = rctx.broker.config.topic_defaults
    configs = []
    for key, (value, is_default) in sorted(config.describe().items()):
        if not is_default:
            source = SOURCE_TOPIC
        elif key in broker_defaults:
            source = SOURCE_STATIC_BROKER
        else:
            source = SOURCE_DEFAULT
        configs.append(
            CreatableTopicConfigs(
                name=key,
                value=value,
                read_only=False,
                config_source=source,
                is_sensitive=False,
            )
        )
    return CreatableTopicResult(
        name=name,
        topic_id=topic_id,
        error_code=ErrorCode.NONE,
        error_message=None,
        num_partitions=partitions,
        replication_factor=1,
        configs=tuple(configs),
    )
