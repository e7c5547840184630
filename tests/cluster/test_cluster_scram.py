"""SCRAM credentials in cluster mode: made through one broker, kept in etcd,
authenticated by every broker.

Three brokers on one etcd, each with a plaintext listener (anonymous, where the
admin clients and the replica fetchers connect) and a SASL_PLAINTEXT listener; the
authorizer is off, so only authentication is at stake. The topic's partition 0
is led by broker 2 and partition 1 by broker 3, so alice's producer logs in on
both and her consumer on broker 3.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.admin._users import ScramMechanism, UserScramCredentialUpsertion

from broker.client.auth import AuthenticationFailed, Security
from broker.client.client import KafkaClient
from tests._broker import BrokerProcess
from tests.cluster.e2e_cluster import PREFIX, Cluster, wait_for

pytestmark = pytest.mark.integration

USER = "alice"
PASSWORD = "alice-secret"
MECHANISM = "SCRAM-SHA-256"
TOPIC = "scram-orders"
TIMEOUT = 30


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(
        tmp_path,
        broker_args=(
            "--kafka-addr", "plaintext://127.0.0.1:0,sasl_plaintext://127.0.0.1:0",
            "--set", "authorizer.enabled=false",
            "--set", "connection.failed.authentication.delay.ms=10",
            "--set", "ailurus.login.max.failures=1000",
        ),
    )  # fmt: skip
    try:
        c.start()
        yield c
    finally:
        c.close()


def _sasl(b: BrokerProcess) -> str:
    info = b.listeners["sasl_plaintext"]
    return f"{info['host']}:{info['port']}"


def _logs_in(b: BrokerProcess) -> bool:
    """Whether the broker accepts alice's SCRAM login (False: refused)."""
    security = Security(user=USER, password=PASSWORD, mechanism=MECHANISM)
    client = KafkaClient(_sasl(b), timeout=10, retry_for=0, security=security)
    try:
        client.bootstrap()
    except AuthenticationFailed:
        return False
    finally:
        client.close()
    return True


def test_a_user_made_through_one_broker_logs_in_on_every_broker(
    cluster: Cluster,
) -> None:
    """kafka-python's AlterUserScramCredentials, bootstrapped at broker 1, stores
    alice's credential in etcd (Kafka's znode shape, no password); every broker
    accepts her login, she produces through brokers 2 and 3 and consumes from
    broker 3; deleting her through broker 2's admin API makes brokers 1 and 3
    refuse her."""
    b = cluster.brokers
    kp_admin = KafkaAdminClient(
        bootstrap_servers=cluster.bootstrap(1), request_timeout_ms=TIMEOUT * 1000
    )
    try:
        kp_admin.create_topics(
            [
                NewTopic(
                    TOPIC,
                    num_partitions=-1,
                    replication_factor=-1,
                    replica_assignments={0: [2], 1: [3]},
                )
            ],
            timeout_ms=TIMEOUT * 1000,
        )
        assert cluster.wait_leaders(TOPIC, 2) == {0: 2, 1: 3}
        assert not _logs_in(b[2])
        done = kp_admin.alter_user_scram_credentials(
            [UserScramCredentialUpsertion(USER, ScramMechanism.SCRAM_SHA_256, PASSWORD)]
        )
    finally:
        kp_admin.close()
    assert done == {USER: None}
    # kafka-python sends it to a broker of its choice (broker 1, its bootstrap,
    # unless it holds another connection): the others must accept alice too
    writers = [n for n, p in b.items() if p.events("scram_credentials_altered")]
    assert len(writers) == 1
    _, raw = cluster.etcd.ctl(
        "get", f"{PREFIX}/config/users/{USER}", "--print-value-only"
    )
    stored = json.loads(raw)
    assert stored["version"] == 1
    assert set(stored["config"]) == {MECHANISM}
    assert stored["config"][MECHANISM].endswith(",iterations=4096")
    assert PASSWORD not in raw

    wait_for("every broker to accept alice", lambda: all(map(_logs_in, b.values())))
    producer = KafkaProducer(
        bootstrap_servers=_sasl(b[2]),
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism=MECHANISM,
        sasl_plain_username=USER,
        sasl_plain_password=PASSWORD,
        max_block_ms=TIMEOUT * 1000,
    )
    try:
        for partition in (0, 1):
            sent = producer.send(TOPIC, b"order", partition=partition)
            assert sent.get(timeout=TIMEOUT).offset == 0
    finally:
        producer.close(timeout=5)
    consumer = Consumer(
        {
            "bootstrap.servers": _sasl(b[3]),
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": MECHANISM,
            "sasl.username": USER,
            "sasl.password": PASSWORD,
            "group.id": "scram-readers",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.assign([TopicPartition(TOPIC, 1, 0)])
        msg = wait_for("alice's record from broker 3", lambda: consumer.poll(1.0))
        assert msg.error() is None
        assert (msg.partition(), msg.offset(), msg.value()) == (1, 0, b"order")
    finally:
        consumer.close()

    assert b[2].admin("DELETE", f"/v1/security/users/{USER}") == {"username": USER}
    wait_for("broker 1 to refuse alice", lambda: not _logs_in(b[1]), TIMEOUT)
    assert not _logs_in(b[3])
    assert cluster.etcd.keys(f"{PREFIX}/config/users/") == []
