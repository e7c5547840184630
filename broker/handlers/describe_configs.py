"""DescribeConfigs (key 32), v0–4.

Behaviour: topic resources (type 2) list every topic config with its effective
value and source: DYNAMIC_TOPIC_CONFIG (1) for the topic's own overrides,
DYNAMIC_BROKER_CONFIG (2) / DYNAMIC_DEFAULT_BROKER_CONFIG (3) for dynamic broker
defaults (``log.retention.ms``, ...), STATIC_BROKER_CONFIG (4) for ``--set`` topic
defaults, DEFAULT_CONFIG (5) otherwise; ``synonyms`` (v1+, when
``include_synonyms``) list the values in that order, as Kafka does. Broker resources
(type 4) named by this node's id list the dynamic broker configs (writable) and the
static broker settings (``read_only``; secrets ``is_sensitive`` with no value); the
name "" lists the cluster-wide dynamic defaults that are set; in cluster mode
another broker's id lists what the cluster holds for it. ``configuration_keys``
filters. BROKER_LOGGER resources (type 8) named by this node's id list its loggers
and their levels (:mod:`broker.configs.loggers`); any other name -> INVALID_REQUEST,
in cluster mode too (Kafka answers for its own loggers only). Unknown topic ->
UNKNOWN_TOPIC_OR_PARTITION; another node id on a single node or a name that is not
an id -> INVALID_REQUEST; other resource types -> INVALID_REQUEST. The static
settings include the ``inter.broker.protocol.version`` and ``delete.topic.enable``
that admin tools (Kafka UI) read to pick features. See
:mod:`broker.configs.describe`.
Version notes: v1 sources and synonyms; v3 types and documentation; v4 flexible.
"""

from __future__ import annotations

from broker.config import BrokerConfig
from broker.configs.describe import Entry, broker_entries, topic_entries
from broker.configs.keys import DEFAULT_SCOPE
from broker.configs.loggers import check_broker_id, logger_entries
from broker.configs.ops import ConfigRefused
from broker.net.dispatch import handler
from broker.net.request import RequestContext
from protocol.error_codes import ErrorCode
from protocol.messages.describe_configs import (
    DescribeConfigsRequest,
    DescribeConfigsResourceResult,
    DescribeConfigsResponse,
    DescribeConfigsResult,
    DescribeConfigsSynonym,
)

TOPIC, BROKER, BROKER_LOGGER = 2, 4, 8


def _static_settings(config: BrokerConfig) -> dict[str, str]:
    """The broker settings DescribeConfigs shows read-only (static)."""
    return {
        "broker.id": str(config.node_id),
        "node.id": str(config.node_id),
        "log.dirs": str(config.data_dir),
        "auto.create.topics.enable": str(config.auto_create_topics).lower(),
        "num.partitions": str(config.default_partitions),
        "default.replication.factor": str(
            1 if config.cluster is None else config.cluster.default_replication_factor
        ),
        "connections.max.idle.ms": str(config.connections_max_idle_ms),
        "socket.request.max.bytes": str(config.max_request_size),
        "queued.max.request.bytes": str(config.max_inflight_bytes),
        "max.connections": str(config.max_connections),
        # What admin tools read to pick features: Kafka UI takes the broker's
        # version from this key (else "1.0-UNKNOWN": no client quotas page, no
        # config documentation) and offers topic deletion only when the next is
        # true. The protocol level matches the API versions served (Kafka 3.9).
        "inter.broker.protocol.version": "3.9-IV0",
        "delete.topic.enable": "true",
        "log.retention.check.interval.ms": str(config.log_retention_check_interval_ms),
    }


def _result(
    entry: Entry, include_synonyms: bool, include_documentation: bool
) -> DescribeConfigsResourceResult:
    synonyms: tuple[DescribeConfigsSynonym, ...] = ()
    if include_synonyms:
        synonyms = tuple(
            DescribeConfigsSynonym(name=s.name, value=s.value, source=s.source)
            for s in entry.synonyms
        )
    return DescribeConfigsResourceResult(
        name=entry.name,
        value=entry.value,
        read_only=entry.read_only,
        is_default=entry.is_default,
        config_source=entry.source,
        is_sensitive=entry.sensitive,
        synonyms=synonyms,
        config_type=entry.config_type,
        documentation=entry.documentation if include_documentation else None,
    )


@handler(api_key=32, name="describe_configs", max_version=4)
def describe_configs(
    rctx: RequestContext, request: DescribeConfigsRequest
) -> DescribeConfigsResponse:
    ctx = rctx.broker
    dynamic = ctx.configs
    results = []
    for res in request.resources:
        keys = None if res.configuration_keys is None else set(res.configuration_keys)

        def fail(
            code: ErrorCode,
            message: str,
            rtype: int = res.resource_type,
            rname: str = res.resource_name,
        ) -> DescribeConfigsResult:
            ctx.metrics.error("describe_configs", code.name)
            return DescribeConfigsResult(
                error_code=code,
                error_message=message,
                resource_type=rtype,
                resource_name=rname,
            )

        if res.resource_type == TOPIC:
            meta = ctx.topics.find(res.resource_name)
            if meta is None:
                results.append(
                    fail(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "unknown topic")
                )
                continue
            entries = topic_entries(meta.config.overrides, dynamic)
        elif res.resource_type == BROKER:
            name = res.resource_name
            if name == "":
                scope = DEFAULT_SCOPE
            elif name.isdigit() and (
                int(name) == ctx.config.node_id or dynamic.cluster
            ):
                scope = str(int(name))
            else:
                results.append(fail(ErrorCode.INVALID_REQUEST, "unknown broker id"))
                continue
            entries = broker_entries(scope, dynamic, _static_settings(ctx.config))
        elif res.resource_type == BROKER_LOGGER:
            try:
                check_broker_id(res.resource_name, ctx.config.node_id)
            except ConfigRefused as e:
                results.append(fail(e.code, e.message))
                continue
            entries = logger_entries()
        else:
            results.append(fail(ErrorCode.INVALID_REQUEST, "unsupported resource type"))
            continue
        results.append(
            DescribeConfigsResult(
                error_code=ErrorCode.NONE,
                error_message=None,
                resource_type=res.resource_type,
                resource_name=res.resource_name,
                configs=tuple(
                    _result(e, request.include_synonyms, request.include_documentation)
                    for e in entries
                    if keys is None or e.name in keys
                ),
            )
        )
    return DescribeConfigsResponse(results=tuple(results))
