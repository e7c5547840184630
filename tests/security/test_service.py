"""Security settings from --set keys, and each connection's security state."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.security.admin_auth import (
    AdminAuthError,
    authorized,
    check_binding,
    is_loopback,
    needs_token,
)
from broker.security.service import SecurityService
from broker.security.settings import (
    SecurityConfigError,
    SecuritySettings,
    parse_settings,
)


def test_listener_protocol_from_name_or_map() -> None:
    """A listener named after a protocol gets it; the map overrides; default PLAINTEXT."""
    s = parse_settings(
        {"listener.security.protocol.map": "EXTERNAL:sasl_ssl,INT:PLAINTEXT"}
    )
    assert s.protocol_of("EXTERNAL") == "SASL_SSL"
    assert s.protocol_of("INT") == "PLAINTEXT"
    assert s.protocol_of("sasl_plaintext") == "SASL_PLAINTEXT"
    assert s.protocol_of("ssl") == "SSL"
    assert s.protocol_of("default") == "PLAINTEXT"


def test_parse_settings_reads_kafka_names() -> None:
    """Mechanisms, super users, authorizer and limits come from Kafka-style keys."""
    s = parse_settings(
        {
            "sasl.enabled.mechanisms": "scram-sha-512, PLAIN",
            "super.users": "User:admin;User:ops",
            "authorizer.enabled": "false",
            "connection.failed.authentication.delay.ms": "0",
            "ailurus.login.max.failures": "3",
            "ailurus.login.host.max.failures": "40",
        }
    )
    assert s.mechanisms == ("SCRAM-SHA-512", "PLAIN")
    assert s.super_users == {"admin", "ops"}
    assert s.authorizer is False
    assert s.failed_auth_delay_ms == 0
    assert s.login_max_failures == 3
    assert s.login_host_max_failures == 40
    assert parse_settings({}) == SecuritySettings()


@pytest.mark.parametrize(
    "sets",
    [
        {"listener.security.protocol.map": "X:TLS"},
        {"sasl.enabled.mechanisms": "GSSAPI"},
        {"sasl.enabled.mechanisms": ""},
        {"authorizer.enabled": "maybe"},
        {"ailurus.login.max.failures": "many"},
        {"ailurus.login.lockout.ms": "-1"},
    ],
)
def test_parse_settings_rejects_bad_values(sets: dict[str, str]) -> None:
    """Malformed security settings are errors naming the key."""
    with pytest.raises(SecurityConfigError):
        parse_settings(sets)


def test_sasl_connection_is_gated_until_authenticated(tmp_path: Path) -> None:
    """On a SASL listener only ApiVersions and the SASL APIs pass before login."""
    svc = SecurityService(
        SecuritySettings(), data_dir=tmp_path, listeners=("sasl_ssl", "plain")
    )
    assert svc.authorizer.enabled
    conn = svc.connection("sasl_ssl", "[::1]:4000")
    assert conn.peer_host == "::1"
    assert [k for k in (0, 3, 17, 18, 36) if conn.may_send(k)] == [17, 18, 36]
    assert conn.principal is None
    plain = svc.connection("plain", "127.0.0.1:1")
    assert plain.may_send(0)
    assert plain.principal == "ANONYMOUS"


def test_authorizer_defaults_off_without_authenticating_listeners(
    tmp_path: Path,
) -> None:
    """Plain listeners only: the authorizer is off unless asked for."""
    svc = SecurityService(SecuritySettings(), data_dir=tmp_path, listeners=("default",))
    assert not svc.authorizer.enabled
    forced = SecurityService(
        SecuritySettings(authorizer=True), data_dir=tmp_path, listeners=("default",)
    )
    assert forced.authorizer.enabled


# -- admin API access --------------------------------------------------------------


TOKEN = "t" * 32


def test_admin_binding_rules() -> None:
    """Loopback needs no token; beyond loopback does; short tokens are refused."""
    for host in ("127.0.0.1", "::1", "[::1]", "localhost", "127.0.0.5"):
        assert is_loopback(host)
        check_binding(host, None)
    for host in ("0.0.0.0", "10.0.0.1", "::", "example.com"):
        assert not is_loopback(host)
        with pytest.raises(AdminAuthError, match="AILURUS_ADMIN_TOKEN"):
            check_binding(host, None)
        check_binding(host, TOKEN)
    with pytest.raises(AdminAuthError, match="at least"):
        check_binding("127.0.0.1", "short")


def test_admin_token_checks() -> None:
    """With a token set, everything but a read of a public route needs it."""
    assert needs_token("POST", TOKEN)
    assert needs_token("delete", TOKEN)
    assert needs_token("GET", TOKEN)
    assert not needs_token("GET", TOKEN, public=True)
    assert needs_token("POST", TOKEN, public=True)
    assert not needs_token("POST", None)
    assert not needs_token("GET", None)
    assert authorized({"authorization": f"Bearer {TOKEN}"}, TOKEN)
    assert authorized({"authorization": f"bearer  {TOKEN}"}, TOKEN)
    assert not authorized({"authorization": f"Basic {TOKEN}"}, TOKEN)
    assert not authorized({"authorization": "Bearer nope"}, TOKEN)
    assert not authorized({}, TOKEN)


# -- configuration ----------------------------------------------------------------


def test_resolve_builds_security_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TLS flags, security --set keys and the admin token land in BrokerConfig."""
    from broker.config import resolve

    monkeypatch.setenv("AILURUS_ADMIN_TOKEN", TOKEN)
    cfg = resolve(
        flags={
            "kafka_addr": "sasl_ssl://127.0.0.1:0,internal://127.0.0.1:0",
            "admin_addr": "0.0.0.0:0",
            "tls_cert": "c.pem",
            "tls_key": "k.pem",
        },
        sets={
            "listener.security.protocol.map": "internal:SASL_PLAINTEXT",
            "super.users": "User:root",
            "retention.ms": "1000",
        },
    )
    assert cfg.tls is not None
    assert cfg.tls.cert_file == Path("c.pem")
    assert cfg.security.protocol_of("sasl_ssl") == "SASL_SSL"
    assert cfg.security.protocol_of("internal") == "SASL_PLAINTEXT"
    assert cfg.security.super_users == {"root"}
    assert cfg.admin_token == TOKEN
    assert "super.users" not in cfg.topic_defaults
    assert cfg.topic_defaults["retention.ms"] == "1000"


@pytest.mark.parametrize(
    ("flags", "sets", "message"),
    [
        ({"kafka_addr": "ssl://127.0.0.1:0"}, {}, "--tls-cert"),
        ({"tls_cert": "c.pem"}, {}, "go together"),
        ({"admin_addr": "0.0.0.0:9644"}, {}, "AILURUS_ADMIN_TOKEN"),
        ({}, {"listener.security.protocol.map": "nope:SSL"}, "unknown listeners"),
        ({}, {"sasl.enabled.mechanisms": "GSSAPI"}, "sasl.enabled.mechanisms"),
    ],
)
def test_resolve_rejects_unsafe_or_incomplete_security(
    flags: dict[str, object],
    sets: dict[str, str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """TLS listeners need cert and key; a public admin API needs a token."""
    from broker.config import ConfigError, resolve

    monkeypatch.delenv("AILURUS_ADMIN_TOKEN", raising=False)
    with pytest.raises(ConfigError, match=message):
        resolve(flags=flags, sets=sets)
