"""IncrementalAlterConfigs (key 44), v0–1 (KIP-339).

Behaviour: edits a resource's dynamic configs key by key: SET (0), DELETE (1),
APPEND (2) and SUBTRACT (3), the last two on list-type keys only
(``cleanup.policy``, ``*.replication.throttled.replicas``, ``log.cleanup.policy``;
INVALID_CONFIG otherwise). TOPIC (2) and BROKER (4, name = a node id or "" for the
cluster-wide default) resources, applied live and persisted; errors per resource as
AlterConfigs (key 33) answers them. BROKER_LOGGER (8, name = this node's id): SET
and DELETE a logger's level, live and not persisted (KIP-412, see
:mod:`broker.configs.loggers`). ``validate_only`` checks and changes nothing.
See :mod:`broker.configs.ops` and :mod:`broker.topics.configs`.
Version notes: v1 flexible.
"""

from __future__ import annotations

from collections import Counter

from broker.configs.ops import Change, ConfigRefused
from broker.net.dispatch import handler
from broker.net.request import Deferred, RequestContext
from broker.topics.configs import ConfigAlterer
from protocol.error_codes import ErrorCode
from protocol.messages.incremental_alter_configs import (
    AlterConfigsResourceResponse,
    IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse,
)


@handler(api_key=44, name="incremental_alter_configs", max_version=1)
def incremental_alter_configs(
    rctx: RequestContext, request: IncrementalAlterConfigsRequest
) -> object:
    ctx = rctx.broker
    alterer = ConfigAlterer(ctx.topics, ctx.configs, ctx.config.node_id)
    counts = Counter((r.resource_type, r.resource_name) for r in request.resources)

    async def run() -> IncrementalAlterConfigsResponse:
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
                    [Change(c.name, c.config_operation, c.value) for c in r.configs],
                    incremental=True,
                    validate_only=request.validate_only,
                )
            except ConfigRefused as e:
                code, message = e.code, e.message
                ctx.metrics.error("incremental_alter_configs", code.name)
            out.append(
                AlterConfigsResourceResponse(
                    error_code=code,
                    error_message=message,
                    resource_type=r.resource_type,
                    resource_name=r.resource_name,
                )
            )
        return IncrementalAlterConfigsResponse(throttle_time_ms=0, responses=tuple(out))

    return Deferred(run)
