"""The admin API's routes, one module per concept; :func:`build_routes` adds them all."""

from __future__ import annotations

from broker.admin.routes import (
    cluster,
    groups,
    metrics,
    security,
    snapshots,
    status,
    topics,
    transactions,
)
from broker.admin.server import RouteTable


def build_routes(routes: RouteTable) -> None:
    """Add every route of the broker's admin API to ``routes``, in matching order."""
    status.register(routes)
    cluster.register(routes)
    topics.register(routes)
    metrics.register(routes)
    groups.register(routes)
    snapshots.register(routes)
    security.register(routes)
    transactions.register(routes)
