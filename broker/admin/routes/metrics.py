"""The Prometheus exposition route (``GET /metrics``; docs/metrics.md)."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

from broker.admin.routes.groups import lag_metric_lines
from broker.admin.server import HttpRequest, HttpResponse, route
from broker.metrics import process_metric_lines
from broker.snapshots.service import snapshot_metric_lines

if TYPE_CHECKING:
    from broker.context import BrokerContext


@route("GET", "/metrics")
def _metrics(ctx: BrokerContext, request: HttpRequest) -> HttpResponse:
    return HttpResponse(
        status=200,
        body=ctx.metrics.render(
            itertools.chain(
                () if ctx.topics_ is None else ctx.topics_.metric_lines(),
                lag_metric_lines(ctx),
                snapshot_metric_lines(ctx),
                process_metric_lines(),
            )
        ).encode(),
        content_type="text/plain; version=0.0.4; charset=utf-8",
    )
