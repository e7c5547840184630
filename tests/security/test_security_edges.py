"""Security edges seen by real clients: the failed-login lockout is per (user, host),
OffsetFetch of a group the principal may not describe answers
GROUP_AUTHORIZATION_FAILED, and the admin token guards every admin route that
reveals data (committed offsets above all)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KpTopicPartition
from kafka.admin import KafkaAdminClient
from kafka.errors import GroupAuthorizationFailedError
from kafka.structs import OffsetAndMetadata

from broker.security.credentials import UserStore
from protocol.error_codes import ErrorCode
from protocol.messages.offset_fetch import (
    OffsetFetchRequest,
    OffsetFetchRequestGroup,
    OffsetFetchRequestTopic,
    OffsetFetchRequestTopics,
    OffsetFetchResponse,
)
from protocol.messages.sasl_authenticate import SaslAuthenticateRequest
from protocol.messages.sasl_handshake import SaslHandshakeRequest

from .broker_proc import Broker, RawClient, start_broker
from .test_security_clients import PASSWORDS, make_users, plain_login

pytestmark = pytest.mark.integration

LOCKED = "Too many failed logins"


def kp_sasl(broker: Broker, user: str) -> dict[str, object]:
    return {
        "bootstrap_servers": broker.addr("sasl_plaintext"),
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": user,
        "sasl_plain_password": PASSWORDS[user],
        "request_timeout_ms": 10000,
    }


def ck_sasl(broker: Broker, user: str) -> dict[str, object]:
    return {
        "bootstrap.servers": broker.addr("sasl_plaintext"),
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanisms": "PLAIN",
        "sasl.username": user,
        "sasl.password": PASSWORDS[user],
    }


# -- failed-login lockout -------------------------------------------------------


def test_lockout_is_per_user_and_host_with_a_host_wide_spray_limit(
    tmp_path: Path,
) -> None:
    """Wrong passwords for alice lock alice (from this host) but not bob; guesses over
    many user names lock the whole host at the higher host-wide limit."""
    make_users(tmp_path / "data")
    b = start_broker(
        tmp_path,
        "--kafka-addr", "sasl_plaintext://127.0.0.1:0",
        "--admin-addr", "none",
        "--set", "ailurus.login.max.failures=3",
        "--set", "ailurus.login.host.max.failures=6",
        "--set", "connection.failed.authentication.delay.ms=0",
    )  # fmt: skip
    try:
        addr = b.addr("sasl_plaintext")
        for _ in range(3):
            r = plain_login(addr, "alice", "guess")
            assert r.error_code == ErrorCode.SASL_AUTHENTICATION_FAILED
        locked = plain_login(addr, "alice", PASSWORDS["alice"])
        assert LOCKED in (locked.error_message or "")
        # bob, on the same host, logs in with kafka-python and produces.
        producer = KafkaProducer(max_block_ms=10000, **kp_sasl(b, "bob"))
        try:
            meta = producer.send(f"bobs-{uuid.uuid4().hex[:6]}", b"x").get(timeout=10)
            assert meta.offset == 0
        finally:
            producer.close(timeout=5)
        # A spray: one wrong guess each for new names until the host limit (6).
        assert plain_login(addr, "mallory0", "x").error_code != ErrorCode.NONE
        assert plain_login(addr, "mallory1", "x").error_code != ErrorCode.NONE
        sprayed = plain_login(addr, "mallory2", "x")
        assert sprayed.error_code == ErrorCode.SASL_AUTHENTICATION_FAILED
        refused = plain_login(addr, "bob", PASSWORDS["bob"])
        assert refused.error_code == ErrorCode.SASL_AUTHENTICATION_FAILED
        assert LOCKED in (refused.error_message or "")
        failed = b.events("sasl_authentication_failed")
        assert [e["locked_out"] for e in failed if e["reason"] != "rate_limited"] == [
            False,
            False,
            True,
            False,
            False,
            True,
        ]
    finally:
        assert b.stop() == 0


# -- OffsetFetch authorisation ---------------------------------------------------


@pytest.fixture(scope="module")
def sasl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    tmp = tmp_path_factory.mktemp("edges")
    make_users(tmp / "data")
    store = UserStore.in_data_dir(tmp / "data")
    bob = store.get("bob")
    assert bob is not None
    bobs_groups = {"resource": "group", "name": "bobs-", "pattern": "prefixed"}
    store.set_acls("bob", (*bob.acls, {**bobs_groups, "operations": ["describe"]}))
    b = start_broker(
        tmp,
        "--kafka-addr", "sasl_plaintext://127.0.0.1:0",
        "--admin-addr", "none",
        "--set", "super.users=User:admin",
        "--set", "connection.failed.authentication.delay.ms=10",
    )  # fmt: skip
    yield b
    assert b.stop() == 0


def committed_group(b: Broker, topic: str) -> str:
    """A group (alice may read any) with a committed offset on ``topic``."""
    group = f"g-{uuid.uuid4().hex[:8]}"
    producer = KafkaProducer(**kp_sasl(b, "alice"))
    try:
        producer.send(topic, b"v").get(timeout=10)
    finally:
        producer.close(timeout=5)
    consumer = KafkaConsumer(
        group_id=group, enable_auto_commit=False, **kp_sasl(b, "alice")
    )
    try:
        tp = KpTopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.commit({tp: OffsetAndMetadata(1, "", -1)})
    finally:
        consumer.close()
    return group


def sasl_raw(b: Broker, user: str) -> RawClient:
    client = RawClient(b.addr("sasl_plaintext"))
    h = client.request(17, 1, SaslHandshakeRequest(mechanism="PLAIN"))
    assert h.error_code == 0  # type: ignore[attr-defined]
    r = client.request(
        36,
        2,
        SaslAuthenticateRequest(auth_bytes=f"\0{user}\0{PASSWORDS[user]}".encode()),
    )
    assert r.error_code == 0  # type: ignore[attr-defined]
    return client


def test_offset_fetch_of_an_undescribable_group_is_denied_per_version(
    sasl_broker: Broker,
) -> None:
    """bob may describe only groups "bobs-*": OffsetFetch v1..v7 of another group
    answers 30 top-level (v2+) and per partition; v8+ answers 30 for the denied
    group next to the allowed one's offsets."""
    topic = f"bobs-{uuid.uuid4().hex[:6]}"
    group = committed_group(sasl_broker, f"orders-{uuid.uuid4().hex[:6]}")
    client = sasl_raw(sasl_broker, "bob")
    try:
        for version in (1, 2, 5, 7):
            resp = client.request(
                9,
                version,
                OffsetFetchRequest(
                    group_id=group,
                    topics=(
                        OffsetFetchRequestTopic(name=topic, partition_indexes=(0,)),
                    ),
                ),
            )
            assert isinstance(resp, OffsetFetchResponse)
            if version >= 2:
                assert resp.error_code == ErrorCode.GROUP_AUTHORIZATION_FAILED
            codes = [p.error_code for t in resp.topics for p in t.partitions]
            assert codes == [ErrorCode.GROUP_AUTHORIZATION_FAILED], version
        for version in (8, 9):
            resp = client.request(
                9,
                version,
                OffsetFetchRequest(
                    groups=(
                        OffsetFetchRequestGroup(
                            group_id=group,
                            topics=(
                                OffsetFetchRequestTopics(
                                    name=topic, partition_indexes=(0,)
                                ),
                            ),
                        ),
                        OffsetFetchRequestGroup(group_id="bobs-app", topics=None),
                    )
                ),
            )
            assert isinstance(resp, OffsetFetchResponse)
            assert sorted((g.group_id, g.error_code) for g in resp.groups) == [
                ("bobs-app", ErrorCode.NONE),
                (group, ErrorCode.GROUP_AUTHORIZATION_FAILED),
            ], version
            denied = next(g for g in resp.groups if g.group_id == group)
            assert denied.topics == ()
    finally:
        client.close()
    # With admin (a super user) in a v8 request of two groups, both are answered.
    admin = sasl_raw(sasl_broker, "admin")
    try:
        resp = admin.request(
            9,
            8,
            OffsetFetchRequest(
                groups=(
                    OffsetFetchRequestGroup(group_id=group, topics=None),
                    OffsetFetchRequestGroup(group_id="other", topics=None),
                )
            ),
        )
        assert isinstance(resp, OffsetFetchResponse)
        assert sorted((g.group_id, g.error_code) for g in resp.groups) == [
            (group, ErrorCode.NONE),
            ("other", ErrorCode.NONE),
        ]
    finally:
        admin.close()


