"""How handlers reach the group and producer services hung on the broker context.

``BrokerContext.groups`` / ``.producers`` are typed loosely by the broker core (it
does not import this package); these helpers narrow them, returning None when the
service is not wired (handlers then answer COORDINATOR_NOT_AVAILABLE).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from broker.groups.service import GroupService
from broker.producers.service import ProducerService

if TYPE_CHECKING:
    from broker.net.request import RequestContext


def group_service(rctx: RequestContext) -> GroupService | None:
    """The broker's group service, if wired."""
    svc = rctx.broker.groups
    return svc if isinstance(svc, GroupService) else None


def producer_service(rctx: RequestContext) -> ProducerService | None:
    """The broker's producer service, if wired."""
    svc = rctx.broker.producers
    return svc if isinstance(svc, ProducerService) else None


def client_host(rctx: RequestContext) -> str:
    """The client's address as Kafka reports it (``/127.0.0.1``)."""
    host = rctx.peer.rsplit(":", 1)[0] if ":" in rctx.peer else rctx.peer
    return "/" + host.strip("[]")
