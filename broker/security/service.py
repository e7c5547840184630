"""The broker's security service and each connection's security state.

:class:`SecuritySettings` is what the configuration says (Kafka's names in
brackets): the security protocol of each listener (``listener.security.protocol.map``;
a listener named after a protocol, ``sasl_ssl://host:port``, gets that protocol),
enabled SASL mechanisms (``sasl.enabled.mechanisms``), super users (``super.users``,
``User:alice;User:bob``), whether ACLs are enforced (``authorizer.enabled``; default:
on when some listener authenticates its clients), the delay before a failed login is
answered (``connection.failed.authentication.delay.ms``) and the failed-login limits
(``ailurus.login.max.failures`` per user and host,
``ailurus.login.host.max.failures`` per host, ``ailurus.login.window.ms``,
``ailurus.login.lockout.ms``).

:class:`SecurityService` lives on the broker context (one per process): the user
store, the authorizer and the failed-login limiter. :class:`ConnectionSecurity` is
one connection's state: its protocol, its SASL state machine and its principal (the
SASL user, or the client certificate's CN on an SSL listener).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final

from broker.security.acl import Authorizer, Op, Resource
from broker.security.credentials import UserStore
from broker.security.ratelimit import LoginLimiter
from broker.security.sasl import MECHANISMS, SaslAuthenticator, SaslState
from broker.security.tls import peer_principal

ANONYMOUS: Final = "ANONYMOUS"
PROTOCOLS: Final = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
# What an unauthenticated client on a SASL listener may send: ApiVersions,
# SaslHandshake, SaslAuthenticate (Kafka's SaslServerAuthenticator does the same).
PRE_AUTH_APIS: Final = frozenset({18, 17, 36})


class SecurityConfigError(ValueError):
    """A security setting is malformed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SecuritySettings:
    """Security settings of one broker process."""

    protocol_map: Mapping[str, str] = field(default_factory=dict)
    mechanisms: tuple[str, ...] = MECHANISMS
    super_users: frozenset[str] = frozenset()
    authorizer: bool | None = None  # None: on when a listener authenticates
    failed_auth_delay_ms: int = 100
    login_max_failures: int = 5
    login_host_max_failures: int | None = None  # None: 10 x login_max_failures
    login_window_ms: int = 60_000
    login_lockout_ms: int = 60_000

    def protocol_of(self, listener: str) -> str:
        """The security protocol of a listener (by map, else by its name)."""
        proto = self.protocol_map.get(listener)
        if proto is None:
            upper = listener.upper()
            proto = upper if upper in PROTOCOLS else "PLAINTEXT"
        return proto


# --set keys this module consumes, Kafka's names where Kafka has one.
SECURITY_KEYS: Final = frozenset(
    {
        "listener.security.protocol.map",
        "sasl.enabled.mechanisms",
        "super.users",
        "authorizer.enabled",
        "connection.failed.authentication.delay.ms",
        "ailurus.login.max.failures",
        "ailurus.login.host.max.failures",
        "ailurus.login.window.ms",
        "ailurus.login.lockout.ms",
    }
)


_INT_KEYS: Final = frozenset(
    {
        "connection.failed.authentication.delay.ms",
        "ailurus.login.max.failures",
        "ailurus.login.host.max.failures",
        "ailurus.login.window.ms",
        "ailurus.login.lockout.ms",
    }
)


def parse_settings(sets: Mapping[str, str]) -> SecuritySettings:
    """Build settings from the ``--set`` items whose keys are in SECURITY_KEYS."""
    out = SecuritySettings()
    if text := sets.get("listener.security.protocol.map"):
        mapping = {}
        for item in text.split(","):
            name, sep, proto = item.strip().partition(":")
            if not sep or proto.upper() not in PROTOCOLS:
                raise SecurityConfigError(
                    "listener.security.protocol.map expects NAME:PROTOCOL,... with "
                    f"PROTOCOL one of {', '.join(PROTOCOLS)}, not {item!r}"
                )
            mapping[name.strip()] = proto.upper()
        out = replace(out, protocol_map=mapping)
    if (text := sets.get("sasl.enabled.mechanisms")) is not None:
        mechs = tuple(m.strip().upper() for m in text.split(",") if m.strip())
        bad = [m for m in mechs if m not in MECHANISMS]
        if bad or not mechs:
            raise SecurityConfigError(
                f"sasl.enabled.mechanisms: choose from {', '.join(MECHANISMS)}"
            )
        out = replace(out, mechanisms=mechs)
    if text := sets.get("super.users"):
        users = set()
        for item in text.split(";"):
            item = item.strip()
            if item:
                users.add(item.removeprefix("User:"))
        out = replace(out, super_users=frozenset(users))
    if (text := sets.get("authorizer.enabled")) is not None:
        low = text.strip().lower()
        if low not in ("true", "false", "auto"):
            raise SecurityConfigError("authorizer.enabled must be true, false or auto")
        out = replace(out, authorizer=None if low == "auto" else low == "true")
    ints: dict[str, int] = {}
    for key in sorted(SECURITY_KEYS & set(sets)):
        if key not in _INT_KEYS:
            continue
        try:
            ints[key] = int(sets[key])
        except ValueError:
            raise SecurityConfigError(f"{key} must be an integer") from None
        if ints[key] < 0:
            raise SecurityConfigError(f"{key} must not be negative")
    return replace(
        out,
        failed_auth_delay_ms=ints.get(
            "connection.failed.authentication.delay.ms", out.failed_auth_delay_ms
        ),
        login_max_failures=ints.get(
            "ailurus.login.max.failures", out.login_max_failures
        ),
        login_host_max_failures=ints.get(
            "ailurus.login.host.max.failures", out.login_host_max_failures
        ),
        login_window_ms=ints.get("ailurus.login.window.ms", out.login_window_ms),
        login_lockout_ms=ints.get("ailurus.login.lockout.ms", out.login_lockout_ms),
    )


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
        self.protocols = {name: settings.protocol_of(name) for name in listeners}
        authenticating = any(p.startswith("SASL") for p in self.protocols.values())
        enabled = (
            settings.authorizer
            if settings.authorizer is not None
            else authenticating or bool(client_cert_listeners)
        )
        self.authorizer = Authorizer(
            enabled=enabled, users=self.store, super_users=settings.super_users
        )
        self.limiter = LoginLimiter(
            max_failures=max(1, settings.login_max_failures),
            host_max_failures=None
            if settings.login_host_max_failures is None
            else max(1, settings.login_host_max_failures),
            window_s=settings.login_window_ms / 1000,
            lockout_s=settings.login_lockout_ms / 1000,
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
            sasl=SaslAuthenticator(self.store, mechanisms=self.settings.mechanisms)
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
        principal = None if conn is None else conn.principal
        return self.authorizer.allowed(principal, op, resource, name)
