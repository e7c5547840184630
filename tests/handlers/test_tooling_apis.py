"""The APIs admin tools call (Kafka UI, AKHQ, AdminClients), through real clients.

One broker for the module (tests use their own topics and groups). kafka-python's
KafkaAdminClient drives DescribeLogDirs, DescribeTopicPartitions, OffsetDelete
and DescribeProducers; confluent-kafka (librdkafka) has none of these in its
Python AdminClient (its ``describe_topics`` uses Metadata, checked too); what no
client sends (DescribeLogDirs v0, DescribeClientQuotas, DescribeTopicPartitions'
cursor errors) goes as raw requests through ``protocol/``. The SCRAM APIs are in
``test_scram_apis.py``.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka import TopicCollection
from confluent_kafka.admin import AdminClient
from kafka import KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic
from kafka.errors import GroupIdNotFoundError, UnknownTopicOrPartitionError
from kafka.structs import OffsetAndMetadata

from protocol.error_codes import ErrorCode
from protocol.messages.describe_client_quotas import (
    ComponentData,
    DescribeClientQuotasRequest,
    DescribeClientQuotasResponse,
)
from protocol.messages.describe_log_dirs import (
    DescribableLogDirTopic,
    DescribeLogDirsRequest,
    DescribeLogDirsResponse,
)
from protocol.messages.describe_topic_partitions import (
    Cursor,
    DescribeTopicPartitionsRequest,
    DescribeTopicPartitionsResponse,
    TopicRequest,
)
from tests._broker import BrokerProcess, request, start_broker
from tests._kafka_python import group_consumer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    b = start_broker(tmp_path_factory.mktemp("tooling") / "data", timeout=30)
    yield b
    assert b.stop() == 0


@pytest.fixture(scope="module")
def admin(broker: BrokerProcess) -> Iterator[KafkaAdminClient]:
    client = KafkaAdminClient(
        bootstrap_servers=broker.bootstrap, request_timeout_ms=20000
    )
    yield client
    client.close()


def _topic(admin: KafkaAdminClient, prefix: str, partitions: int) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    admin.create_topics([NewTopic(name, partitions, 1)])
    return name


def _produce(broker: BrokerProcess, topic: str, partition: int, n: int) -> None:
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    try:
        for i in range(n):
            producer.send(topic, f"v{i}".encode(), partition=partition).get(timeout=20)
    finally:
        producer.close(timeout=10)


def _at(offset: int) -> OffsetAndMetadata:
    return OffsetAndMetadata(offset, "", -1)


def _raw(broker: BrokerProcess, api_key: int, version: int, body: object) -> object:
    with socket.create_connection((broker.host, broker.port), timeout=20) as sock:
        return request(sock, api_key, version, body)


# -- DescribeLogDirs ------------------------------------------------------------------


def test_describe_log_dirs_reports_sizes_lag_and_volume(
    broker: BrokerProcess, admin: KafkaAdminClient
) -> None:
    """kafka-python sees the one log dir with each partition's size, zero lag and
    the volume's total and usable bytes."""
    topic = _topic(admin, "logdirs", 2)
    _produce(broker, topic, 1, 5)
    [answer] = admin.describe_log_dirs()
    [log_dir] = answer["log_dirs"]
    assert log_dir["error_code"] == 0
    assert log_dir["log_dir"] == str(broker.data_dir.resolve() / "kafka")
    assert 0 < log_dir["usable_bytes"] <= log_dir["total_bytes"]
    [mine] = [t for t in log_dir["topics"] if t["name"] == topic]
    sizes = {p["partition_index"]: p for p in mine["partitions"]}
    assert set(sizes) == {0, 1}
    assert sizes[1]["partition_size"] > sizes[0]["partition_size"] >= 0
    assert all(p["offset_lag"] == 0 and not p["is_future_key"] for p in sizes.values())


def test_describe_log_dirs_v0_names_only_held_partitions(
    broker: BrokerProcess, admin: KafkaAdminClient
) -> None:
    """A v0 request for named partitions answers those the broker holds; unknown
    partitions and topics are left out, and v0 carries no volume sizes."""
    topic = _topic(admin, "logdirs0", 1)
    resp = _raw(
        broker,
        35,
        0,
        DescribeLogDirsRequest(
            topics=(
                DescribableLogDirTopic(topic=topic, partitions=(0, 7)),
                DescribableLogDirTopic(topic="no-such-topic", partitions=(0,)),
            )
        ),
    )
    assert isinstance(resp, DescribeLogDirsResponse)
    [result] = resp.results
    assert [
        (t.name, [p.partition_index for p in t.partitions]) for t in result.topics
    ] == [(topic, [0])]
    assert result.total_bytes == -1  # not in v0


