"""DescribeCluster (key 60), v0–2.

Behaviour: every live broker (on a single node, this node: the whole cluster and
its controller) at its advertised address of the listener the client connected to
(in cluster mode from the watched cache; a broker without that listener is left
out), and the controller's id (-1 while none is elected). Endpoint type 1
(brokers) only; 2 (controllers) gets UNSUPPORTED_ENDPOINT_TYPE. With
``include_cluster_authorized_operations`` the caller's operations on the cluster
as Kafka's bitfield (every supported one when the authorizer is off), else
Kafka's "not requested" sentinel (INT32 min).
Version notes: flexible from v0; v1 endpoint type; v2 fenced brokers.
"""

from __future__ import annotations

from broker.net.dispatch import handler
from broker.net.request import RequestContext
from broker.security.acl_binding import CLUSTER_NAME, ResourceType
from protocol.error_codes import ErrorCode
from protocol.messages.describe_cluster import (
    AUTHORIZED_OPERATIONS_OMITTED,
    DescribeClusterBroker,
    DescribeClusterRequest,
    DescribeClusterResponse,
)

ENDPOINT_BROKERS = 1


@handler(api_key=60, name="describe_cluster", max_version=2)
def describe_cluster(
    rctx: RequestContext, request: DescribeClusterRequest
) -> DescribeClusterResponse:
    ctx = rctx.broker
    if rctx.api_version >= 1 and request.endpoint_type != ENDPOINT_BROKERS:
        ctx.metrics.error("describe_cluster", ErrorCode.UNSUPPORTED_ENDPOINT_TYPE.name)
        return DescribeClusterResponse(
            error_code=ErrorCode.UNSUPPORTED_ENDPOINT_TYPE,
            error_message="only broker endpoints are served",
            endpoint_type=request.endpoint_type,
            cluster_id=ctx.cluster.cluster_id,
        )
    view = ctx.cluster
    operations = (
        ctx.security.authorized_operations(
            rctx.security, ResourceType.CLUSTER, CLUSTER_NAME
        )
        if request.include_cluster_authorized_operations
        else AUTHORIZED_OPERATIONS_OMITTED
    )
    return DescribeClusterResponse(
        error_code=ErrorCode.NONE,
        error_message=None,
        endpoint_type=ENDPOINT_BROKERS,
        cluster_id=view.cluster_id,
        controller_id=view.controller_id,
        brokers=tuple(
            DescribeClusterBroker(
                broker_id=b.node_id, host=e.host, port=e.port, rack=b.rack
            )
            for b in view.brokers()
            if (e := b.endpoint(rctx.listener)) is not None
        ),
        cluster_authorized_operations=operations,
    )
