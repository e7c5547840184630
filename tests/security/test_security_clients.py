"""Real clients against a broker with SASL, TLS and ACLs (security).

One broker per module with four listeners: ``sasl_plaintext``, ``sasl_ssl``, ``ssl``
(client certificates required; the certificate's CN is the principal) and a
``plaintext`` one (anonymous, so denied everything by the authorizer). Users:
alice may do anything on topics starting ``orders`` and read any group; bob may use
topics starting ``bobs-`` but no group; admin is a super user.
"""

from __future__ import annotations

import json
import logging
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KpTopicPartition
from kafka.errors import (
    GroupAuthorizationFailedError,
    TopicAuthorizationFailedError,
)
from kafka.errors import (
    KafkaError as KpError,
)
from kafka.net.compat import KafkaNetClient

from broker.cli.main import cli
from broker.security.credentials import UserStore
from protocol.error_codes import ErrorCode
from protocol.messages.api_versions import ApiVersionsRequest, ApiVersionsResponse
from protocol.messages.metadata import MetadataRequest
from protocol.messages.sasl_authenticate import (
    SaslAuthenticateRequest,
    SaslAuthenticateResponse,
)
from protocol.messages.sasl_handshake import (
    SaslHandshakeRequest,
    SaslHandshakeResponse,
)

from .broker_proc import ROOT, Broker, RawClient, start_broker
from .conftest import Certs

pytestmark = pytest.mark.integration

MECHS = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
PASSWORDS = {"alice": "alice-secret", "bob": "bob-secret", "admin": "admin-secret"}
LISTENERS = (
    "sasl_plaintext://127.0.0.1:0,sasl_ssl://127.0.0.1:0,"
    "ssl://127.0.0.1:0,plaintext://127.0.0.1:0"
)


def make_users(data_dir: Path) -> None:
    store = UserStore.in_data_dir(data_dir)
    for name, pw in PASSWORDS.items():
        store.set_password(name, pw)
    store.set_acls(
        "bob",
        (
            {
                "resource": "topic",
                "name": "bobs-",
                "pattern": "prefixed",
                "operations": ["all"],
            },
        ),
    )
    store.set_acls(
        "alice",
        (
            {
                "resource": "topic",
                "name": "orders",
                "pattern": "prefixed",
                "operations": ["all"],
            },
            {"resource": "group", "name": "*", "operations": ["read"]},
        ),
    )


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory, certs: Certs) -> Iterator[Broker]:
    tmp = tmp_path_factory.mktemp("secbroker")
    make_users(tmp / "data")
    b = start_broker(
        tmp,
        "--kafka-addr", LISTENERS,
        "--admin-addr", "127.0.0.1:0",
        *certs.secured_broker_args(),
    )  # fmt: skip
    yield b
    assert b.stop() == 0


def topic_name(prefix: str = "orders") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# -- kafka-python ----------------------------------------------------------------


def kp_config(
    broker: Broker, mech: str, user: str, *, tls: bool, certs: Certs
) -> dict[str, object]:
    cfg: dict[str, object] = {
        "bootstrap_servers": broker.addr("sasl_ssl" if tls else "sasl_plaintext"),
        "security_protocol": "SASL_SSL" if tls else "SASL_PLAINTEXT",
        "sasl_mechanism": mech,
        "sasl_plain_username": user,
        "sasl_plain_password": PASSWORDS.get(user, "x"),
        "request_timeout_ms": 10000,
    }
    if tls:
        cfg["ssl_cafile"] = str(certs.ca)
    return cfg


def kp_roundtrip(cfg: dict[str, object], topic: str, n: int = 3) -> list[bytes]:
    producer = KafkaProducer(acks="all", **cfg)
    try:
        for i in range(n):
            producer.send(topic, f"v{i}".encode()).get(timeout=10)
    finally:
        producer.close(timeout=5)
    consumer = KafkaConsumer(consumer_timeout_ms=5000, **cfg)
    try:
        consumer.assign([KpTopicPartition(topic, 0)])
        consumer.seek_to_beginning()
        out: list[bytes] = []
        for msg in consumer:
            out.append(msg.value)
            if len(out) >= n:
                break
        return out
    finally:
        consumer.close()


