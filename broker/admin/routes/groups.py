"""Admin API routes for groups: ``GET /v1/groups`` and ``GET /v1/groups/{id}``,
and the consumer-group lag lines of ``GET /metrics``.

Registered on import with :func:`broker.admin.server.route` (import this module once, e.g.
from the server, for the routes to exist). The detail view shows state, members,
assignments (decoded for the ``consumer`` protocol), committed offsets and lag per
partition against the high watermark consumers see. Both reveal group data, so like
every non-public admin route they need the admin token when one is set.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING
from urllib.parse import unquote

from broker.admin.server import HttpRequest, HttpResponse, route
from broker.groups.service import GroupService
from broker.metrics import escape_label
from storage.errors import StorageError

if TYPE_CHECKING:
    from broker.context import BrokerContext


def _service(ctx: BrokerContext) -> GroupService | None:
    svc = ctx.groups
    return svc if isinstance(svc, GroupService) else None


def _log_end(ctx: BrokerContext, topic: str, partition: int) -> int | None:
    """The high watermark consumers see (None for a topic or partition now gone)."""
    try:
        plog = ctx.topics.logs.partition(topic, partition)
        meta = ctx.topics.logs.topic(topic)
    except StorageError:
        return None
    return ctx.high_watermark(plog, meta.config.write_caching)


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
    view = svc.admin_group(
        unquote(request.params["group_id"]), lambda t, p: _log_end(ctx, t, p)
    )
    if view is None:
        return HttpResponse.error(404, "unknown group")
    return HttpResponse.json(view)


def lag_metric_lines(ctx: BrokerContext) -> Iterator[str]:
    """``ailurus_consumer_group_lag{group,topic,partition}``: high watermark minus
    committed offset (never negative), for every committed offset of a partition
    that still exists."""
    yield (
        "# HELP ailurus_consumer_group_lag Records between a group's committed "
        "offset and the high watermark."
    )
    yield "# TYPE ailurus_consumer_group_lag gauge"
    svc = _service(ctx)
    if svc is None or not ctx.ready:
        return
    for group_id, topic, partition, offset in svc.committed_offsets():
        end = _log_end(ctx, topic, partition)
        if end is None:
            continue
        yield (
            f'ailurus_consumer_group_lag{{group="{escape_label(group_id)}",'
            f'topic="{escape_label(topic)}",partition="{partition}"}} '
            f"{max(end - offset, 0)}"
        )
