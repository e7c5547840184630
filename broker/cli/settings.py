"""Where the CLI connects and how it authenticates: ``-X`` options, env vars, a profile.

Each setting has an rpk-style ``-X key=value`` option, an ``AILURUS_*`` environment
variable and a profile key. The first one set wins, in this order::

    flag (-X key=value, --brokers, --admin-url)  >  environment  >  profile  >  default

=================  ======================  =============================================
``-X`` key         environment             meaning
=================  ======================  =============================================
brokers            AILURUS_BROKERS         Kafka bootstrap ``host:port,...``
admin.hosts        AILURUS_ADMIN_URL       admin API ``host:port`` or URL
admin.token        AILURUS_ADMIN_TOKEN     bearer token for mutating admin requests
user               AILURUS_USER            SASL user (enables SASL)
pass               AILURUS_PASS            SASL password
sasl.mechanism     AILURUS_SASL_MECHANISM  PLAIN, SCRAM-SHA-256 (default), SCRAM-SHA-512
tls.enabled        AILURUS_TLS_ENABLED     ``true`` to connect with TLS
tls.ca             AILURUS_TLS_CA          CA file to trust (default: the system's)
tls.cert           AILURUS_TLS_CERT        client certificate (PEM), implies TLS
tls.key            AILURUS_TLS_KEY         client key (PEM), implies TLS
=================  ======================  =============================================

The profile is a YAML file: ``--profile FILE`` (or ``AILURUS_PROFILE``), else
``$XDG_CONFIG_HOME/ailurus/profile.yaml`` (``~/.config/ailurus/profile.yaml``) when
it exists. It holds the ``-X`` keys (``user: alice``, ``tls.enabled: true``) and/or
rpk's profile layout (``kafka_api: {brokers, tls: {ca_file, cert_file, key_file},
sasl: {user, password, mechanism}}``, ``admin_api: {addresses}``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

import click

if TYPE_CHECKING:  # the client is imported on use: `ailurus serve` does not need it
    from broker.client.auth import Security

DEFAULT_BROKERS: Final = "127.0.0.1:9092"
DEFAULT_ADMIN_URL: Final = "http://127.0.0.1:9644"

# -X key -> environment variable
X_KEYS: Final = {
    "brokers": "AILURUS_BROKERS",
    "admin.hosts": "AILURUS_ADMIN_URL",
    "admin.token": "AILURUS_ADMIN_TOKEN",
    "user": "AILURUS_USER",
    "pass": "AILURUS_PASS",
    "sasl.mechanism": "AILURUS_SASL_MECHANISM",
    "tls.enabled": "AILURUS_TLS_ENABLED",
    "tls.ca": "AILURUS_TLS_CA",
    "tls.cert": "AILURUS_TLS_CERT",
    "tls.key": "AILURUS_TLS_KEY",
}

# rpk profile layout -> -X key
_RPK_PATHS: Final = {
    ("kafka_api", "brokers"): "brokers",
    ("kafka_api", "sasl", "user"): "user",
    ("kafka_api", "sasl", "password"): "pass",
    ("kafka_api", "sasl", "mechanism"): "sasl.mechanism",
    ("kafka_api", "tls", "ca_file"): "tls.ca",
    ("kafka_api", "tls", "cert_file"): "tls.cert",
    ("kafka_api", "tls", "key_file"): "tls.key",
    ("admin_api", "addresses"): "admin.hosts",
    ("admin_api", "token"): "admin.token",
}

X_HELP: Final = (
    "Connection setting key=value, rpk style (repeatable): brokers, admin.hosts, "
    "admin.token, user, pass, sasl.mechanism, tls.enabled, tls.ca, tls.cert, "
    "tls.key. Each also reads AILURUS_<KEY> (e.g. AILURUS_USER, AILURUS_ADMIN_TOKEN)."
)


def _invalid(message: str) -> Exception:
    """A :class:`~broker.client.errors.InvalidArgument` (the client loads on use)."""
    from broker.client.errors import InvalidArgument

    return InvalidArgument(message)


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """The resolved connection settings of one CLI run."""

    security: Security
    brokers: str = DEFAULT_BROKERS
    admin_url: str = DEFAULT_ADMIN_URL
    admin_token: str | None = None


def parse_x(values: Sequence[str]) -> dict[str, str]:
    """``-X key=value`` options as a dict; unknown keys are an error naming the known."""
    out: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if not sep or key not in X_KEYS:
            raise click.BadParameter(
                f"{item!r}: expected key=value with key one of {', '.join(X_KEYS)}",
                param_hint="-X",
            )
        out[key] = value
    return out


def default_profile_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "ailurus" / "profile.yaml"


def load_profile(path: Path | None) -> dict[str, str]:
    """The ``-X`` keys a profile sets; ``path`` None: the default file if it exists."""
    import yaml

    if path is None:
        path = default_profile_path()
        if not path.is_file():
            return {}
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise _invalid(f"profile {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise _invalid(f"profile {path}: not valid YAML ({exc})") from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise _invalid(f"profile {path}: expected a mapping of settings")
    out: dict[str, str] = {}
    for rpk_path, key in _RPK_PATHS.items():
        node: object = data
        for part in rpk_path:
            node = node.get(part) if isinstance(node, Mapping) else None
        if node is not None:
            out[key] = _text(node)
    kafka_api = data.get("kafka_api")
    if isinstance(kafka_api, Mapping) and kafka_api.get("tls") is not None:
        out["tls.enabled"] = "true"  # rpk: a tls section means TLS
    for key, value in data.items():
        if key in X_KEYS and value is not None:
            out[str(key)] = _text(value)
        elif key not in ("kafka_api", "admin_api", "name", "description"):
            raise _invalid(
                f"profile {path}: unknown key {key!r} (known: {', '.join(X_KEYS)}, "
                "kafka_api, admin_api)"
            )
    return out


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def _bool(key: str, text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("", "0", "false", "no", "off"):
        return False
    raise _invalid(f"{key}={text!r}: expected true or false")


def _admin_url(hosts: str) -> str:
    first = hosts.split(",")[0].strip()
    return first if "://" in first else f"http://{first}"


def resolve(
    *,
    x: Mapping[str, str],
    brokers_flag: str | None,
    admin_url_flag: str | None,
    profile: Path | None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Combine flags, environment, profile and defaults (see the module docstring)."""
    from broker.client.auth import MECHANISMS, Security

    environ = os.environ if env is None else env
    chosen: dict[str, str] = dict(load_profile(profile))
    for key, var in X_KEYS.items():
        if environ.get(var):
            chosen[key] = environ[var]
    chosen.update(x)
    if brokers_flag:
        chosen["brokers"] = brokers_flag
    admin_url = _admin_url(chosen["admin.hosts"]) if "admin.hosts" in chosen else None
    if admin_url_flag:
        admin_url = admin_url_flag
    mechanism = chosen.get("sasl.mechanism") or None
    if mechanism is not None and mechanism.upper() not in MECHANISMS:
        raise _invalid(
            f"sasl.mechanism={mechanism!r}: use one of {', '.join(MECHANISMS)}"
        )
    if chosen.get("pass") and not chosen.get("user"):
        raise _invalid("a SASL password was given without a user (-X user=)")
    return Settings(
        brokers=chosen.get("brokers") or DEFAULT_BROKERS,
        admin_url=admin_url or DEFAULT_ADMIN_URL,
        admin_token=chosen.get("admin.token") or None,
        security=Security(
            user=chosen.get("user") or None,
            password=chosen.get("pass"),
            mechanism=mechanism.upper() if mechanism else None,
            tls=_bool("tls.enabled", chosen.get("tls.enabled", "")),
            ca=chosen.get("tls.ca") or None,
            cert=chosen.get("tls.cert") or None,
            key=chosen.get("tls.key") or None,
        ),
    )


def current_settings(ctx: click.Context | None = None) -> Settings:
    """The settings of the running command (resolved once per run)."""
    ctx = ctx or click.get_current_context()
    root = ctx.find_root()
    cached = root.meta.get("ailurus.settings")
    if isinstance(cached, Settings):
        return cached
    obj = root.obj
    settings = resolve(
        x=parse_x(tuple(getattr(obj, "x", ()))),
        brokers_flag=getattr(obj, "brokers", None),
        admin_url_flag=getattr(obj, "admin_url", None),
        profile=getattr(obj, "profile", None),
    )
    root.meta["ailurus.settings"] = settings
    return settings
