"""Admin API routes for groups: ``GET /v1/groups`` and ``GET /v1/groups/{id}``.

Registered on import with :func:`broker.admin.route` (import this module once, e.g.
from the server, for the routes to exist). The detail view shows state, members,
assignments (decoded for the ``consumer`` protocol), committed offsets and lag per
partition against the high watermark.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import unquote

from broker.admin import HttpRequest, HttpResponse, route
from broker.groups.service import GroupService
from storage.errors import StorageError

if TYPE_CHECKING:
    from broker.context import BrokerContext


def _service(ctx: BrokerContext) -> GroupService | None:
    svc = ctx.groups
    return svc if isinstance(svc, GroupService) else None


@route("GET", "/v1/groups")
def groups(ctx: BrokerContext, request: HttpRequest) -> HttpResponse:
    svc = _service(ctx)
    if svc is None:
        return HttpResponse.error(503, "groups not available")
    return HttpResponse.json(svc.admin_groups())


@route("GET", "/v1/groups/{group_id}")
def group(ctx: BrokerContext, request: HttpRequest) -> HttpResponse:
    svc = _service(ctx)
    if svc is None:
        return HttpResponse.error(503, "groups not available")

    def log_end(topic: str, partition: int) -> int | None:
        try:
            plog = ctx.logs.partition(topic, partition)
            meta = ctx.logs.topic(topic)
        except StorageError:
            return None
        return ctx.high_watermark(plog, meta.config.write_caching)

    view = svc.admin_group(unquote(request.params["group_id"]), log_end)
    if view is None:
        return HttpResponse.error(404, "unknown group")
    return HttpResponse.json(view)