# -- DescribeTopicPartitions --------------------------------------------------------


def test_describe_topic_partitions_pages_with_a_cursor(
    broker: BrokerProcess, admin: KafkaAdminClient
) -> None:
    """Topics come in name order, at most the limit of partitions per answer, and
    the cursor resumes where the last answer stopped."""
    base = f"dtp-{uuid.uuid4().hex[:8]}"
    a, b = f"{base}-a", f"{base}-b"
    admin.create_topics([NewTopic(a, 3, 1), NewTopic(b, 2, 1)])
    seen: list[tuple[str, int]] = []
    cursor = None
    for _ in range(5):
        page = admin.describe_topic_partitions(
            [b, a], response_partition_limit=2, cursor=cursor
        )
        for t in page["topics"]:
            assert t["error_code"] == 0
            seen += [(t["name"], p["partition_index"]) for p in t["partitions"]]
            assert all(p["leader_id"] == 0 for p in t["partitions"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [(a, 0), (a, 1), (a, 2), (b, 0), (b, 1)]
    first = admin.describe_topic_partitions([a, b], response_partition_limit=2)
    assert first["next_cursor"] == {"topic_name": a, "partition_index": 2}


def test_describe_topic_partitions_errors(
    broker: BrokerProcess, admin: KafkaAdminClient
) -> None:
    """An unknown topic is UNKNOWN_TOPIC_OR_PARTITION; a cursor naming a topic not
    in the list is INVALID_REQUEST; an empty list describes every topic."""
    topic = _topic(admin, "dtperr", 1)
    page = admin.describe_topic_partitions([topic, "no-such-dtp"])
    codes = {t["name"]: t["error_code"] for t in page["topics"]}
    assert codes == {topic: 0, "no-such-dtp": ErrorCode.UNKNOWN_TOPIC_OR_PARTITION}
    bad = _raw(
        broker,
        75,
        0,
        DescribeTopicPartitionsRequest(
            topics=(TopicRequest(name=topic),),
            cursor=Cursor(topic_name="elsewhere", partition_index=0),
        ),
    )
    assert isinstance(bad, DescribeTopicPartitionsResponse)
    assert [t.error_code for t in bad.topics] == [ErrorCode.INVALID_REQUEST]
    every = _raw(broker, 75, 0, DescribeTopicPartitionsRequest(topics=()))
    assert isinstance(every, DescribeTopicPartitionsResponse)
    assert topic in {t.name for t in every.topics}


def test_confluent_describe_topics(
    broker: BrokerProcess, admin: KafkaAdminClient
) -> None:
    """librdkafka's describe_topics (Metadata underneath) lists the partitions."""
    topic = _topic(admin, "cdescribe", 2)
    client = AdminClient({"bootstrap.servers": broker.bootstrap})
    desc = client.describe_topics(TopicCollection([topic]))[topic].result(timeout=20)
    assert [p.id for p in desc.partitions] == [0, 1]
    assert all(p.leader.id == 0 for p in desc.partitions)


# -- OffsetDelete ------------------------------------------------------------------


def test_offset_delete_of_an_empty_group(
    broker: BrokerProcess, admin: KafkaAdminClient
) -> None:
    """kafka-python deletes one committed offset of a group without members; the
    others stay; a partition that does not exist is UNKNOWN_TOPIC_OR_PARTITION and
    an unknown group GROUP_ID_NOT_FOUND."""
    topic, group = _topic(admin, "odel", 2), f"g-{uuid.uuid4().hex[:8]}"
    p0, p1 = TopicPartition(topic, 0), TopicPartition(topic, 1)
    admin.alter_group_offsets(group, {p0: _at(0), p1: _at(0)})
    gone = TopicPartition(topic, 5)
    result = admin.delete_group_offsets(group, [p0, gone])
    assert {tp: err.errno for tp, err in result.items()} == {
        p0: 0,
        gone: ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
    }
    left = admin.list_group_offsets({group: None})[group]
    assert set(left) == {p1}
    with pytest.raises(GroupIdNotFoundError):
        admin.delete_group_offsets(f"none-{uuid.uuid4().hex[:8]}", [p0])


def test_offset_delete_refuses_topics_a_live_member_consumes(
    broker: BrokerProcess, admin: KafkaAdminClient
) -> None:
    """While a kafka-python member consumes topic A, A's offsets answer
    GROUP_SUBSCRIBED_TO_TOPIC and B's (committed earlier) are deleted."""
    a, b = _topic(admin, "oda", 1), _topic(admin, "odb", 1)
    group = f"g-{uuid.uuid4().hex[:8]}"
    admin.alter_group_offsets(group, {TopicPartition(b, 0): _at(0)})
    _produce(broker, a, 0, 1)
    consumer = group_consumer(
        a,
        bootstrap_servers=broker.bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    try:
        got = 0
        deadline = time.monotonic() + 30
        while got < 1 and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                got += len(records)
        assert got == 1
        assert consumer.assignment() == {TopicPartition(a, 0)}
        consumer.commit()  # the record's offset: a commit for topic A
        result = admin.delete_group_offsets(
            group, [TopicPartition(a, 0), TopicPartition(b, 0)]
        )
        assert {tp.topic: err.errno for tp, err in result.items()} == {
            a: ErrorCode.GROUP_SUBSCRIBED_TO_TOPIC,
            b: 0,
        }
        left = admin.list_group_offsets({group: None})[group]
        assert set(left) == {TopicPartition(a, 0)}
    finally:
        consumer.close()


# -- DescribeProducers -------------------------------------------------------------


def test_describe_producers_shows_an_idempotent_producer(
    broker: BrokerProcess, admin: KafkaAdminClient
) -> None:
    """An idempotent kafka-python producer's id, epoch, last sequence and last
    timestamp are described; a missing partition is UNKNOWN_TOPIC_OR_PARTITION."""
    topic = _topic(admin, "producers", 1)
    before_ms = int(time.time() * 1000)
    producer = KafkaProducer(
        bootstrap_servers=broker.bootstrap, enable_idempotence=True, acks="all"
    )
    try:
        for i in range(3):
            producer.send(topic, f"v{i}".encode(), partition=0).get(timeout=20)
    finally:
        producer.close(timeout=10)
    tp = TopicPartition(topic, 0)
    state = admin.describe_producers([tp])[tp]
    [active] = state.active_producers
    assert active.producer_id >= 0
    assert active.producer_epoch == 0
    assert active.last_sequence == 2
    assert before_ms - 1000 <= active.last_timestamp <= int(time.time() * 1000) + 1000
    assert active.coordinator_epoch == -1
    assert active.current_transaction_start_offset == -1
    with pytest.raises(UnknownTopicOrPartitionError):
        admin.describe_producers([TopicPartition(topic, 9)], broker_id=0)


# -- DescribeClientQuotas ----------------------------------------------------------


@pytest.mark.parametrize("version", [0, 1])
def test_describe_client_quotas_is_empty(broker: BrokerProcess, version: int) -> None:
    """No quotas are configured: every filter matches nothing; an unknown match
    type is INVALID_REQUEST."""
    ok = _raw(
        broker,
        48,
        version,
        DescribeClientQuotasRequest(
            components=(ComponentData(entity_type="user", match_type=2, match=None),)
        ),
    )
    assert isinstance(ok, DescribeClientQuotasResponse)
    assert (ok.error_code, ok.entries) == (0, ())
    bad = _raw(
        broker,
        48,
        version,
        DescribeClientQuotasRequest(
            components=(ComponentData(entity_type="user", match_type=9, match="x"),)
        ),
    )
    assert isinstance(bad, DescribeClientQuotasResponse)
    assert (bad.error_code, bad.entries) == (ErrorCode.INVALID_REQUEST, None)


def test_kafka_python_sees_the_new_apis_advertised(admin: KafkaAdminClient) -> None:
    """ApiVersions announces every tooling API with the versions served."""
    versions = {int(k): tuple(v) for k, v in admin.api_versions().items()}
    wanted = {35: (0, 4), 47: (0, 0), 48: (0, 1), 50: (0, 0), 51: (0, 0)}
    wanted |= {61: (0, 0), 75: (0, 0)}
    assert {k: versions.get(k) for k in wanted} == wanted


def test_broker_configs_name_a_version_for_admin_tools(
    admin: KafkaAdminClient,
) -> None:
    """The broker's configs carry the protocol version and topic deletion flag
    Kafka UI reads to decide which pages it offers."""
    answer = admin.describe_configs(
        [ConfigResource(ConfigResourceType.BROKER, "0")], config_filter="All"
    )
    [configs] = [c for by_name in answer.values() for c in by_name.values()]
    assert str(configs["inter.broker.protocol.version"]["value"]).startswith("3.9")
    assert configs["delete.topic.enable"]["value"] == "true"
