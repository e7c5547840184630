"""Admin routes for the broker's status: readiness and the node's listeners."""

from __future__ import annotations

from broker.admin.server import AdminView, HttpRequest, HttpResponse, RouteTable


def _ready(view: AdminView, request: HttpRequest) -> HttpResponse:
    if view.runtime.ready and not view.runtime.shutting_down:
        return HttpResponse.json({"status": "ready"})
    status = "stopping" if view.runtime.shutting_down else "starting"
    return HttpResponse.json({"status": status}, status=503)


def _brokers(view: AdminView, request: HttpRequest) -> HttpResponse:
    return HttpResponse.json(
        [
            {
                "node_id": view.config.node_id,
                "cluster_id": view.config.cluster_id,
                "listeners": [b.as_json() for b in view.runtime.listeners.values()],
                "admin": None
                if view.runtime.admin_address is None
                else {
                    "host": view.runtime.admin_address[0],
                    "port": view.runtime.admin_address[1],
                },
            }
        ]
    )


def register(routes: RouteTable) -> None:
    """Add this module's routes to ``routes``."""
    routes.add("GET", "/v1/status/ready", _ready, public=True)
    routes.add("GET", "/v1/brokers", _brokers, public=True)
