"""One connection's security state: its protocol, SASL progress and principal.

The principal is the SASL user, or the client certificate's CN on an SSL listener,
or ``ANONYMOUS`` on a listener that does not authenticate. Before SASL
authentication only ApiVersions and the SASL APIs may be sent (:data:`PRE_AUTH_APIS`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from broker.security.sasl import SaslAuthenticator, SaslState

ANONYMOUS: Final = "ANONYMOUS"
# What an unauthenticated client on a SASL listener may send: ApiVersions,
# SaslHandshake, SaslAuthenticate (Kafka's SaslServerAuthenticator does the same).
PRE_AUTH_APIS: Final = frozenset({18, 17, 36})


@dataclass(slots=True, kw_only=True, eq=False)
class ConnectionSecurity:
    """One connection's protocol, SASL progress and principal."""

    protocol: str
    peer_host: str
    sasl: SaslAuthenticator | None = None
    tls_principal: str | None = None

    @property
    def uses_sasl(self) -> bool:
        return self.sasl is not None

    @property
    def authenticated(self) -> bool:
        """Whether the client may send any request (not only the SASL ones)."""
        return self.sasl is None or self.sasl.authenticated

    @property
    def principal(self) -> str | None:
        """The user this connection acts as.

        None before SASL authentication; ``ANONYMOUS`` (Kafka's name) on a listener
        that does not authenticate, so ``super.users=User:ANONYMOUS`` can trust one.
        """
        if self.sasl is not None:
            return self.sasl.user if self.sasl.authenticated else None
        return self.tls_principal or ANONYMOUS

    @property
    def auth_failed(self) -> bool:
        """Whether SASL authentication failed (the connection closes after the answer)."""
        return self.sasl is not None and self.sasl.state is SaslState.FAILED

    def may_send(self, api_key: int) -> bool:
        """Whether a request of this API key is allowed in the current state."""
        return self.authenticated or api_key in PRE_AUTH_APIS