def test_kafka_python_offset_fetch_denied_is_group_authorization_failed(
    sasl_broker: Broker,
) -> None:
    """kafka-python's admin client fetching another group's offsets as bob fails
    with GroupAuthorizationFailedError, promptly."""
    group = committed_group(sasl_broker, f"orders-{uuid.uuid4().hex[:6]}")
    admin = KafkaAdminClient(**kp_sasl(sasl_broker, "bob"))
    try:
        start = time.monotonic()
        with pytest.raises(GroupAuthorizationFailedError):
            admin.list_group_offsets(group)
        assert time.monotonic() - start < 9  # under the 10 s request timeout
    finally:
        admin.close()


def test_confluent_kafka_offsets_of_a_denied_group_fail_with_30(
    sasl_broker: Broker,
) -> None:
    """librdkafka as bob: the admin client's group-offset listing fails with
    GROUP_AUTHORIZATION_FAILED at once, and a consumer of that group gets the same
    error from poll(). (Consumer.committed() waits for a coordinator until its own
    timeout: librdkafka retries a denied FindCoordinator, as it does against Kafka.)"""
    topic = f"orders-{uuid.uuid4().hex[:6]}"
    group = committed_group(sasl_broker, topic)
    admin = AdminClient(ck_sasl(sasl_broker, "bob"))
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0)])
    future = admin.list_consumer_group_offsets([request], request_timeout=9)[group]
    with pytest.raises(KafkaException) as err:
        future.result()
    assert err.value.args[0].code() == KafkaError.GROUP_AUTHORIZATION_FAILED
    del future, admin  # the admin client has no close(): let it go now
    consumer = Consumer({**ck_sasl(sasl_broker, "bob"), "group.id": group})
    try:
        consumer.assign([TopicPartition(topic, 0)])
        codes = []
        deadline = time.monotonic() + 15
        while not codes and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is not None:
                codes.append(msg.error().code())
        assert codes == [KafkaError.GROUP_AUTHORIZATION_FAILED]
    finally:
        consumer.close()


