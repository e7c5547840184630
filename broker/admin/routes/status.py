"""Admin routes for the broker's status: readiness and the node's listeners."""

from __future__ import annotations

from typing import TYPE_CHECKING

from broker.admin.server import HttpRequest, HttpResponse, route

if TYPE_CHECKING:
    from broker.context import BrokerContext


@route("GET", "/v1/status/ready", public=True)
def _ready(ctx: BrokerContext, request: HttpRequest) -> HttpResponse:
    if ctx.ready and not ctx.shutting_down:
        return HttpResponse.json({"status": "ready"})
    status = "stopping" if ctx.shutting_down else "starting"
    return HttpResponse.json({"status": status}, status=503)


@route("GET", "/v1/brokers", public=True)
def _brokers(ctx: BrokerContext, request: HttpRequest) -> HttpResponse:
    return HttpResponse.json(
        [
            {
                "node_id": ctx.config.node_id,
                "cluster_id": ctx.config.cluster_id,
                "listeners": [b.as_json() for b in ctx.listeners.values()],
                "admin": None
                if ctx.admin_address is None
                else {"host": ctx.admin_address[0], "port": ctx.admin_address[1]},
            }
        ]
    )
