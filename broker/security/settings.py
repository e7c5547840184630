"""What the configuration says about security (Kafka's names in brackets).

The security protocol of each listener (``listener.security.protocol.map``; a
listener named after a protocol, ``sasl_ssl://host:port``, gets that protocol),
enabled SASL mechanisms (``sasl.enabled.mechanisms``), super users (``super.users``,
``User:alice;User:bob``), whether ACLs are enforced (``authorizer.enabled``; default:
on when some listener authenticates its clients), the delay before a failed login is
answered (``connection.failed.authentication.delay.ms``) and the failed-login limits
(``ailurus.login.max.failures`` per user and host,
``ailurus.login.host.max.failures`` per host, ``ailurus.login.window.ms``,
``ailurus.login.lockout.ms``).

Only parsing lives here, so the configuration imports no SASL, credential or
authorizer code; :mod:`broker.security.service` builds the running service from
these settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Final

PROTOCOLS: Final = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
# The SASL mechanisms the broker implements (broker.security.sasl), in preference order.
MECHANISMS: Final = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


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