@pytest.mark.parametrize("mech", MECHS)
def test_kafka_python_sasl_produces_and_consumes(
    broker: Broker, certs: Certs, mech: str
) -> None:
    """kafka-python logs in with each mechanism and round-trips records."""
    cfg = kp_config(broker, mech, "alice", tls=False, certs=certs)
    assert kp_roundtrip(cfg, topic_name()) == [b"v0", b"v1", b"v2"]


def test_kafka_python_sasl_over_tls(broker: Broker, certs: Certs) -> None:
    """SCRAM over a TLS listener works with a CA-verifying client."""
    cfg = kp_config(broker, "SCRAM-SHA-512", "alice", tls=True, certs=certs)
    assert kp_roundtrip(cfg, topic_name()) == [b"v0", b"v1", b"v2"]


def test_kafka_python_tls_client_certificate(broker: Broker, certs: Certs) -> None:
    """On the ssl listener the client certificate's CN (alice) is the principal."""
    cfg: dict[str, object] = {
        "bootstrap_servers": broker.addr("ssl"),
        "security_protocol": "SSL",
        "ssl_cafile": str(certs.ca),
        "ssl_certfile": str(certs.client_cert),
        "ssl_keyfile": str(certs.client_key),
        "request_timeout_ms": 10000,
    }
    assert kp_roundtrip(cfg, topic_name()) == [b"v0", b"v1", b"v2"]
    producer = KafkaProducer(**cfg)
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            producer.send(topic_name("secret"), b"x").get(timeout=10)
    finally:
        producer.close(timeout=5)


