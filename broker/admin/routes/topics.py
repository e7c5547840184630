"""Admin routes for topics: every topic, or one, with its partitions' offsets and sizes."""

from __future__ import annotations

from broker.admin.server import AdminView, HttpRequest, HttpResponse, RouteTable


def _topics(view: AdminView, request: HttpRequest) -> HttpResponse:
    if view.ctx is None or not view.runtime.ready:
        return HttpResponse.error(503, "starting")
    topics = view.ctx.topics
    return HttpResponse.json([topics.summary(name) for name in topics.names()])


def _topic(view: AdminView, request: HttpRequest) -> HttpResponse:
    if view.ctx is None or not view.runtime.ready:
        return HttpResponse.error(503, "starting")
    summary = view.ctx.topics.summary(request.params["name"])
    if summary is None:
        return HttpResponse.error(404, "unknown topic")
    return HttpResponse.json(summary)


def register(routes: RouteTable) -> None:
    """Add this module's routes to ``routes``."""
    routes.add("GET", "/v1/topics", _topics)
    routes.add("GET", "/v1/topics/{name}", _topic)
