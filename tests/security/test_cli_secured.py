"""The ``ailurus`` CLI against a secured broker: SASL (PLAIN, SCRAM), TLS, mutual TLS,
the admin token, and how flags, environment and a profile combine.

One broker for the module with ``sasl_plaintext``, ``sasl_ssl`` and ``ssl`` (client
certificate required, its CN is the principal) listeners, and an admin API that
needs a bearer token for mutating requests. alice may use topics starting
``orders``; admin is a super user.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from broker.cli.main import _register_commands, cli, hoist_global_flags
from broker.security.credentials import UserStore

from .broker_proc import Broker, start_broker
from .conftest import Certs

pytestmark = pytest.mark.integration

PASSWORDS = {"alice": "alice-secret", "admin": "admin-secret"}
TOKEN = "cli-admin-token-0123456789"
LISTENERS = "sasl_plaintext://127.0.0.1:0,sasl_ssl://127.0.0.1:0,ssl://127.0.0.1:0"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory, certs: Certs) -> Iterator[Broker]:
    tmp = tmp_path_factory.mktemp("cli-secured")
    store = UserStore.in_data_dir(tmp / "data")
    for name, pw in PASSWORDS.items():
        store.set_password(name, pw)
    store.set_acls(
        "alice",
        (
            {
                "resource": "topic",
                "name": "orders",
                "pattern": "prefixed",
                "operations": ["all"],
            },
        ),
    )
    b = start_broker(
        tmp,
        "--kafka-addr", LISTENERS,
        "--admin-addr", "127.0.0.1:0",
        *certs.secured_broker_args(),
        env={"AILURUS_ADMIN_TOKEN": TOKEN},
    )  # fmt: skip
    yield b
    assert b.stop() == 0


def run(
    *args: str, env: dict[str, str] | None = None, stdin: str = ""
) -> tuple[int, str, str]:
    """Run the CLI in this process with only the given AILURUS_* variables set."""
    _register_commands()
    clean = {k: None for k in os.environ if k.startswith("AILURUS_")}
    clean["XDG_CONFIG_HOME"] = "/nonexistent"  # no personal profile
    runner = CliRunner(env={**clean, **(env or {})})
    result = runner.invoke(cli, hoist_global_flags(list(args)), input=stdin)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def topic_name() -> str:
    return f"orders-{uuid.uuid4().hex[:8]}"


def sasl_flags(broker: Broker, mech: str, user: str = "alice") -> list[str]:
    return [
        "-X", f"brokers={broker.addr('sasl_plaintext')}",
        "-X", f"user={user}",
        "-X", f"pass={PASSWORDS[user]}",
        "-X", f"sasl.mechanism={mech}",
    ]  # fmt: skip


@pytest.mark.parametrize("mech", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_produce_and_consume(broker: Broker, mech: str) -> None:
    """Each SASL mechanism authenticates; the CLI creates, produces and consumes."""
    topic = topic_name()
    flags = sasl_flags(broker, mech)
    code, out, err = run("topic", "create", topic, *flags)
    assert code == 0, err
    code, out, err = run("topic", "produce", topic, *flags, stdin="a\nb\n")
    assert code == 0, err
    code, out, err = run(
        "topic", "consume", topic, "--until-end", "-f", "%v\\n", *flags
    )
    assert code == 0, err
    assert out.splitlines() == ["a", "b"]


@pytest.mark.parametrize("mech", ["PLAIN", "SCRAM-SHA-512"])
def test_wrong_password_is_one_clear_line(broker: Broker, mech: str) -> None:
    """A wrong password exits 1 with one line naming the authentication failure."""
    flags = sasl_flags(broker, mech)
    flags[5] = "pass=wrong"
    code, _, err = run("topic", "list", *flags)
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "uthentication failed" in lines[0]
    assert "-X pass=" in lines[0]


def test_acl_applies_to_the_authenticated_user(broker: Broker) -> None:
    """alice may not create a topic outside her prefix: SASL made her alice."""
    code, _, err = run("topic", "create", "payments-x", *sasl_flags(broker, "PLAIN"))
    assert code == 1
    assert "TOPIC_AUTHORIZATION_FAILED" in err


def test_sasl_over_tls_from_environment(broker: Broker, certs: Certs) -> None:
    """AILURUS_* variables alone configure SASL over TLS."""
    topic = topic_name()
    env = {
        "AILURUS_BROKERS": broker.addr("sasl_ssl"),
        "AILURUS_USER": "alice",
        "AILURUS_PASS": PASSWORDS["alice"],
        "AILURUS_SASL_MECHANISM": "SCRAM-SHA-256",
        "AILURUS_TLS_ENABLED": "true",
        "AILURUS_TLS_CA": str(certs.ca),
    }
    code, _, err = run("topic", "produce", topic, "-k", "k1", env=env, stdin="v1\n")
    assert code == 0, err
    code, out, err = run(
        "--format", "json", "topic", "consume", topic, "-n", "1", env=env
    )
    assert code == 0, err
    record = json.loads(out)
    assert (record["key"], record["value"]) == ("k1", "v1")


def test_untrusted_broker_certificate(broker: Broker) -> None:
    """TLS without the broker's CA fails with a hint naming -X tls.ca."""
    code, _, err = run(
        "topic", "list",
        "-X", f"brokers={broker.addr('sasl_ssl')}",
        "-X", "tls.enabled=true",
        "-X", "user=alice", "-X", f"pass={PASSWORDS['alice']}",
    )  # fmt: skip
    assert code == 1
    assert "-X tls.ca=" in err
    assert len(err.strip().splitlines()) == 1