def test_kafka_python_wrong_password_is_rejected_and_logged(
    broker: Broker, certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    """A wrong password fails the client with the broker's SASL error, logged both sides."""
    cfg = kp_config(broker, "SCRAM-SHA-256", "bob", tls=False, certs=certs)
    cfg["sasl_plain_password"] = "not-bobs"
    made: list[KafkaNetClient] = []

    def client_factory(**kw: object) -> KafkaNetClient:
        made.append(KafkaNetClient(**kw))
        return made[-1]

    try:
        with caplog.at_level(logging.ERROR, logger="kafka"), pytest.raises(KpError):
            KafkaProducer(
                bootstrap_timeout_ms=3000, kafka_client=client_factory, **cfg
            ).close()
    finally:
        for client in made:  # kafka-python does not close it when __init__ fails
            client.close()
    # kafka-python only reports a bootstrap timeout, but its connection failed on
    # the broker's SaslAuthenticate error, not on a bare disconnect.
    client_errors = [r.getMessage() for r in caplog.records]
    assert any(
        "SaslAuthenticationFailedError" in m and "invalid credentials" in m
        for m in client_errors
    ), client_errors
    failures = [
        e for e in broker.events("sasl_authentication_failed") if e.get("user") == "bob"
    ]
    assert failures
    assert failures[-1]["reason"] == "bad_password"
    assert failures[-1]["mechanism"] == "SCRAM-SHA-256"


def test_kafka_python_acl_denials(broker: Broker, certs: Certs) -> None:
    """bob may use topics "bobs-*" but no group: Kafka's authorisation errors."""
    cfg = kp_config(broker, "PLAIN", "bob", tls=False, certs=certs)
    producer = KafkaProducer(max_block_ms=5000, **cfg)
    topic = topic_name("bobs")
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            producer.send(topic_name(), b"x").get(timeout=10)
        producer.send(topic, b"mine").get(timeout=10)
    finally:
        producer.close(timeout=5)
    consumer = KafkaConsumer(topic, group_id="bobs-group", **cfg)
    try:
        with pytest.raises(GroupAuthorizationFailedError):
            poll_twice(consumer)
    finally:
        consumer.close()


def poll_twice(consumer: KafkaConsumer) -> None:
    consumer.poll(timeout_ms=5000)
    consumer.poll(timeout_ms=2000)


# -- confluent-kafka (librdkafka) -------------------------------------------------


def ck_config(
    broker: Broker, mech: str, user: str, password: str, *, tls: bool, certs: Certs
) -> dict[str, object]:
    cfg: dict[str, object] = {
        "bootstrap.servers": broker.addr("sasl_ssl" if tls else "sasl_plaintext"),
        "security.protocol": "SASL_SSL" if tls else "SASL_PLAINTEXT",
        "sasl.mechanisms": mech,
        "sasl.username": user,
        "sasl.password": password,
    }
    if tls:
        cfg["ssl.ca.location"] = str(certs.ca)
    return cfg


def ck_produce(
    cfg: dict[str, object], topic: str, n: int = 3
) -> list[KafkaError | None]:
    errors: list[KafkaError | None] = []
    producer = Producer({**cfg, "acks": "all", "message.timeout.ms": 10000})
    for i in range(n):
        producer.produce(
            topic, f"v{i}".encode(), on_delivery=lambda err, msg: errors.append(err)
        )
    producer.flush(15)
    return errors


def ck_consume(cfg: dict[str, object], topic: str, n: int = 3) -> list[bytes]:
    consumer = Consumer({**cfg, "group.id": f"{topic}-g", "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        out: list[bytes] = []
        deadline = time.monotonic() + 15
        while len(out) < n and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                out.append(msg.value())
        return out
    finally:
        consumer.close()


@pytest.mark.parametrize("mech", MECHS)
@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_confluent_kafka_sasl_produces_and_consumes(
    broker: Broker, certs: Certs, mech: str, tls: bool
) -> None:
    """librdkafka logs in with each mechanism, over plain TCP and TLS."""
    cfg = ck_config(broker, mech, "alice", PASSWORDS["alice"], tls=tls, certs=certs)
    topic = topic_name()
    assert ck_produce(cfg, topic) == [None, None, None]
    assert ck_consume(cfg, topic) == [b"v0", b"v1", b"v2"]


def test_confluent_kafka_tls_client_certificate(broker: Broker, certs: Certs) -> None:
    """librdkafka with a client certificate on the ssl listener acts as alice."""
    cfg: dict[str, object] = {
        "bootstrap.servers": broker.addr("ssl"),
        "security.protocol": "SSL",
        "ssl.ca.location": str(certs.ca),
        "ssl.certificate.location": str(certs.client_cert),
        "ssl.key.location": str(certs.client_key),
    }
    topic = topic_name()
    assert ck_produce(cfg, topic) == [None, None, None]
    assert ck_consume(cfg, topic) == [b"v0", b"v1", b"v2"]


def test_confluent_kafka_wrong_password_is_an_authentication_error(
    broker: Broker, certs: Certs
) -> None:
    """librdkafka reports _AUTHENTICATION for a wrong password."""
    seen: list[KafkaError] = []
    cfg = ck_config(broker, "SCRAM-SHA-512", "alice", "wrong", tls=False, certs=certs)
    closes_before = len(_auth_closes(broker))
    producer = Producer({**cfg, "error_cb": seen.append})
    deadline = time.monotonic() + 10
    while not seen and time.monotonic() < deadline:
        producer.poll(0.2)
    auth = [e for e in seen if e.code() == KafkaError._AUTHENTICATION]
    assert auth, seen
    # The broker's SaslAuthenticate error reached the client (not a bare disconnect)...
    assert "invalid credentials" in auth[0].str(), auth[0].str()
    # ...and the broker closed the connection after answering, as Kafka does.
    deadline = time.monotonic() + 5
    while len(_auth_closes(broker)) <= closes_before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(_auth_closes(broker)) > closes_before
    producer.flush(0)


def _auth_closes(broker: Broker) -> list[dict[str, object]]:
    return [
        e
        for e in broker.events("connection_closing")
        if e.get("reason") == "sasl_authentication_failed"
    ]


@pytest.mark.parametrize("mech", MECHS)
def test_failed_authentication_is_answered_then_closed(
    broker: Broker, mech: str
) -> None:
    """A wrong password gets SASL_AUTHENTICATION_FAILED, then the broker closes."""
    client = RawClient(broker.addr("sasl_plaintext"))
    try:
        h = client.request(17, 1, SaslHandshakeRequest(mechanism=mech))
        assert h.error_code == ErrorCode.NONE  # type: ignore[attr-defined]
        if mech == "PLAIN":
            token = b"\0alice\0not-alices"
        else:  # a client-first message; the proof below is wrong
            token = b"n,,n=alice,r=abcdefghijklmnop"
        r = client.request(36, 2, SaslAuthenticateRequest(auth_bytes=token))
        assert isinstance(r, SaslAuthenticateResponse)
        if mech != "PLAIN":
            assert r.error_code == ErrorCode.NONE
            nonce = dict(kv.split("=", 1) for kv in r.auth_bytes.decode().split(","))[
                "r"
            ]
            final = f"c=biws,r={nonce},p={'A' * 44}".encode()
            r = client.request(36, 2, SaslAuthenticateRequest(auth_bytes=final))
            assert isinstance(r, SaslAuthenticateResponse)
        assert r.error_code == ErrorCode.SASL_AUTHENTICATION_FAILED
        assert r.error_message is not None
        assert "Authentication failed" in r.error_message
        assert client.closed_by_peer()
    finally:
        client.close()


def test_confluent_kafka_denied_topic(broker: Broker, certs: Certs) -> None:
    """A produce to a topic alice may not write fails with TOPIC_AUTHORIZATION_FAILED."""
    cfg = ck_config(
        broker, "PLAIN", "alice", PASSWORDS["alice"], tls=False, certs=certs
    )
    errors = ck_produce(cfg, topic_name("secret"), n=1)
    assert len(errors) == 1
    assert errors[0] is not None
    assert errors[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


# -- kafkajs ----------------------------------------------------------------------


def kafkajs(spec: dict[str, object]) -> dict[str, object]:
    node = shutil.which("node")
    assert node is not None, "node is required for the kafkajs tests"
    proc = subprocess.run(
        [node, str(ROOT / "tests/js/sasl_client.js"), json.dumps(spec)],
        capture_output=True,
        timeout=60,
        check=True,
        cwd=ROOT / "tests/js",
    )
    return json.loads(proc.stdout.decode().strip().splitlines()[-1])


@pytest.mark.parametrize("mech", ["plain", "scram-sha-256", "scram-sha-512"])
def test_kafkajs_sasl_produces_and_consumes(
    broker: Broker, certs: Certs, mech: str
) -> None:
    """kafkajs logs in with each mechanism (over TLS for SCRAM-SHA-512) and round-trips."""
    tls = mech == "scram-sha-512"
    result = kafkajs(
        {
            "brokers": [broker.addr("sasl_ssl" if tls else "sasl_plaintext")],
            "mechanism": mech,
            "username": "alice",
            "password": PASSWORDS["alice"],
            "topic": topic_name(),
            "ca": str(certs.ca) if tls else None,
            "count": 3,
        }
    )
    assert result == {"produced": 3, "consumed": [f"{mech}-{i}" for i in range(3)]}


def test_kafkajs_wrong_password(broker: Broker, certs: Certs) -> None:
    """kafkajs fails with an authentication error for a wrong password."""
    result = kafkajs(
        {
            "brokers": [broker.addr("sasl_plaintext")],
            "mechanism": "scram-sha-256",
            "username": "alice",
            "password": "wrong",
            "topic": topic_name(),
            "ca": None,
            "count": 1,
        }
    )
    assert result["error"] == "KafkaJSSASLAuthenticationError", result


# -- the protocol, frame by frame -------------------------------------------------


def test_unauthenticated_client_gets_only_api_versions_and_sasl(broker: Broker) -> None:
    """Before login: ApiVersions answers; Metadata closes the connection."""
    client = RawClient(broker.addr("sasl_plaintext"))
    try:
        versions = client.request(
            18,
            3,
            ApiVersionsRequest(client_software_name="t", client_software_version="1"),
        )
        assert isinstance(versions, ApiVersionsResponse)
        keys = {k.api_key: (k.min_version, k.max_version) for k in versions.api_keys}
        assert keys[17] == (1, 1)
        assert keys[36] == (0, 2)
        with pytest.raises(ConnectionError):
            client.request(3, 9, MetadataRequest(topics=None))
    finally:
        client.close()
    assert broker.events("unauthenticated_request")


def test_sasl_protocol_errors(broker: Broker) -> None:
    """Unknown mechanism, authenticate before handshake, and SASL on a plain listener."""
    client = RawClient(broker.addr("sasl_plaintext"))
    try:
        r = client.request(36, 2, SaslAuthenticateRequest(auth_bytes=b"\0a\0b"))
        assert isinstance(r, SaslAuthenticateResponse)
        assert r.error_code == ErrorCode.ILLEGAL_SASL_STATE
        h = client.request(17, 1, SaslHandshakeRequest(mechanism="GSSAPI"))
        assert isinstance(h, SaslHandshakeResponse)
        assert h.error_code == ErrorCode.UNSUPPORTED_SASL_MECHANISM
        assert set(h.mechanisms) == set(MECHS)
        h = client.request(17, 1, SaslHandshakeRequest(mechanism="PLAIN"))
        assert h.error_code == ErrorCode.NONE  # type: ignore[attr-defined]
        ok = client.request(
            36, 2, SaslAuthenticateRequest(auth_bytes=b"\0admin\0admin-secret")
        )
        assert ok.error_code == ErrorCode.NONE  # type: ignore[attr-defined]
        again = client.request(17, 1, SaslHandshakeRequest(mechanism="PLAIN"))
        assert again.error_code == ErrorCode.ILLEGAL_SASL_STATE  # type: ignore[attr-defined]
        md = client.request(3, 9, MetadataRequest(topics=None))
        assert md.brokers  # type: ignore[attr-defined]
    finally:
        client.close()
    plain = RawClient(broker.addr("plaintext"))
    try:
        h = plain.request(17, 1, SaslHandshakeRequest(mechanism="PLAIN"))
        assert h.error_code == ErrorCode.ILLEGAL_SASL_STATE  # type: ignore[attr-defined]
    finally:
        plain.close()


def test_anonymous_plaintext_client_is_denied(broker: Broker) -> None:
    """On the plaintext listener the anonymous principal may see no topic."""
    client = RawClient(broker.addr("plaintext"))
    try:
        from protocol.messages.metadata import MetadataRequestTopic

        md = client.request(
            3, 9, MetadataRequest(topics=(MetadataRequestTopic(name="orders-x"),))
        )
        assert [t.error_code for t in md.topics] == [
            ErrorCode.TOPIC_AUTHORIZATION_FAILED
        ]  # type: ignore[attr-defined]
    finally:
        client.close()


def test_tls_listener_refuses_clients_without_certificate(
    broker: Broker, certs: Certs
) -> None:
    """Client auth required: a TLS client without a certificate is refused, and the
    broker logs the failed handshake once, with the peer."""
    ctx = ssl.create_default_context(cafile=str(certs.ca))
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        api_versions_over(broker.addr("ssl"), ctx)
    deadline = time.monotonic() + 5
    while not broker.events("tls_handshake_failed") and time.monotonic() < deadline:
        time.sleep(0.05)
    events = broker.events("tls_handshake_failed")
    assert events
    assert all(str(e["peer"]).startswith("127.0.0.1:") for e in events)


def api_versions_over(addr: str, ctx: ssl.SSLContext) -> object:
    client = RawClient(addr, ctx)
    try:
        return client.request(
            18,
            3,
            ApiVersionsRequest(client_software_name="t", client_software_version="1"),
        )
    finally:
        client.close()


# -- failed-login limits and the admin API (their own brokers) ---------------------


def plain_login(addr: str, user: str, password: str) -> SaslAuthenticateResponse:
    client = RawClient(addr)
    try:
        h = client.request(17, 1, SaslHandshakeRequest(mechanism="PLAIN"))
        assert h.error_code == 0  # type: ignore[attr-defined]
        r = client.request(
            36, 2, SaslAuthenticateRequest(auth_bytes=f"\0{user}\0{password}".encode())
        )
        assert isinstance(r, SaslAuthenticateResponse)
        return r
    finally:
        client.close()


def test_failed_logins_are_rate_limited(tmp_path: Path) -> None:
    """After max failures even the right password is refused until the lockout ends."""
    make_users(tmp_path / "data")
    b = start_broker(
        tmp_path,
        "--kafka-addr", "sasl_plaintext://127.0.0.1:0",
        "--admin-addr", "none",
        "--set", "ailurus.login.max.failures=3",
        "--set", "ailurus.login.lockout.ms=1500",
        "--set", "connection.failed.authentication.delay.ms=0",
    )  # fmt: skip
    try:
        addr = b.addr("sasl_plaintext")
        for _ in range(3):
            assert (
                plain_login(addr, "alice", "guess").error_code
                == ErrorCode.SASL_AUTHENTICATION_FAILED
            )
        locked = plain_login(addr, "alice", PASSWORDS["alice"])
        assert locked.error_code == ErrorCode.SASL_AUTHENTICATION_FAILED
        assert "Too many failed logins" in (locked.error_message or "")
        time.sleep(1.6)
        assert (
            plain_login(addr, "alice", PASSWORDS["alice"]).error_code == ErrorCode.NONE
        )
        events = b.events("sasl_authentication_failed")
        assert [e["reason"] for e in events] == ["bad_password"] * 3 + ["rate_limited"]
        assert events[2]["locked_out"] is True
        # A user created with the CLI while the broker runs can log in within ~1 s.
        data = str(tmp_path / "data")
        result = CliRunner().invoke(
            cli,
            ["user", "create", "carol", "--password", "carol-pw", "--data-dir", data],
        )
        assert result.exit_code == 0, result.output
        deadline = time.monotonic() + 5
        code = plain_login(addr, "carol", "carol-pw").error_code
        while code != ErrorCode.NONE and time.monotonic() < deadline:
            time.sleep(0.3)
            code = plain_login(addr, "carol", "carol-pw").error_code
        assert code == ErrorCode.NONE
    finally:
        assert b.stop() == 0


TOKEN = "a-long-enough-admin-token"


def http(b: Broker, method: str, path: str, token: str | None = None) -> int:
    assert b.admin is not None
    req = urllib.request.Request(
        f"http://{b.admin[0]}:{b.admin[1]}{path}",
        method=method,
        data=b"{}" if method == "POST" else None,
    )
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as e:
        return e.code


def test_admin_token_required_for_mutations(tmp_path: Path) -> None:
    """With AILURUS_ADMIN_TOKEN set, POSTs and data-revealing GETs need the bearer
    token; the readiness probe does not."""
    b = start_broker(
        tmp_path,
        "--kafka-addr",
        "127.0.0.1:0",
        "--admin-addr",
        "127.0.0.1:0",
        env={"AILURUS_ADMIN_TOKEN": TOKEN},
    )
    try:
        assert http(b, "GET", "/v1/status/ready") == 200
        assert http(b, "GET", "/v1/topics") == 401
        assert http(b, "GET", "/v1/topics", token=TOKEN) == 200
        assert http(b, "POST", "/v1/snapshots/scan") == 401
        assert (
            http(b, "POST", "/v1/snapshots/scan", token="wrong-token-wrong-token")
            == 401
        )
        assert http(b, "POST", "/v1/snapshots/scan", token=TOKEN) != 401
        assert b.events("admin_unauthorized")
    finally:
        assert b.stop() == 0


def test_admin_beyond_loopback_without_token_refuses_to_start(tmp_path: Path) -> None:
    """An admin API on 0.0.0.0 without a token is a startup error."""
    b = start_broker(
        tmp_path, "--kafka-addr", "127.0.0.1:0", "--admin-addr", "0.0.0.0:0", wait=False
    )
    assert b.proc.wait(timeout=20) != 0
    assert "AILURUS_ADMIN_TOKEN" in b.log_path.read_text()
    ok = start_broker(
        tmp_path,
        "--kafka-addr",
        "127.0.0.1:0",
        "--admin-addr",
        "0.0.0.0:0",
        env={"AILURUS_ADMIN_TOKEN": TOKEN},
    )
    assert ok.stop() == 0
