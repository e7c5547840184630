"""Admin routes for topics: every topic, or one, with its partitions' offsets and sizes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from broker.admin.server import HttpRequest, HttpResponse, route

if TYPE_CHECKING:
    from broker.context import BrokerContext


@route("GET", "/v1/topics")
def _topics(ctx: BrokerContext, request: HttpRequest) -> HttpResponse:
    if not ctx.ready:
        return HttpResponse.error(503, "starting")
    topics = ctx.topics_
    if topics is None:
        return HttpResponse.json([])
    return HttpResponse.json([topics.summary(name) for name in topics.names()])


@route("GET", "/v1/topics/{name}")
def _topic(ctx: BrokerContext, request: HttpRequest) -> HttpResponse:
    if not ctx.ready:
        return HttpResponse.error(503, "starting")
    topics = ctx.topics_
    summary = None if topics is None else topics.summary(request.params["name"])
    if summary is None:
        return HttpResponse.error(404, "unknown topic")
    return HttpResponse.json(summary)
