"""The ACL APIs (CreateAcls, DescribeAcls, DeleteAcls) driven by real admin clients.

One broker per module on a SASL_PLAINTEXT listener: ``admin`` is a super user,
``alice``, ``bob`` and ``carol`` have no rules of their own; every test works on its
own topic names and principals, so the tests do not disturb each other. The ACLs
made here are enforced by the broker (a user refused, then allowed), prefixed
patterns and DENY are Kafka's, the APIs are refused to a non-super user, and the
authorized-operations bitfields follow the ACLs.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from confluent_kafka import KafkaError, KafkaException, TopicCollection
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ConfigResource,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import (
    ACL,
    ACLFilter,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    ResourcePattern,
    ResourcePatternFilter,
)
from kafka.admin import ResourceType as KpResourceType
from kafka.errors import (
    ClusterAuthorizationFailedError,
    NoError,
    TopicAuthorizationFailedError,
)

from broker.cli.main import cli
from broker.security.credentials import UserStore

from .broker_proc import ROOT, Broker, start_broker

pytestmark = pytest.mark.integration

PASSWORDS = {
    "admin": "admin-secret",
    "alice": "alice-secret",
    "bob": "bob-secret",
    "carol": "carol-secret",
}
TIMEOUT = 30


def make_users(data_dir: Path) -> None:
    store = UserStore.in_data_dir(data_dir)
    for name, pw in PASSWORDS.items():
        store.set_password(name, pw)


def start_acl_broker(tmp: Path) -> Broker:
    return start_broker(
        tmp,
        "--kafka-addr", "sasl_plaintext://127.0.0.1:0",
        "--admin-addr", "none",
        "--set", "super.users=User:admin",
        "--set", "connection.failed.authentication.delay.ms=10",
        "--set", "num.partitions=1",
    )  # fmt: skip


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    tmp = tmp_path_factory.mktemp("aclbroker")
    make_users(tmp / "data")
    b = start_acl_broker(tmp)
    yield b
    assert b.stop() == 0


def ck_conf(broker: Broker, user: str) -> dict[str, str]:
    return {
        "bootstrap.servers": broker.addr("sasl_plaintext"),
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanisms": "SCRAM-SHA-256",
        "sasl.username": user,
        "sasl.password": PASSWORDS[user],
    }


def ck_admin(broker: Broker, user: str = "admin") -> AdminClient:
    return AdminClient(ck_conf(broker, user))


def kp_conf(broker: Broker, user: str) -> dict[str, object]:
    return {
        "bootstrap_servers": broker.addr("sasl_plaintext"),
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": user,
        "sasl_plain_password": PASSWORDS[user],
        "request_timeout_ms": TIMEOUT * 1000,
    }


def name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def create_topics(broker: Broker, *names: str) -> None:
    admin = ck_admin(broker)  # kept referenced: the futures need its handle
    futures = admin.create_topics(
        [NewTopic(n, num_partitions=1, replication_factor=1) for n in names]
    )
    for f in futures.values():
        f.result(timeout=TIMEOUT)


def allow(
    topic: str,
    user: str,
    op: AclOperation,
    *,
    pattern: ResourcePatternType = ResourcePatternType.LITERAL,
    permission: AclPermissionType = AclPermissionType.ALLOW,
    rtype: ResourceType = ResourceType.TOPIC,
) -> AclBinding:
    return AclBinding(rtype, topic, pattern, f"User:{user}", "*", op, permission)


def ck_create(broker: Broker, *bindings: AclBinding) -> None:
    admin = ck_admin(broker)
    for f in admin.create_acls(list(bindings)).values():
        assert f.result(timeout=TIMEOUT) is None


def kp_produce(broker: Broker, user: str, topic: str) -> int:
    """Produce one record as ``user``; its offset (raises what the broker said)."""
    producer = KafkaProducer(
        **kp_conf(broker, user), max_block_ms=TIMEOUT * 1000, retries=0
    )
    try:
        return int(producer.send(topic, b"v").get(timeout=TIMEOUT).offset)
    finally:
        producer.close(timeout=5)


# -- confluent-kafka ---------------------------------------------------------------


def test_created_acl_lets_a_refused_user_produce(broker: Broker) -> None:
    """A user refused a topic may write to it once an ALLOW WRITE ACL exists."""
    topic = name("acl-write")
    create_topics(broker, topic)
    with pytest.raises(TopicAuthorizationFailedError):
        kp_produce(broker, "alice", topic)
    ck_create(broker, allow(topic, "alice", AclOperation.WRITE))
    assert kp_produce(broker, "alice", topic) == 0


def test_confluent_describe_and_delete_round_trip(broker: Broker) -> None:
    """confluent-kafka lists the ACLs it created by filter and deletes them."""
    topic = name("acl-ck")
    admin = ck_admin(broker)
    ck_create(
        broker,
        allow(topic, "bob", AclOperation.READ),
        allow(topic, "bob", AclOperation.DESCRIBE),
    )
    flt = AclBindingFilter(
        ResourceType.TOPIC,
        topic,
        ResourcePatternType.ANY,
        None,
        None,
        AclOperation.ANY,
        AclPermissionType.ANY,
    )
    found = admin.describe_acls(flt).result(timeout=TIMEOUT)
    assert {(b.name, b.principal, b.operation) for b in found} == {
        (topic, "User:bob", AclOperation.READ),
        (topic, "User:bob", AclOperation.DESCRIBE),
    }
    read_only = AclBindingFilter(
        ResourceType.TOPIC,
        topic,
        ResourcePatternType.LITERAL,
        "User:bob",
        "*",
        AclOperation.READ,
        AclPermissionType.ALLOW,
    )
    deleted = admin.delete_acls([read_only])[read_only].result(timeout=TIMEOUT)
    assert [(b.name, b.operation) for b in deleted] == [(topic, AclOperation.READ)]
    left = admin.describe_acls(flt).result(timeout=TIMEOUT)
    assert [b.operation for b in left] == [AclOperation.DESCRIBE]


def test_prefixed_allow_and_deny_overrides(broker: Broker) -> None:
    """A PREFIXED ALLOW covers every topic under the prefix; a DENY on one wins."""
    prefix = name("pre") + "-"
    open_topic, denied_topic = prefix + "open", prefix + "closed"
    create_topics(broker, open_topic, denied_topic)
    ck_create(
        broker,
        allow(prefix, "carol", AclOperation.ALL, pattern=ResourcePatternType.PREFIXED),
        allow(
            denied_topic,
            "carol",
            AclOperation.WRITE,
            permission=AclPermissionType.DENY,
        ),
    )
    assert kp_produce(broker, "carol", open_topic) == 0
    with pytest.raises(TopicAuthorizationFailedError):
        kp_produce(broker, "carol", denied_topic)


def test_non_super_user_is_refused_the_acl_apis(broker: Broker) -> None:
    """Without ALTER/DESCRIBE on the cluster the ACL APIs answer
    CLUSTER_AUTHORIZATION_FAILED (confluent-kafka creating, kafka-python listing:
    librdkafka's describe_acls drops a top-level error)."""
    admin = ck_admin(broker, "alice")
    binding = allow(name("acl-nope"), "alice", AclOperation.ALL)
    with pytest.raises(KafkaException) as created:
        admin.create_acls([binding])[binding].result(timeout=TIMEOUT)
    assert created.value.args[0].code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED
    kp = KafkaAdminClient(**kp_conf(broker, "alice"))
    try:
        with pytest.raises(ClusterAuthorizationFailedError):
            kp.describe_acls(
                ACLFilter(
                    principal=None,
                    host=None,
                    operation=ACLOperation.ANY,
                    permission_type=ACLPermissionType.ANY,
                    resource_pattern=ResourcePatternFilter(
                        KpResourceType.ANY, None, ACLResourcePatternType.ANY
                    ),
                )
            )
    finally:
        kp.close()


def test_authorized_operations_follow_the_acls(broker: Broker) -> None:
    """describe_cluster and describe_topics report the caller's operations."""
    topic = name("acl-ops")
    create_topics(broker, topic)
    ck_create(
        broker,
        allow(topic, "bob", AclOperation.READ),
        allow(
            "kafka-cluster",
            "bob",
            AclOperation.DESCRIBE,
            rtype=ResourceType.BROKER,
        ),
    )
    admin = ck_admin(broker, "bob")
    cluster = admin.describe_cluster(include_authorized_operations=True).result(
        timeout=TIMEOUT
    )
    assert set(cluster.authorized_operations) == {AclOperation.DESCRIBE}
    topics = admin.describe_topics(
        TopicCollection([topic]), include_authorized_operations=True
    )
    described = topics[topic].result(timeout=TIMEOUT)
    assert set(described.authorized_operations) == {
        AclOperation.READ,
        AclOperation.DESCRIBE,
    }
    superuser = ck_admin(broker)
    everything = superuser.describe_cluster(include_authorized_operations=True)
    ops = set(everything.result(timeout=TIMEOUT).authorized_operations)
    assert {AclOperation.ALTER, AclOperation.DESCRIBE, AclOperation.CREATE} <= ops


def test_group_authorized_operations_follow_the_acls(broker: Broker) -> None:
    """describe_consumer_groups reports the caller's operations on the group."""
    group = name("acl-group")
    ck_create(
        broker, allow(group, "carol", AclOperation.READ, rtype=ResourceType.GROUP)
    )
    admin = ck_admin(broker, "carol")
    futures = admin.describe_consumer_groups(
        [group], include_authorized_operations=True
    )
    described = futures[group].result(timeout=TIMEOUT)
    assert set(described.authorized_operations) == {
        AclOperation.READ,
        AclOperation.DESCRIBE,
    }


def test_describe_configs_follows_kafka_describe_configs_acls(broker: Broker) -> None:
    """DescribeConfigs of a topic is refused, then allowed by an ALTER_CONFIGS ACL
    (which implies DESCRIBE_CONFIGS, as in Kafka)."""
    topic = name("acl-configs")
    create_topics(broker, topic)
    admin = ck_admin(broker, "bob")
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    with pytest.raises(KafkaException) as refused:
        admin.describe_configs([resource])[resource].result(timeout=TIMEOUT)
    assert refused.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    ck_create(broker, allow(topic, "bob", AclOperation.ALTER_CONFIGS))
    configs = admin.describe_configs([resource])[resource].result(timeout=TIMEOUT)
    assert "retention.ms" in configs


# -- kafka-python ------------------------------------------------------------------


def test_kafka_python_create_filter_by_match_and_delete(broker: Broker) -> None:
    """kafka-python creates ACLs, a MATCH filter finds the literal, wildcard and
    prefixed ACLs that apply to one topic, and delete removes them."""
    base = name("kp")
    topic = base + "-orders"
    admin = KafkaAdminClient(**kp_conf(broker, "admin"))
    try:
        acls = [
            ACL(
                f"User:{who}",
                "*",
                ACLOperation.READ,
                ACLPermissionType.ALLOW,
                ResourcePattern(KpResourceType.TOPIC, res, pattern),
            )
            for who, res, pattern in (
                ("bob", topic, ACLResourcePatternType.LITERAL),
                ("carol", base, ACLResourcePatternType.PREFIXED),
                ("alice", base + "-other", ACLResourcePatternType.LITERAL),
            )
        ]
        result = admin.create_acls(acls)
        assert len(result["succeeded"]) == 3
        assert result["failed"] == []
        match = ACLFilter(
            principal=None,
            host=None,
            operation=ACLOperation.ANY,
            permission_type=ACLPermissionType.ANY,
            resource_pattern=ResourcePatternFilter(
                KpResourceType.TOPIC, topic, ACLResourcePatternType.MATCH
            ),
        )
        found, error = admin.describe_acls(match)
        assert error.errno == 0
        assert {a.principal for a in found} == {"User:bob", "User:carol"}
        deleted = admin.delete_acls([match])
        ((_, matched, failure),) = deleted
        assert failure is NoError
        assert {a.principal for a in matched} == {"User:bob", "User:carol"}
        left, _ = admin.describe_acls(match)
        assert left == []
    finally:
        admin.close()


def test_invalid_acl_gets_invalid_request(broker: Broker) -> None:
    """A CLUSTER ACL on another name than kafka-cluster is refused, the valid
    creation beside it is stored."""
    admin = ck_admin(broker)
    bad = allow("not-the-cluster", "bob", AclOperation.ALTER, rtype=ResourceType.BROKER)
    good = allow(name("acl-good"), "bob", AclOperation.READ)
    results = admin.create_acls([bad, good])
    with pytest.raises(KafkaException) as refused:
        results[bad].result(timeout=TIMEOUT)
    assert refused.value.args[0].code() == KafkaError.INVALID_REQUEST
    assert results[good].result(timeout=TIMEOUT) is None


# -- kafkajs -----------------------------------------------------------------------


def test_kafkajs_creates_describes_and_deletes(broker: Broker) -> None:
    """kafkajs' admin createAcls, describeAcls and deleteAcls round-trip."""
    node = shutil.which("node")
    assert node is not None, "node is required for the kafkajs tests"
    spec = {
        "brokers": [broker.addr("sasl_plaintext")],
        "username": "admin",
        "password": PASSWORDS["admin"],
        "topic": name("acl-js"),
        "principal": "User:bob",
    }
    proc = subprocess.run(
        [node, str(ROOT / "tests/js/acl_admin.js"), json.dumps(spec)],
        capture_output=True,
        timeout=60,
        check=True,
        cwd=ROOT / "tests/js",
    )
    result = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    read, allow = int(AclOperation.READ.value), int(AclPermissionType.ALLOW.value)
    assert result == {
        "described": [["User:bob", read, allow]],
        "deleted": 1,
        "left": 0,
    }


# -- persistence and the CLI -------------------------------------------------------


def test_acls_survive_a_restart_and_the_cli_round_trips(tmp_path: Path) -> None:
    """ACLs made with ``ailurus acl create`` are listed, kept across a restart,
    enforced, and removed with ``ailurus acl delete``."""
    make_users(tmp_path / "data")
    b = start_acl_broker(tmp_path)

    def as_admin(b: Broker) -> list[str]:
        return [
            "-X", f"brokers={b.addr('sasl_plaintext')}",
            "-X", "user=admin", "-X", f"pass={PASSWORDS['admin']}",
        ]  # fmt: skip

    runner = CliRunner()
    try:
        made = runner.invoke(
            cli,
            [*as_admin(b), "acl", "create", "--principal", "User:alice",
             "--operation", "write", "--operation", "describe",
             "--topic", "logs-", "--prefixed"],
        )  # fmt: skip
        assert made.exit_code == 0, made.output
        assert "created 2" in made.output
    finally:
        assert b.stop() == 0
    b = start_acl_broker(tmp_path)
    try:
        create_topics(b, "logs-app")
        assert kp_produce(b, "alice", "logs-app") == 0
        listed = runner.invoke(
            cli,
            [
                *as_admin(b),
                "--format",
                "json",
                "acl",
                "list",
                "--principal",
                "User:alice",
            ],
        )
        assert listed.exit_code == 0, listed.output
        assert '"pattern": "prefixed"' in listed.output
        assert '"operation": "write"' in listed.output
        gone = runner.invoke(
            cli,
            [*as_admin(b), "acl", "delete", "--principal", "User:alice",
             "--topic", "logs-", "--prefixed", "--operation", "write"],
        )  # fmt: skip
        assert gone.exit_code == 0, gone.output
        assert "deleted 1" in gone.output
        with pytest.raises(TopicAuthorizationFailedError):
            kp_produce(b, "alice", "logs-app")
        refused = runner.invoke(
            cli,
            ["-X", f"brokers={b.addr('sasl_plaintext')}", "-X", "user=alice",
             "-X", f"pass={PASSWORDS['alice']}", "acl", "list"],
        )  # fmt: skip
        assert refused.exit_code == 1
        assert "CLUSTER_AUTHORIZATION_FAILED" in refused.output
    finally:
        assert b.stop() == 0
