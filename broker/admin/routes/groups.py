"""Admin API routes for groups: ``GET /v1/groups`` and ``GET /v1/groups/{id}``,
and the consumer-group lag lines of ``GET /metrics``.

Added to the admin API's route table by :func:`register`. The detail view shows state, members,
assignments (decoded for the ``consumer`` protocol), committed offsets and lag per
partition against the high watermark consumers see, or with
``?isolation=read_committed`` against the last stable offset (what a read_committed
consumer can reach: records of open transactions are not counted; a group does not
say its consumers' isolation level, so the caller picks). Both reveal group data, so like
every non-public admin route they need the admin token when one is set.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import unquote

from broker.admin.server import AdminView, HttpRequest, HttpResponse, RouteTable
from broker.context import BrokerContext
from broker.groups.service import GroupService
from broker.metrics import escape_label
from storage.errors import StorageError


def _service(view: AdminView) -> GroupService | None:
    return None if view.ctx is None else view.ctx.groups


def _log_end(
    ctx: BrokerContext, topic: str, partition: int, *, committed: bool = False
) -> int | None:
    """The high watermark consumers see, or with ``committed`` the last stable
    offset (None for a topic or partition now gone)."""
    try:
        plog = ctx.topics.logs.partition(topic, partition)
        meta = ctx.topics.logs.topic(topic)
    except StorageError:
        return None
    state = ctx.topics.state(meta, plog)
    return state.last_stable_offset if committed else state.high_watermark


def groups(view: AdminView, request: HttpRequest) -> HttpResponse:
    svc = _service(view)
    if svc is None:
        return HttpResponse.error(503, "groups not available")
    return HttpResponse.json(svc.admin_groups())


def group(view: AdminView, request: HttpRequest) -> HttpResponse:
    ctx = view.ctx
    if ctx is None:
        return HttpResponse.error(503, "groups not available")
    isolation = request.query.get("isolation", ["read_uncommitted"])[-1]
    if isolation not in ("read_uncommitted", "read_committed"):
        return HttpResponse.error(
            400, "isolation must be read_uncommitted or read_committed"
        )
    committed = isolation == "read_committed"
    found = ctx.groups.admin_group(
        unquote(request.params["group_id"]),
        lambda t, p: _log_end(ctx, t, p, committed=committed),
    )
    if found is None:
        return HttpResponse.error(404, "unknown group")
    return HttpResponse.json({**found, "isolation": isolation})


def lag_metric_lines(view: AdminView) -> Iterator[str]:
    """``ailurus_consumer_group_lag{group,topic,partition}``: high watermark minus
    committed offset (never negative), for every committed offset of a partition
    that still exists."""
    yield (
        "# HELP ailurus_consumer_group_lag Records between a group's committed "
        "offset and the high watermark."
    )
    yield "# TYPE ailurus_consumer_group_lag gauge"
    ctx = view.ctx
    if ctx is None or not view.runtime.ready:
        return
    for group_id, topic, partition, offset in ctx.groups.committed_offsets():
        end = _log_end(ctx, topic, partition)
        if end is None:
            continue
        yield (
            f'ailurus_consumer_group_lag{{group="{escape_label(group_id)}",'
            f'topic="{escape_label(topic)}",partition="{partition}"}} '
            f"{max(end - offset, 0)}"
        )


def register(routes: RouteTable) -> None:
    """Add this module's routes to ``routes``."""
    routes.add("GET", "/v1/groups", groups)
    routes.add("GET", "/v1/groups/{group_id}", group)