# -- admin API token ---------------------------------------------------------------

TOKEN = "a-long-enough-admin-token"


def http_get(b: Broker, path: str, token: str | None = None) -> tuple[int, bytes]:
    assert b.admin is not None
    req = urllib.request.Request(f"http://{b.admin[0]}:{b.admin[1]}{path}")
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_admin_token_guards_every_route_that_reveals_data(tmp_path: Path) -> None:
    """With a token set, a group's committed offsets (and topics, snapshots,
    metrics) need it; the readiness probe and the broker list do not."""
    b = start_broker(
        tmp_path,
        "--kafka-addr", "127.0.0.1:0",
        "--admin-addr", "127.0.0.1:0",
        env={"AILURUS_ADMIN_TOKEN": TOKEN},
    )  # fmt: skip
    try:
        bootstrap = next(iter(b.listeners.values()))
        cfg: dict[str, object] = {"bootstrap_servers": f"{bootstrap[0]}:{bootstrap[1]}"}
        topic, group = "paid", "billing"
        producer = KafkaProducer(**cfg)
        try:
            producer.send(topic, b"v").get(timeout=10)
        finally:
            producer.close(timeout=5)
        consumer = KafkaConsumer(group_id=group, enable_auto_commit=False, **cfg)
        try:
            tp = KpTopicPartition(topic, 0)
            consumer.assign([tp])
            consumer.commit({tp: OffsetAndMetadata(1, "", -1)})
        finally:
            consumer.close()

        status, body = http_get(b, f"/v1/groups/{group}")
        assert status == 401
        assert b"offset" not in body
        status, body = http_get(b, f"/v1/groups/{group}", token=TOKEN)
        assert status == 200
        offsets = json.loads(body)["offsets"]
        assert [(o["topic"], o["partition"], o["offset"]) for o in offsets] == [
            (topic, 0, 1)
        ]
        assert http_get(b, f"/v1/groups/{group}", token="wrong-token-wrong")[0] == 401
        private = (
            "/v1/groups",
            "/v1/topics",
            f"/v1/topics/{topic}",
            "/v1/snapshots",
            "/v1/snapshots/schedule",
            "/metrics",
            "/v1/cluster",
            "/v1/partitions",
            f"/v1/partitions/{topic}",
            "/v1/no-such-route",
        )
        for path in private:
            assert http_get(b, path)[0] == 401, path
            assert http_get(b, path, token=TOKEN)[0] != 401, path
        assert http_get(b, "/v1/status/ready") == (200, b'{"status": "ready"}\n')
        assert http_get(b, "/v1/brokers")[0] == 200
        denied = b.events("admin_unauthorized")
        assert {"path": f"/v1/groups/{group}", "method": "GET"}.items() <= denied[
            0
        ].items()
    finally:
        assert b.stop() == 0
