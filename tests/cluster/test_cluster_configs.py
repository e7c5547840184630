"""Config changes in a three-broker cluster over a real etcd: a topic's overrides
and the dynamic broker configs changed through one broker are seen and applied by
every broker."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource

from protocol.messages.describe_configs import (
    DescribeConfigsRequest,
    DescribeConfigsResource,
    DescribeConfigsResponse,
)
from protocol.messages.incremental_alter_configs import (
    AlterableConfig,
    AlterConfigsResource,
    IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse,
)
from tests._broker import request
from tests.cluster.e2e_cluster import PREFIX, Cluster, wait_for


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        c.start()
        yield c
    finally:
        c.close()


def describe(c: Cluster, node: int, kind: int, name: str, key: str) -> tuple[str, int]:
    """(value, source) of one config as broker ``node`` answers it."""
    with c.brokers[node].connect() as sock:
        resp = request(
            sock,
            32,
            4,
            DescribeConfigsRequest(
                resources=(
                    DescribeConfigsResource(
                        resource_type=kind,
                        resource_name=name,
                        configuration_keys=(key,),
                    ),
                ),
                include_synonyms=True,
                include_documentation=False,
            ),
        )
    assert isinstance(resp, DescribeConfigsResponse)
    [config] = resp.results[0].configs
    assert config.value is not None
    return config.value, config.config_source


def alter_broker(
    c: Cluster, via: int, name: str, key: str, value: str | None, op: int = 0
) -> None:
    """SET (or ``op``) one dynamic broker config of ``name`` ("" = cluster-wide)
    via broker ``via``."""
    with c.brokers[via].connect() as sock:
        resp = request(
            sock,
            44,
            1,
            IncrementalAlterConfigsRequest(
                resources=(
                    AlterConfigsResource(
                        resource_type=4,
                        resource_name=name,
                        configs=(
                            AlterableConfig(name=key, config_operation=op, value=value),
                        ),
                    ),
                ),
                validate_only=False,
            ),
        )
    assert isinstance(resp, IncrementalAlterConfigsResponse)
    assert resp.responses[0].error_code == 0, resp.responses[0].error_message


def test_config_changes_reach_every_broker(cluster: Cluster) -> None:
    """A topic override set through a follower is in the topic's etcd record and
    applied by the leader (a bigger record is refused); dynamic broker configs of
    the cluster and of one broker reach the brokers they concern."""
    c = cluster
    topic = "tuned"
    c.create_topic(1, topic, 1, replication_factor=3)
    [leader] = c.wait_leaders(topic, 1).values()
    follower = next(i for i in sorted(c.live) if i != leader)
    admin = c.admin(follower)
    res = ConfigResource(
        "TOPIC",
        topic,
        incremental_configs=[
            ConfigEntry(
                "max.message.bytes", "1024", incremental_operation=AlterConfigOpType.SET
            )
        ],
    )
    admin.incremental_alter_configs([res])[res].result(30)
    _, record = c.etcd.ctl("get", f"{PREFIX}/topics/{topic}", "--print-value-only")
    assert json.loads(record)["configs"] == {"max.message.bytes": "1024"}
    for node in sorted(c.live):
        wait_for(
            f"broker {node} to apply the override",
            lambda node=node: (
                describe(c, node, 2, topic, "max.message.bytes") == ("1024", 1)
            ),
        )
    producer = Producer({"bootstrap.servers": c.bootstrap(follower), "linger.ms": 0})
    errors: list[KafkaError | None] = []
    producer.produce(topic, b"x" * 3000, on_delivery=lambda e, m: errors.append(e))
    producer.flush(30)
    assert len(errors) == 1
    assert errors[0] is not None
    assert errors[0].code() == KafkaError.MSG_SIZE_TOO_LARGE

    # the cluster-wide default through one broker, then broker 3's own value
    alter_broker(c, follower, "", "log.retention.bytes", "777777")
    alter_broker(c, 1, "3", "log.roll.ms", "4444444")
    for node in sorted(c.live):
        wait_for(
            f"broker {node} to apply the cluster-wide default",
            lambda node=node: (
                describe(c, node, 2, topic, "retention.bytes") == ("777777", 3)
            ),
        )
    wait_for(
        "broker 3 to apply its own value",
        lambda: describe(c, 3, 2, topic, "segment.ms") == ("4444444", 2),
    )
    assert describe(c, 1, 2, topic, "segment.ms") == ("604800000", 5)
    assert describe(c, 1, 4, "3", "log.roll.ms") == ("4444444", 2)
    keys = c.etcd.keys(f"{PREFIX}/config/brokers/")
    assert sorted(keys) == [
        f"{PREFIX}/config/brokers/3",
        f"{PREFIX}/config/brokers/<default>",
    ]

    # deleting the cluster-wide value: every broker falls back to the default
    alter_broker(c, leader, "", "log.retention.bytes", None, op=1)
    for node in sorted(c.live):
        wait_for(
            f"broker {node} to drop the cluster-wide default",
            lambda node=node: (
                describe(c, node, 2, topic, "retention.bytes") == ("-1", 5)
            ),
        )
    assert c.etcd.keys(f"{PREFIX}/config/brokers/") == [f"{PREFIX}/config/brokers/3"]
