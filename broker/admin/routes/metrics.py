"""The Prometheus exposition route (``GET /metrics``; docs/metrics.md)."""

from __future__ import annotations

import itertools

from broker.admin.routes.cluster import cluster_metric_lines
from broker.admin.routes.groups import lag_metric_lines
from broker.admin.routes.transactions import metric_lines as txn_metric_lines
from broker.admin.server import AdminView, HttpRequest, HttpResponse, RouteTable
from broker.metrics import process_metric_lines


def _metrics(view: AdminView, request: HttpRequest) -> HttpResponse:
    ctx = view.ctx
    return HttpResponse(
        status=200,
        body=view.metrics.render(
            itertools.chain(
                () if ctx is None else ctx.topics.metric_lines(),
                lag_metric_lines(view),
                txn_metric_lines(view),
                () if ctx is None else ctx.snapshots.metrics.lines(),
                cluster_metric_lines(view),
                process_metric_lines(),
            )
        ).encode(),
        content_type="text/plain; version=0.0.4; charset=utf-8",
    )


def register(routes: RouteTable) -> None:
    """Add this module's routes to ``routes``."""
    routes.add("GET", "/metrics", _metrics)
