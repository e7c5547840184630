"""The admin API's routes, one module per concept.

Importing this package registers every route, in this order.
"""

from broker.admin.routes import groups, metrics, snapshots, status, topics

__all__ = ["groups", "metrics", "snapshots", "status", "topics"]
