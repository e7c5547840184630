"""ACLs in cluster mode: created through one broker, kept in etcd, enforced by another.

Two brokers on one etcd, each with a plaintext listener (its clients act as
``ANONYMOUS``, a super user here, as the brokers' replica fetchers are) and a
SASL_PLAINTEXT listener where ``alice`` logs in. The topic's one replica is on
broker 2, so alice's produce is authorised by broker 2 from the ACL broker 1 wrote.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic as KafkaNewTopic
from kafka.errors import TopicAuthorizationFailedError

from broker.security.credentials import UserStore
from tests._broker import BrokerProcess, start_cluster_broker
from tests.cluster.e2e_cluster import wait_for
from tests.cluster.etcd import EtcdProcess

pytestmark = pytest.mark.integration

PASSWORD = "alice-secret"
TOPIC = "acl-orders"
TIMEOUT = 30


@pytest.fixture
def brokers(etcd: EtcdProcess, tmp_path: Path) -> Iterator[dict[int, BrokerProcess]]:
    started: dict[int, BrokerProcess] = {}
    try:
        for node in (1, 2):
            data = tmp_path / f"data-{node}"
            UserStore.in_data_dir(data).set_password("alice", PASSWORD)
            started[node] = start_cluster_broker(
                data,
                node,
                etcd.url("/acls"),
                "--kafka-addr", "plaintext://127.0.0.1:0,sasl_plaintext://127.0.0.1:0",
                "--set", "super.users=User:ANONYMOUS",
                "--set", "offsets.topic.num.partitions=2",
                session_timeout_ms=3000,
                log_path=tmp_path / f"broker-{node}.log",
                ready_path=tmp_path / f"ready-{node}.json",
                timeout=30,
            )  # fmt: skip
        yield started
    finally:
        for b in started.values():
            b.stop()


def _addr(b: BrokerProcess, listener: str) -> str:
    info = b.listeners[listener]
    return f"{info['host']}:{info['port']}"


def _produce_as_alice(b: BrokerProcess) -> int:
    producer = KafkaProducer(
        bootstrap_servers=_addr(b, "sasl_plaintext"),
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-256",
        sasl_plain_username="alice",
        sasl_plain_password=PASSWORD,
        max_block_ms=TIMEOUT * 1000,
        retries=0,
    )
    try:
        return int(producer.send(TOPIC, b"v").get(timeout=TIMEOUT).offset)
    finally:
        producer.close(timeout=5)


def _refused(b: BrokerProcess) -> bool:
    try:
        _produce_as_alice(b)
    except TopicAuthorizationFailedError:
        return True
    return False


def _etcd_value(etcd: EtcdProcess, key: str) -> object:
    out = subprocess.run(
        ["etcdctl", "--endpoints", etcd.endpoint, "get", key, "--print-value-only"],
        capture_output=True,
        check=True,
        timeout=30,
        env={**os.environ, "ETCDCTL_API": "3"},
    )
    text = out.stdout.decode().strip()
    return json.loads(text) if text else None


def test_acl_created_through_one_broker_is_enforced_by_another(
    brokers: dict[int, BrokerProcess], etcd: EtcdProcess
) -> None:
    """CreateAcls on broker 1 lets alice write to a partition broker 2 leads (the
    ACL kept in etcd in Kafka's ZooKeeper layout); DeleteAcls on broker 2 takes it
    away again on both."""
    one = AdminClient({"bootstrap.servers": _addr(brokers[1], "plaintext")})
    two = AdminClient({"bootstrap.servers": _addr(brokers[2], "plaintext")})
    kp_admin = KafkaAdminClient(
        bootstrap_servers=_addr(brokers[1], "plaintext"), request_timeout_ms=30000
    )
    try:
        kp_admin.create_topics(
            [
                KafkaNewTopic(
                    TOPIC,
                    num_partitions=-1,
                    replication_factor=-1,
                    replica_assignments={0: [2]},
                )
            ],
            timeout_ms=30000,
        )
    finally:
        kp_admin.close()
    assert _refused(brokers[2])

    binding = AclBinding(
        ResourceType.TOPIC,
        TOPIC,
        ResourcePatternType.LITERAL,
        "User:alice",
        "*",
        AclOperation.WRITE,
        AclPermissionType.ALLOW,
    )
    assert one.create_acls([binding])[binding].result(timeout=TIMEOUT) is None
    wait_for("broker 2 to allow alice", lambda: not _refused(brokers[2]), TIMEOUT)
    key = f"/acls/acls/literal/Topic/{TOPIC}"
    assert _etcd_value(etcd, key) == {
        "version": 1,
        "acls": [
            {
                "principal": "User:alice",
                "permissionType": "Allow",
                "operation": "Write",
                "host": "*",
            }
        ],
    }

    every = AclBindingFilter(
        ResourceType.ANY,
        None,
        ResourcePatternType.ANY,
        None,
        None,
        AclOperation.ANY,
        AclPermissionType.ANY,
    )
    assert two.describe_acls(every).result(timeout=TIMEOUT) == [binding]
    deleted = two.delete_acls([every])[every].result(timeout=TIMEOUT)
    assert deleted == [binding]
    wait_for("broker 2 to refuse alice again", lambda: _refused(brokers[2]), TIMEOUT)
    wait_for(
        "broker 1 to see the delete",
        lambda: one.describe_acls(every).result(timeout=TIMEOUT) == [],
        TIMEOUT,
    )
    assert _etcd_value(etcd, key) is None
