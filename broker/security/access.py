"""How handlers reach the security service and the connection's security state.

The broker core types them loosely (``BrokerContext.security``,
``RequestContext.security``) so it need not import this package; these helpers
narrow them, returning None when security is not wired (then nothing is enforced).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from broker.security.service import ConnectionSecurity, SecurityService

if TYPE_CHECKING:
    from broker.net.request import RequestContext


def security_service(rctx: RequestContext) -> SecurityService | None:
    """The broker's security service, if wired."""
    svc = getattr(rctx.broker, "security", None)
    return svc if isinstance(svc, SecurityService) else None


def connection_security(rctx: RequestContext) -> ConnectionSecurity | None:
    """This connection's security state, if wired."""
    conn = getattr(rctx, "security", None)
    return conn if isinstance(conn, ConnectionSecurity) else None
