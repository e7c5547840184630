"""AlterConfigs (key 33), v0–2.

Behaviour: replaces a resource's whole set of dynamic configs with the request's
(keys left out lose their override). TOPIC (2): the topic's overrides, applied live
to its partitions and persisted; BROKER (4, name = a node id or "" for the
cluster-wide default): the dynamic broker configs (``log.retention.ms``, ...).
Per resource: UNKNOWN_TOPIC_OR_PARTITION, INVALID_CONFIG (unknown key, bad value,
static broker config), INVALID_REQUEST (other resource types, BROKER_LOGGER included as in Kafka, whose
AlterConfigs never served it; another broker's id
on a single node, duplicate keys or resources, null values). ``validate_only``
checks and changes nothing. See :mod:`broker.topics.configs`.
Version notes: v1 same as v0; v2 flexible.
"""

from __future__ import annotations

from collections import Counter

from broker.configs.ops import SET, Change, ConfigRefused
from broker.net.dispatch import handler
from broker.net.request import Deferred, RequestContext
from broker.topics.configs import ConfigAlterer
from protocol.error_codes import ErrorCode
from protocol.messages.alter_configs import (
    AlterConfigsRequest,
    AlterConfigsResourceResponse,
    AlterConfigsResponse,
)


@handler(api_key=33, name="alter_configs", max_version=2)
def alter_configs(rctx: RequestContext, request: AlterConfigsRequest) -> object:
    ctx = rctx.broker
    alterer = ConfigAlterer(ctx.topics, ctx.configs, ctx.config.node_id)
    counts = Counter((r.resource_type, r.resource_name) for r in request.resources)

    async def run() -> AlterConfigsResponse:
        out = []
        for r in request.resources:
            code, message = ErrorCode.NONE, None
            try:
                if counts[r.resource_type, r.resource_name] > 1:
                    raise ConfigRefused(
                        ErrorCode.INVALID_REQUEST, "Duplicate resource in request"
                    )
                await alterer.alter(
                    r.resource_type,
                    r.resource_name,
                    [Change(c.name, SET, c.value) for c in r.configs],
                    incremental=False,
                    validate_only=request.validate_only,
                )
            except ConfigRefused as e:
                code, message = e.code, e.message
                ctx.metrics.error("alter_configs", code.name)
            out.append(
                AlterConfigsResourceResponse(
                    error_code=code,
                    error_message=message,
                    resource_type=r.resource_type,
                    resource_name=r.resource_name,
                )
            )
        return AlterConfigsResponse(throttle_time_ms=0, responses=tuple(out))

    return Deferred(run)
