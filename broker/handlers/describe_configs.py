"""DescribeConfigs (key 32), v0–4.

Behaviour: topic resources (type 2) list every topic config with its effective
value and source: DYNAMIC_TOPIC_CONFIG (1) for the topic's own overrides,
STATIC_BROKER_CONFIG (4) for ``--set`` topic defaults, DEFAULT_CONFIG (5) otherwise;
``configuration_keys`` filters; synonyms (v1+) list the lower-precedence values
when ``include_synonyms``. Broker resources (type 4, name = node id or "") get a
minimal read-only set, with the ``inter.broker.protocol.version`` and
``delete.topic.enable`` that admin tools (Kafka UI) read to pick features. Unknown topic -> UNKNOWN_TOPIC_OR_PARTITION; another node id
-> INVALID_REQUEST; other resource types -> INVALID_REQUEST.
Version notes: v1 sources and synonyms; v3 types and documentation; v4 flexible.
"""

from __future__ import annotations

from broker.config import BrokerConfig
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
from storage.config import DEFAULTS

TOPIC, BROKER = 2, 4
DYNAMIC_TOPIC, STATIC_BROKER, DEFAULT = 1, 4, 5
# ConfigType (v3+): BOOLEAN 1, STRING 2, INT 3, LONG 5, LIST 7
_INT_KEYS = frozenset(
    {
        "segment.bytes",
        "max.message.bytes",
        "index.interval.bytes",
        "segment.index.bytes",
        "min.insync.replicas",
    }
)


def _config_type(key: str, default: str) -> int:
    if default in ("true", "false"):
        return 1
    if key == "cleanup.policy" or key.endswith("throttled.replicas"):
        return 7
    if key in _INT_KEYS:
        return 3
    if default.lstrip("-").isdigit():
        return 5
    if key == "min.cleanable.dirty.ratio":
        return 6
    return 2


def _broker_configs(config: BrokerConfig) -> dict[str, str]:
    return {
        "broker.id": str(config.node_id),
        "node.id": str(config.node_id),
        "log.dirs": str(config.data_dir),
        "auto.create.topics.enable": str(config.auto_create_topics).lower(),
        "num.partitions": str(config.default_partitions),
        "default.replication.factor": "1",
        "message.max.bytes": str(config.message_max_bytes),
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
    }


@handler(api_key=32, name="describe_configs", max_version=4)
def describe_configs(
    rctx: RequestContext, request: DescribeConfigsRequest
) -> DescribeConfigsResponse:
    ctx = rctx.broker
    broker_defaults = ctx.config.topic_defaults
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

        entries: list[DescribeConfigsResourceResult] = []
        if res.resource_type == TOPIC:
            meta = ctx.topics.find(res.resource_name)
            if meta is None:
                results.append(
                    fail(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "unknown topic")
                )
                continue
            overrides = meta.config.overrides
            for key, (value, is_default) in sorted(meta.config.describe().items()):
                if keys is not None and key not in keys:
                    continue
                synonyms = []
                if key in overrides:
                    source = DYNAMIC_TOPIC
                    synonyms.append(
                        DescribeConfigsSynonym(name=key, value=value, source=source)
                    )
                elif key in broker_defaults:
                    source = STATIC_BROKER
                else:
                    source = DEFAULT
                if key in broker_defaults:
                    synonyms.append(
                        DescribeConfigsSynonym(
                            name=key, value=broker_defaults[key], source=STATIC_BROKER
                        )
                    )
                synonyms.append(
                    DescribeConfigsSynonym(
                        name=key, value=DEFAULTS.get(key), source=DEFAULT
                    )
                )
                entries.append(
                    DescribeConfigsResourceResult(
                        name=key,
                        value=value,
                        read_only=False,
                        is_default=is_default,
                        config_source=source,
                        is_sensitive=False,
                        synonyms=tuple(synonyms) if request.include_synonyms else (),
                        config_type=_config_type(key, DEFAULTS.get(key, "")),
                    )
                )
        elif res.resource_type == BROKER:
            if res.resource_name not in ("", str(ctx.config.node_id)):
                results.append(fail(ErrorCode.INVALID_REQUEST, "unknown broker id"))
                continue
            for key, value in sorted(_broker_configs(ctx.config).items()):
                if keys is not None and key not in keys:
                    continue
                entries.append(
                    DescribeConfigsResourceResult(
                        name=key,
                        value=value,
                        read_only=True,
                        is_default=False,
                        config_source=STATIC_BROKER,
                        is_sensitive=False,
                        config_type=_config_type(key, value),
                    )
                )
        else:
            results.append(fail(ErrorCode.INVALID_REQUEST, "unsupported resource type"))
            continue
        results.append(
            DescribeConfigsResult(
                error_code=ErrorCode.NONE,
                error_message=None,
                resource_type=res.resource_type,
                resource_name=res.resource_name,
                configs=tuple(entries),
            )
        )
    return DescribeConfigsResponse(results=tuple(results))