def test_mutual_tls_client_certificate(broker: Broker, certs: Certs) -> None:
    """-X tls.cert/tls.key present a client certificate; its CN (alice) is the user."""
    topic = topic_name()
    flags = [
        "-X", f"brokers={broker.addr('ssl')}",
        "-X", f"tls.ca={certs.ca}",
        "-X", f"tls.cert={certs.client_cert}",
        "-X", f"tls.key={certs.client_key}",
    ]  # fmt: skip
    code, _, err = run("topic", "produce", topic, *flags, stdin="x\n")
    assert code == 0, err
    code, _, err = run("topic", "create", "payments-y", *flags)
    assert code == 1
    assert "TOPIC_AUTHORIZATION_FAILED" in err


def test_plaintext_client_on_tls_listener_gets_a_hint(broker: Broker) -> None:
    """Talking plaintext to a TLS listener says TLS or SASL may be needed."""
    code, _, err = run("topic", "list", "--brokers", broker.addr("ssl"))
    assert code == 1
    assert "tls.enabled=true" in err


def test_sasl_listener_without_credentials_gets_a_hint(broker: Broker) -> None:
    """No -X user= on a SASL listener: one line saying SASL may be needed."""
    code, _, err = run("topic", "list", "--brokers", broker.addr("sasl_plaintext"))
    assert code == 1
    assert len(err.strip().splitlines()) == 1, err
    assert "-X user=" in err


def test_group_and_cluster_commands_over_sasl_and_tls(
    broker: Broker, certs: Certs
) -> None:
    """group and cluster commands use the same settings as topic commands."""
    env = {
        "AILURUS_BROKERS": broker.addr("sasl_ssl"),
        "AILURUS_USER": "admin",
        "AILURUS_PASS": PASSWORDS["admin"],
        "AILURUS_TLS_CA": str(certs.ca),
    }
    code, out, err = run("--format", "json", "cluster", "info", env=env)
    assert code == 0, err
    assert json.loads(out)["brokers"]
    code, out, err = run("--format", "json", "group", "list", env=env)
    assert code == 0, err
    assert "groups" in json.loads(out)


def test_profile_env_and_flag_precedence(broker: Broker, tmp_path: Path) -> None:
    """flag > environment > profile: each later source overrides the password."""
    profile = tmp_path / "profile.yaml"
    profile.write_text(
        "kafka_api:\n"
        f"  brokers: [{broker.addr('sasl_plaintext')}]\n"
        "  sasl:\n"
        "    user: alice\n"
        f"    password: {PASSWORDS['alice']}\n"
        "    mechanism: SCRAM-SHA-512\n"
    )
    topic = topic_name()
    # the profile alone works
    code, _, err = run("--profile", str(profile), "topic", "create", topic)
    assert code == 0, err
    # the environment overrides the profile's password (wrong: fails)
    bad_env = {"AILURUS_PROFILE": str(profile), "AILURUS_PASS": "wrong"}
    code, _, err = run("topic", "describe", topic, env=bad_env)
    assert code == 1
    assert "uthentication failed" in err
    # a flag overrides the environment (right again: works)
    code, out, err = run(
        "topic", "describe", topic, "-X", f"pass={PASSWORDS['alice']}", env=bad_env
    )
    assert code == 0, err
    assert topic in out
    # the default profile location is read when no --profile is given
    (tmp_path / "ailurus").mkdir()
    (tmp_path / "ailurus" / "profile.yaml").write_text(profile.read_text())
    code, _, err = run(
        "topic", "describe", topic, env={"XDG_CONFIG_HOME": str(tmp_path)}
    )
    assert code == 0, err


def test_admin_token(broker: Broker, certs: Certs) -> None:
    """Without the token a snapshot create is refused with a hint; with it, it works."""
    assert broker.admin is not None
    admin_url = "http://{}:{}".format(*broker.admin)
    topic = topic_name()
    flags = sasl_flags(broker, "SCRAM-SHA-256")
    assert run("topic", "produce", topic, *flags, stdin="v\n")[0] == 0
    code, _, err = run("snapshot", "create", "--topic", topic, "--admin-url", admin_url)
    assert code == 1
    assert "401" in err
    assert "-X admin.token=" in err
    assert "AILURUS_ADMIN_TOKEN" in err
    code, out, err = run(
        "--format", "json", "snapshot", "create", "--topic", topic,
        "-X", f"admin.hosts={broker.admin[0]}:{broker.admin[1]}",
        "-X", f"admin.token={TOKEN}",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out)[0]["partition"] == 0
    code, _, err = run(
        "snapshot", "create", "--topic", topic, "--admin-url", admin_url,
        env={"AILURUS_ADMIN_TOKEN": TOKEN},
    )  # fmt: skip
    assert code == 0, err


def test_help_says_how_to_pass_credentials() -> None:
    """The root help documents -X keys, env variables and the admin token."""
    code, out, _ = run("--help")
    assert code == 0
    for text in ("-X", "admin.token", "AILURUS_ADMIN_TOKEN", "tls.ca", "--profile"):
        assert text in out
