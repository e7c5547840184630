"""The broker's security service (one per process, on the broker context).

:class:`SecurityService` holds the user store (the data dir's users file, with the
user rules), the SCRAM credentials and the ACL store (the data dir's files, or etcd
in cluster mode), the authorizer and the failed-login limiter, built from
:class:`~broker.security.settings.SecuritySettings`, and gives
each new connection its :class:`~broker.security.session.ConnectionSecurity` (or
None when there is nothing to check).
"""

from __future__ import annotations

from pathlib import Path

from broker.security.acl import Authorizer, Op, Resource
from broker.security.acl_binding import AclOperation, ResourceType
from broker.security.acl_store import AclStore, FileAclStore
from broker.security.credential_store import CredentialStore, FileCredentials
from broker.security.credentials import UserStore
from broker.security.ratelimit import LoginLimiter
from broker.security.sasl import SaslAuthenticator
from broker.security.session import ConnectionSecurity
from broker.security.settings import SecuritySettings
from broker.security.tls import peer_principal


class SecurityService:
    """Process-wide: users, the authorizer, failed-login limits."""

    def __init__(
        self,
        settings: SecuritySettings,
        *,
        data_dir: Path,
        listeners: tuple[str, ...],
        client_cert_listeners: frozenset[str] = frozenset(),
    ) -> None:
        self.settings = settings
        self.store = UserStore.in_data_dir(data_dir, check_interval_s=1.0)
        self.credentials: CredentialStore = FileCredentials(self.store)
        self.protocols = {name: settings.protocol_of(name) for name in listeners}
        authenticating = any(p.startswith("SASL") for p in self.protocols.values())
        enabled = (
            settings.authorizer
            if settings.authorizer is not None
            else authenticating or bool(client_cert_listeners)
        )
        self.acls: AclStore = FileAclStore.in_data_dir(data_dir)
        self.authorizer = Authorizer(
            enabled=enabled,
            users=self.store,
            super_users=settings.super_users,
            acls=self.acls,
        )
        self.limiter = LoginLimiter(
            max_failures=max(1, settings.login_max_failures),
            host_max_failures=None
            if settings.login_host_max_failures is None
            else max(1, settings.login_host_max_failures),
            window_s=settings.login_window_ms / 1000,
            lockout_s=settings.login_lockout_ms / 1000,
        )

    def use_acls(self, acls: AclStore) -> None:
        """Keep the ACLs in ``acls`` instead of the data dir's file (cluster mode:
        etcd, :mod:`broker.cluster.acls`); called once, before serving."""
        self.acls = acls
        self.authorizer.acls = acls

    def use_credentials(self, credentials: CredentialStore) -> None:
        """Keep the SCRAM credentials in ``credentials`` instead of the data dir's
        users file (cluster mode: etcd, :mod:`broker.cluster.scram`); called once,
        before serving."""
        self.credentials = credentials

    @property
    def enforces(self) -> bool:
        """Whether any connection gets security state to check: some listener
        authenticates (SSL or SASL) or the authorizer is on. Exactly when
        :meth:`connection_for` can return a :class:`ConnectionSecurity`."""
        return self.authorizer.enabled or any(
            proto != "PLAINTEXT" for proto in self.protocols.values()
        )

    @property
    def failed_auth_delay_s(self) -> float:
        return self.settings.failed_auth_delay_ms / 1000

    def protocol(self, listener: str) -> str:
        return self.protocols.get(listener) or self.settings.protocol_of(listener)

    def connection(
        self, listener: str, peer: str, ssl_object: object = None
    ) -> ConnectionSecurity:
        """Security state for a new connection on ``listener``."""
        proto = self.protocol(listener)
        host = peer.rsplit(":", 1)[0] if ":" in peer else peer
        return ConnectionSecurity(
            protocol=proto,
            peer_host=host.strip("[]"),
            sasl=SaslAuthenticator(
                self.credentials, mechanisms=self.settings.mechanisms
            )
            if proto.startswith("SASL")
            else None,
            tls_principal=peer_principal(ssl_object) if proto == "SSL" else None,
        )

    def connection_for(
        self, listener: str, peer: str, ssl_object: object = None
    ) -> ConnectionSecurity | None:
        """Security state for a new connection, or None when there is nothing to
        check (a PLAINTEXT listener with the authorizer off)."""
        if not self.authorizer.enabled and self.protocol(listener) == "PLAINTEXT":
            return None
        return self.connection(listener, peer, ssl_object)

    def allowed(
        self,
        conn: ConnectionSecurity | None,
        op: Op,
        resource: Resource,
        name: str = "",
    ) -> bool:
        """Whether the connection's principal may do ``op`` on the resource."""
        if not self.authorizer.enabled:
            return True
        if conn is None:
            return self.authorizer.allowed(None, op, resource, name)
        return self.authorizer.allowed(
            conn.principal, op, resource, name, conn.peer_host
        )

    def allows(
        self,
        conn: ConnectionSecurity | None,
        op: AclOperation,
        rtype: ResourceType,
        name: str,
    ) -> bool:
        """Whether the connection's principal may do ``op`` (Kafka's codes)."""
        if not self.authorizer.enabled:
            return True
        if conn is None:
            return False
        return self.authorizer.allows(conn.principal, conn.peer_host, op, rtype, name)

    def authorized_operations(
        self, conn: ConnectionSecurity | None, rtype: ResourceType, name: str
    ) -> int:
        """Kafka's authorized-operations bitfield of a resource for the connection's
        principal (every supported operation when authorisation is off)."""
        if conn is None:
            return self.authorizer.authorized_operations(None, "", rtype, name)
        return self.authorizer.authorized_operations(
            conn.principal, conn.peer_host, rtype, name
        )
