"""SCRAM users made through the Kafka APIs (KIP-554) and the Redpanda-shaped admin
API, then used by real clients to log in; the tooling APIs' authorisation.

One broker for the module with a ``sasl_plaintext`` listener (PLAIN and SCRAM) and
an anonymous ``plaintext`` one; ``admin`` is a super user. kafka-python and
confluent-kafka alter and describe credentials as ``admin``; the users they create
log in with SCRAM through confluent-kafka and kafka-python.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AdminClient,
    ScramCredentialInfo,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)
from confluent_kafka.admin import ScramMechanism as CkMechanism
from kafka.admin import KafkaAdminClient
from kafka.admin._users import (
    ScramMechanism,
)
from kafka.admin._users import (
    UserScramCredentialDeletion as KpDeletion,
)
from kafka.admin._users import (
    UserScramCredentialUpsertion as KpUpsertion,
)

from broker.client.auth import AuthenticationFailed, Security
from broker.client.client import KafkaClient
from broker.security.credentials import UserStore
from protocol.error_codes import ErrorCode
from protocol.messages.alter_user_scram_credentials import (
    AlterUserScramCredentialsRequest,
    AlterUserScramCredentialsResponse,
    ScramCredentialDeletion,
)
from protocol.messages.describe_client_quotas import (
    DescribeClientQuotasRequest,
    DescribeClientQuotasResponse,
)
from protocol.messages.describe_log_dirs import (
    DescribeLogDirsRequest,
    DescribeLogDirsResponse,
)
from protocol.messages.describe_producers import (
    DescribeProducersRequest,
    DescribeProducersResponse,
)
from protocol.messages.describe_producers import TopicRequest as ProducersTopic
from protocol.messages.describe_topic_partitions import (
    DescribeTopicPartitionsRequest,
    DescribeTopicPartitionsResponse,
    TopicRequest,
)
from protocol.messages.describe_user_scram_credentials import (
    DescribeUserScramCredentialsRequest,
    DescribeUserScramCredentialsResponse,
)
from protocol.messages.offset_delete import (
    OffsetDeleteRequest,
    OffsetDeleteRequestPartition,
    OffsetDeleteRequestTopic,
    OffsetDeleteResponse,
)
from tests.security.broker_proc import Broker, RawClient, start_broker

pytestmark = pytest.mark.integration

ADMIN_PASSWORD = "admin-secret"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    tmp = tmp_path_factory.mktemp("scram")
    UserStore.in_data_dir(tmp / "data").set_password("admin", ADMIN_PASSWORD)
    b = start_broker(
        tmp,
        "--kafka-addr", "sasl_plaintext://127.0.0.1:0,plaintext://127.0.0.1:0",
        "--admin-addr", "127.0.0.1:0",
        "--set", "super.users=User:admin",
        "--set", "connection.failed.authentication.delay.ms=10",
        "--set", "ailurus.login.max.failures=1000",
        timeout=30,
    )  # fmt: skip
    yield b
    assert b.stop() == 0


def _ck(broker: Broker, user: str, password: str, mech: str) -> AdminClient:
    return AdminClient(
        {
            "bootstrap.servers": broker.addr("sasl_plaintext"),
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": mech,
            "sasl.username": user,
            "sasl.password": password,
        }
    )


def _kp(broker: Broker, user: str, password: str, mech: str) -> KafkaAdminClient:
    return KafkaAdminClient(
        bootstrap_servers=broker.addr("sasl_plaintext"),
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism=mech,
        sasl_plain_username=user,
        sasl_plain_password=password,
        request_timeout_ms=15000,
    )


def _logs_in(broker: Broker, user: str, password: str, mech: str) -> bool:
    """Whether librdkafka can log in as ``user`` and fetch metadata."""
    client = _ck(broker, user, password, mech)
    try:
        client.list_topics(timeout=8)
    except KafkaException:
        return False
    return True


def _refused(broker: Broker, user: str, password: str, mech: str) -> bool:
    """Whether the broker refuses a SCRAM/PLAIN login (our client: a refused login
    fails at once, where librdkafka would retry until its timeout)."""
    security = Security(user=user, password=password, mechanism=mech)
    client = KafkaClient(
        broker.addr("sasl_plaintext"), timeout=10, retry_for=0, security=security
    )
    try:
        client.bootstrap()
    except AuthenticationFailed:
        return True
    finally:
        client.close()
    return False


def _user() -> str:
    return f"user-{uuid.uuid4().hex[:8]}"


def test_kafka_python_creates_a_user_that_logs_in(broker: Broker) -> None:
    """An upsertion through kafka-python makes a SCRAM-SHA-256 user that librdkafka
    logs in as; describing it shows the mechanism and iterations; deleting the
    credential ends the logins."""
    user = _user()
    admin = _kp(broker, "admin", ADMIN_PASSWORD, "SCRAM-SHA-512")
    try:
        done = admin.alter_user_scram_credentials(
            [KpUpsertion(user, ScramMechanism.SCRAM_SHA_256, "pw-1", iterations=8192)]
        )
        assert done == {user: None}
        described = admin.describe_user_scram_credentials([user])[user]
        assert described["error"] is None
        assert [
            (int(c["mechanism"]), c["iterations"])
            for c in described["credential_infos"]
        ] == [(1, 8192)]
        assert _logs_in(broker, user, "pw-1", "SCRAM-SHA-256")
        assert _refused(broker, user, "wrong", "SCRAM-SHA-256")
        assert _refused(broker, user, "pw-1", "SCRAM-SHA-512")
        gone = admin.alter_user_scram_credentials(
            [KpDeletion(user, ScramMechanism.SCRAM_SHA_256)]
        )
        assert gone == {user: None}
        missing = admin.describe_user_scram_credentials([user])[user]
        assert missing["error"] is not None
        assert _refused(broker, user, "pw-1", "SCRAM-SHA-256")
    finally:
        admin.close()


def test_confluent_kafka_alters_and_describes(broker: Broker) -> None:
    """confluent-kafka upserts a SCRAM-SHA-512 credential, kafka-python logs in with
    it, and deleting a credential that does not exist is RESOURCE_NOT_FOUND."""
    user = _user()
    admin = _ck(broker, "admin", ADMIN_PASSWORD, "SCRAM-SHA-256")
    info = ScramCredentialInfo(CkMechanism.SCRAM_SHA_512, 4096)
    futures = admin.alter_user_scram_credentials(
        [UserScramCredentialUpsertion(user, info, b"pw-2")]
    )
    futures[user].result(timeout=20)
    described = admin.describe_user_scram_credentials([user])[user].result(timeout=20)
    assert [(i.mechanism, i.iterations) for i in described.scram_credential_infos] == [
        (CkMechanism.SCRAM_SHA_512, 4096)
    ]
    every = admin.describe_user_scram_credentials().result(timeout=20)
    assert {"admin", user} <= set(every)
    client = _kp(broker, user, "pw-2", "SCRAM-SHA-512")
    try:
        assert isinstance(client.list_topics(), list)
    finally:
        client.close()
    other = _user()
    failed = admin.alter_user_scram_credentials(
        [UserScramCredentialDeletion(other, CkMechanism.SCRAM_SHA_256)]
    )
    with pytest.raises(KafkaException) as err:
        failed[other].result(timeout=20)
    assert err.value.args[0].code() == ErrorCode.RESOURCE_NOT_FOUND


def test_anonymous_clients_may_not_touch_credentials(broker: Broker) -> None:
    """Without cluster ALTER/DESCRIBE (the anonymous listener) both APIs answer
    CLUSTER_AUTHORIZATION_FAILED and nothing changes."""
    raw = RawClient(broker.addr("plaintext"))
    try:
        alter = raw.request(
            51,
            0,
            AlterUserScramCredentialsRequest(
                deletions=(ScramCredentialDeletion(name="admin", mechanism=2),)
            ),
        )
        assert isinstance(alter, AlterUserScramCredentialsResponse)
        assert [(r.user, r.error_code) for r in alter.results] == [
            ("admin", ErrorCode.CLUSTER_AUTHORIZATION_FAILED)
        ]
        describe = raw.request(50, 0, DescribeUserScramCredentialsRequest(users=None))
        assert isinstance(describe, DescribeUserScramCredentialsResponse)
        assert describe.error_code == ErrorCode.CLUSTER_AUTHORIZATION_FAILED
        assert describe.results == ()
    finally:
        raw.sock.close()
    assert _logs_in(broker, "admin", ADMIN_PASSWORD, "SCRAM-SHA-512")


# -- the admin API ---------------------------------------------------------------------


def _http(
    broker: Broker, method: str, path: str, body: object = None
) -> tuple[int, object]:
    assert broker.admin is not None
    host, port = broker.admin
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        f"http://{host}:{port}{path}", data=data, method=method
    )
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_admin_api_users_as_redpanda(broker: Broker) -> None:
    """POST /v1/security/users makes a user that logs in with its algorithm; GET
    lists it; a second POST is 400; PUT changes the password; DELETE removes it."""
    user = _user()
    body = {"username": user, "password": "pw-3", "algorithm": "SCRAM-SHA-256"}
    assert _http(broker, "POST", "/v1/security/users", body)[0] == 200
    status, names = _http(broker, "GET", "/v1/security/users")
    assert status == 200
    assert isinstance(names, list)
    assert user in names
    assert _logs_in(broker, user, "pw-3", "SCRAM-SHA-256")
    assert _http(broker, "POST", "/v1/security/users", body)[0] == 400
    bad = {"username": _user(), "password": "x", "algorithm": "MD5"}
    assert _http(broker, "POST", "/v1/security/users", bad)[0] == 400
    update = {"password": "pw-4", "algorithm": "SCRAM-SHA-512"}
    assert _http(broker, "PUT", f"/v1/security/users/{user}", update)[0] == 200
    assert _logs_in(broker, user, "pw-4", "SCRAM-SHA-512")
    assert _refused(broker, user, "pw-3", "SCRAM-SHA-256")
    assert _http(broker, "DELETE", f"/v1/security/users/{user}")[0] == 200
    assert _http(broker, "DELETE", f"/v1/security/users/{user}")[0] == 404
    assert _refused(broker, user, "pw-4", "SCRAM-SHA-512")


def test_user_store_file_is_shared_with_the_cli(broker: Broker, tmp_path: Path) -> None:
    """A user made through the Kafka API is in the same store ``ailurus user`` reads
    (the broker's data dir), with only the derived keys."""
    user = _user()
    admin = _kp(broker, "admin", ADMIN_PASSWORD, "SCRAM-SHA-256")
    try:
        admin.alter_user_scram_credentials(
            [KpUpsertion(user, ScramMechanism.SCRAM_SHA_512, "pw-5")]
        )
    finally:
        admin.close()
    data_dir = broker.log_path.parent / "data"
    raw = (data_dir / "security" / "users.json").read_text()
    assert user in raw
    assert "pw-5" not in raw
    record = UserStore.in_data_dir(data_dir).get(user)
    assert record is not None
    assert set(record.credentials) == {"SCRAM-SHA-512"}


def test_anonymous_clients_are_denied_the_other_tooling_apis(broker: Broker) -> None:
    """Without ACLs the log dirs, quotas, topic partitions, producers and offset
    deletion answer their authorization errors, as Kafka does."""
    raw = RawClient(broker.addr("plaintext"))
    try:
        dirs = raw.request(35, 4, DescribeLogDirsRequest(topics=None))
        assert isinstance(dirs, DescribeLogDirsResponse)
        assert (dirs.error_code, dirs.results) == (
            ErrorCode.CLUSTER_AUTHORIZATION_FAILED,
            (),
        )
        quotas = raw.request(48, 1, DescribeClientQuotasRequest(components=()))
        assert isinstance(quotas, DescribeClientQuotasResponse)
        assert quotas.error_code == ErrorCode.CLUSTER_AUTHORIZATION_FAILED
        dtp = raw.request(
            75, 0, DescribeTopicPartitionsRequest(topics=(TopicRequest(name="t"),))
        )
        assert isinstance(dtp, DescribeTopicPartitionsResponse)
        assert [(t.name, t.error_code) for t in dtp.topics] == [
            ("t", ErrorCode.TOPIC_AUTHORIZATION_FAILED)
        ]
        producers = raw.request(
            61,
            0,
            DescribeProducersRequest(
                topics=(ProducersTopic(name="t", partition_indexes=(0,)),)
            ),
        )
        assert isinstance(producers, DescribeProducersResponse)
        assert [p.error_code for t in producers.topics for p in t.partitions] == [
            ErrorCode.TOPIC_AUTHORIZATION_FAILED
        ]
        deleted = raw.request(
            47,
            0,
            OffsetDeleteRequest(
                group_id="g",
                topics=(
                    OffsetDeleteRequestTopic(
                        name="t",
                        partitions=(OffsetDeleteRequestPartition(partition_index=0),),
                    ),
                ),
            ),
        )
        assert isinstance(deleted, OffsetDeleteResponse)
        assert deleted.error_code == ErrorCode.GROUP_AUTHORIZATION_FAILED
    finally:
        raw.sock.close()
