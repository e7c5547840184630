"""Admin routes for the broker's status: readiness (the brokers and their
listeners are :mod:`broker.admin.routes.cluster`'s ``GET /v1/brokers``)."""

from __future__ import annotations

from broker.admin.server import AdminView, HttpRequest, HttpResponse, RouteTable


def _ready(view: AdminView, request: HttpRequest) -> HttpResponse:
    if view.runtime.ready and not view.runtime.shutting_down:
        return HttpResponse.json({"status": "ready"})
    status = "stopping" if view.runtime.shutting_down else "starting"
    return HttpResponse.json({"status": status}, status=503)


def register(routes: RouteTable) -> None:
    """Add this module's routes to ``routes``."""
    routes.add("GET", "/v1/status/ready", _ready, public=True)
