"""AlterConfigs, IncrementalAlterConfigs and DescribeConfigs through real clients:
confluent-kafka's and kafka-python's admin clients against a running broker, the
changes live on running partitions and persisted across a restart."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewTopic,
)
from kafka.admin import ConfigResource as KpResource
from kafka.admin import ConfigResourceType, KafkaAdminClient

from protocol.messages import alter_configs as ac
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
from tests._broker import ROOT, BrokerProcess, request, start_broker

pytestmark = pytest.mark.integration

JS_RUNNER = ROOT / "tests" / "js" / "kafka_client.js"

SET, DELETE, APPEND, SUBTRACT = (
    AlterConfigOpType.SET,
    AlterConfigOpType.DELETE,
    AlterConfigOpType.APPEND,
    AlterConfigOpType.SUBTRACT,
)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    tmp = tmp_path_factory.mktemp("configs")
    b = start_broker(
        tmp / "data", "--set", "log.retention.check.interval.ms=300", timeout=60
    )
    yield b
    assert b.stop() == 0


@pytest.fixture(scope="module")
def admin(broker: BrokerProcess) -> AdminClient:
    return AdminClient({"bootstrap.servers": broker.bootstrap})


def new_topic(admin: AdminClient, **configs: str) -> str:
    name = f"cfg-{uuid.uuid4().hex[:8]}"
    admin.create_topics([NewTopic(name, 1, config=configs)])[name].result(30)
    return name


def incremental(
    admin: AdminClient, kind: str, name: str, *entries: tuple[str, str | None, object]
) -> None:
    res = ConfigResource(
        kind,
        name,
        incremental_configs=[
            ConfigEntry(k, v, incremental_operation=op) for k, v, op in entries
        ],
    )
    admin.incremental_alter_configs([res])[res].result(30)


def incremental_error(
    admin: AdminClient, kind: str, name: str, *entries: tuple[str, str | None, object]
) -> KafkaError:
    with pytest.raises(KafkaException) as info:
        incremental(admin, kind, name, *entries)
    error = info.value.args[0]
    assert isinstance(error, KafkaError)
    return error


def described(admin: AdminClient, kind: str, name: str) -> dict[str, ConfigEntry]:
    res = ConfigResource(kind, name)
    return dict(admin.describe_configs([res])[res].result(30))


def raw_incremental(
    broker: BrokerProcess, name: str, *configs: tuple[str, int, str | None]
) -> tuple[int, str | None]:
    """IncrementalAlterConfigs of a BROKER resource, raw: (error code, message)."""
    with broker.connect() as sock:
        resp = request(
            sock,
            44,
            1,
            IncrementalAlterConfigsRequest(
                resources=(
                    AlterConfigsResource(
                        resource_type=4,
                        resource_name=name,
                        configs=tuple(
                            AlterableConfig(name=k, config_operation=op, value=v)
                            for k, op, v in configs
                        ),
                    ),
                ),
                validate_only=False,
            ),
        )
    assert isinstance(resp, IncrementalAlterConfigsResponse)
    return resp.responses[0].error_code, resp.responses[0].error_message


def test_incremental_ops_on_a_topic(admin: AdminClient) -> None:
    """SET, APPEND, SUBTRACT and DELETE edit a topic's overrides; DescribeConfigs
    shows each value and where it comes from."""
    topic = new_topic(admin, **{"segment.ms": "600000"})
    incremental(
        admin,
        "TOPIC",
        topic,
        ("retention.ms", "3600000", SET),
        ("cleanup.policy", "compact", APPEND),
        ("leader.replication.throttled.replicas", "0:0,1:0", APPEND),
    )
    got = described(admin, "TOPIC", topic)
    assert got["retention.ms"].value == "3600000"
    assert got["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert got["cleanup.policy"].value == "delete,compact"
    assert got["leader.replication.throttled.replicas"].value == "0:0,1:0"
    assert got["segment.ms"].value == "600000"
    incremental(
        admin,
        "TOPIC",
        topic,
        ("cleanup.policy", "delete", SUBTRACT),
        ("leader.replication.throttled.replicas", "0:0", SUBTRACT),
        ("retention.ms", None, DELETE),
    )
    got = described(admin, "TOPIC", topic)
    assert got["cleanup.policy"].value == "compact"
    assert got["leader.replication.throttled.replicas"].value == "1:0"
    assert got["retention.ms"].value == "604800000"
    assert got["retention.ms"].source == ConfigSource.DEFAULT_CONFIG.value
    assert got["segment.ms"].value == "600000"  # untouched by the edits


def test_refusals_carry_kafkas_codes(admin: AdminClient) -> None:
    """APPEND to a non-list key, unknown keys and bad values: INVALID_CONFIG;
    an unknown topic: UNKNOWN_TOPIC_OR_PARTITION; a static broker setting:
    INVALID_CONFIG; nothing changes."""
    topic = new_topic(admin)
    e = incremental_error(admin, "TOPIC", topic, ("retention.ms", "5", APPEND))
    assert e.code() == KafkaError.INVALID_CONFIG
    assert "not LIST" in e.str()
    e = incremental_error(admin, "TOPIC", topic, ("no.such.key", "1", SET))
    assert e.code() == KafkaError.INVALID_CONFIG
    assert "Unknown topic config name: no.such.key" in e.str()
    e = incremental_error(admin, "TOPIC", topic, ("retention.ms", "soon", SET))
    assert e.code() == KafkaError.INVALID_CONFIG
    e = incremental_error(admin, "TOPIC", topic, ("cleanup.policy", "nope", SET))
    assert e.code() == KafkaError.INVALID_CONFIG
    e = incremental_error(admin, "TOPIC", "no-such-topic", ("retention.ms", "5", SET))
    assert e.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    e = incremental_error(admin, "BROKER", "0", ("num.partitions", "3", SET))
    assert e.code() == KafkaError.INVALID_CONFIG
    assert "Cannot update these configs dynamically" in e.str()
    got = described(admin, "TOPIC", topic)
    assert all(entry.source != 1 for entry in got.values())  # no override at all


def test_validate_only_changes_nothing(admin: AdminClient) -> None:
    """validate_only checks (a bad value is still refused) and applies nothing."""
    topic = new_topic(admin)
    res = ConfigResource(
        "TOPIC",
        topic,
        incremental_configs=[
            ConfigEntry("retention.ms", "1000", incremental_operation=SET)
        ],
    )
    assert (
        admin.incremental_alter_configs([res], validate_only=True)[res].result(30)
        is None
    )
    bad = ConfigResource(
        "TOPIC",
        topic,
        incremental_configs=[
            ConfigEntry("retention.ms", "-9", incremental_operation=SET)
        ],
    )
    with pytest.raises(KafkaException):
        admin.incremental_alter_configs([bad], validate_only=True)[bad].result(30)
    broker_res = ConfigResource(
        "BROKER",
        "0",
        incremental_configs=[
            ConfigEntry("log.retention.ms", "1000", incremental_operation=SET)
        ],
    )
    admin.incremental_alter_configs([broker_res], validate_only=True)[
        broker_res
    ].result(30)
    assert described(admin, "TOPIC", topic)["retention.ms"].value == "604800000"
    assert described(admin, "BROKER", "0")["log.retention.ms"].source == 5


def test_kafka_python_alter_configs_replaces_the_whole_set(
    broker: BrokerProcess, admin: AdminClient
) -> None:
    """kafka-python's AlterConfigs (not incremental) replaces every override;
    its DescribeConfigs reads them back."""
    topic = new_topic(admin, **{"segment.ms": "600000"})
    kp = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        res = KpResource(
            ConfigResourceType.TOPIC, topic, configs={"retention.ms": "5000"}
        )
        assert kp.alter_configs([res], incremental=False) == {"topic": {topic: "OK"}}
        got = kp.describe_configs([KpResource(ConfigResourceType.TOPIC, topic)])
        modified = got["topic"][topic]
        # the client resends the other overrides itself (AlterConfigs replaces)
        assert {k: v["value"] for k, v in modified.items()} == {
            "retention.ms": "5000",
            "segment.ms": "600000",
        }
        assert modified["retention.ms"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"
        bad = KpResource(ConfigResourceType.TOPIC, topic, configs={"retention.ms": "x"})
        answer = kp.alter_configs([bad], incremental=False)["topic"][topic]
        assert "[Error 40]" in str(answer)
    finally:
        kp.close()
    # a raw AlterConfigs naming one key drops the others' overrides
    with broker.connect() as sock:
        resp = request(
            sock,
            33,
            2,
            ac.AlterConfigsRequest(
                resources=(
                    ac.AlterConfigsResource(
                        resource_type=2,
                        resource_name=topic,
                        configs=(
                            ac.AlterableConfig(name="retention.ms", value="6000"),
                        ),
                    ),
                ),
                validate_only=False,
            ),
        )
    assert isinstance(resp, ac.AlterConfigsResponse)
    assert resp.responses[0].error_code == 0
    got_now = described(admin, "TOPIC", topic)
    assert got_now["retention.ms"].value == "6000"
    assert got_now["segment.ms"].source == ConfigSource.DEFAULT_CONFIG.value


def test_kafkajs_alters_and_describes_configs(
    broker: BrokerProcess, admin: AdminClient
) -> None:
    """kafkajs' admin.alterConfigs sets a topic's overrides; its describeConfigs
    reads them and the broker's configs (static ones read-only)."""
    topic = new_topic(admin)
    spec = {
        "brokers": [broker.bootstrap],
        "topic": topic,
        "configs": {"retention.ms": "86400000", "cleanup.policy": "compact"},
    }
    proc = subprocess.run(
        ["node", str(JS_RUNNER), "configs", json.dumps(spec)],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    [answer] = [json.loads(line) for line in proc.stdout.decode().splitlines() if line]
    assert answer["altered"] == [[topic, 0]]
    assert answer["topic"]["retention.ms"] == ["86400000", False]
    assert answer["topic"]["cleanup.policy"] == ["compact", False]
    assert answer["broker"]["num.partitions"] == ["1", True]
    assert answer["broker"]["log.retention.ms"][1] is False


def test_lowered_max_message_bytes_refuses_bigger_records_at_once(
    broker: BrokerProcess, admin: AdminClient
) -> None:
    """max.message.bytes lowered on a live topic: a bigger record is refused with
    MESSAGE_TOO_LARGE, without a restart."""
    topic = new_topic(admin)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
    errors: list[KafkaError | None] = []

    def send(size: int) -> KafkaError | None:
        errors.clear()
        producer.produce(topic, b"x" * size, on_delivery=lambda e, m: errors.append(e))
        producer.flush(30)
        assert len(errors) == 1
        return errors[0]

    assert send(3000) is None
    incremental(admin, "TOPIC", topic, ("max.message.bytes", "1024", SET))
    error = send(3000)
    assert error is not None
    assert error.code() == KafkaError.MSG_SIZE_TOO_LARGE
    assert send(100) is None


def test_timestamp_bounds_apply_at_once(
    broker: BrokerProcess, admin: AdminClient
) -> None:
    """message.timestamp.before.max.ms set on a live topic: a record stamped
    earlier is refused with INVALID_TIMESTAMP; LogAppendTime lifts the check."""
    topic = new_topic(admin)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
    errors: list[KafkaError | None] = []
    old = int(time.time() * 1000) - 2 * 3600 * 1000  # two hours ago

    def send() -> KafkaError | None:
        errors.clear()
        producer.produce(
            topic, b"v", timestamp=old, on_delivery=lambda e, m: errors.append(e)
        )
        producer.flush(30)
        assert len(errors) == 1
        return errors[0]

    assert send() is None
    incremental(
        admin, "TOPIC", topic, ("message.timestamp.before.max.ms", "3600000", SET)
    )
    error = send()
    assert error is not None
    assert error.code() == KafkaError.INVALID_TIMESTAMP
    incremental(admin, "TOPIC", topic, ("message.timestamp.type", "LogAppendTime", SET))
    assert send() is None


def test_lowered_retention_deletes_old_segments(
    broker: BrokerProcess, admin: AdminClient
) -> None:
    """retention.ms lowered on a live topic: the next retention pass deletes the
    closed segments whose records are older."""
    topic = new_topic(admin, **{"segment.bytes": "1024"})
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
    old = int(time.time() * 1000) - 2 * 3600 * 1000  # two hours ago
    for _ in range(20):
        producer.produce(topic, b"r" * 200, timestamp=old)
        producer.flush(30)

    def log_start() -> int:
        summary = broker.admin("GET", f"/v1/topics/{topic}")
        return int(summary["partitions"][0]["log_start_offset"])

    assert log_start() == 0
    incremental(admin, "TOPIC", topic, ("retention.ms", "3600000", SET))
    deadline = time.monotonic() + 30
    while log_start() == 0:
        assert time.monotonic() < deadline, "retention did not delete old segments"
        time.sleep(0.1)
    assert log_start() > 0


def test_dynamic_broker_defaults_apply_to_topics(
    broker: BrokerProcess, admin: AdminClient
) -> None:
    """A per-broker dynamic config becomes the default of every topic that does
    not override it (synonyms in Kafka's order); deleting it restores the
    default."""
    topic = new_topic(admin)
    incremental(admin, "BROKER", "0", ("log.segment.bytes", "2000000", SET))
    try:
        got = described(admin, "TOPIC", topic)["segment.bytes"]
        assert got.value == "2000000"
        assert got.source == ConfigSource.DYNAMIC_BROKER_CONFIG.value
        entry = described(admin, "BROKER", "0")["log.segment.bytes"]
        assert entry.value == "2000000"
        assert not entry.is_read_only
        static = described(admin, "BROKER", "0")["num.partitions"]
        assert static.is_read_only
        assert static.source == ConfigSource.STATIC_BROKER_CONFIG.value
        # the raw answer carries the synonyms, highest precedence first
        with broker.connect() as sock:
            resp = request(
                sock,
                32,
                4,
                DescribeConfigsRequest(
                    resources=(
                        DescribeConfigsResource(
                            resource_type=2,
                            resource_name=topic,
                            configuration_keys=("segment.bytes",),
                        ),
                    ),
                    include_synonyms=True,
                    include_documentation=True,
                ),
            )
        assert isinstance(resp, DescribeConfigsResponse)
        [config] = resp.results[0].configs
        assert [(s.name, s.value, s.source) for s in config.synonyms] == [
            ("log.segment.bytes", "2000000", 2),
            ("log.segment.bytes", "1073741824", 5),
        ]
        assert config.config_type == 3  # INT
    finally:
        incremental(admin, "BROKER", "0", ("log.segment.bytes", None, DELETE))
    assert described(admin, "TOPIC", topic)["segment.bytes"].value == "1073741824"


def test_cluster_wide_default_and_list_ops_on_brokers(broker: BrokerProcess) -> None:
    """The "" broker resource (cluster-wide default) takes APPEND on
    log.cleanup.policy; the per-broker value beats it."""

    def alter(
        name: str, *configs: tuple[str, int, str | None]
    ) -> tuple[int, str | None]:
        return raw_incremental(broker, name, *configs)

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    topic = new_topic(admin)
    assert alter("", ("log.cleanup.policy", 2, "compact")) == (0, None)
    try:
        assert described(admin, "TOPIC", topic)["cleanup.policy"].value == (
            "delete,compact"
        )
        assert described(admin, "TOPIC", topic)["cleanup.policy"].source == 3
        assert alter("0", ("log.cleanup.policy", 0, "delete")) == (0, None)
        assert described(admin, "TOPIC", topic)["cleanup.policy"].value == "delete"
        assert alter("", ("log.retention.ms", 2, "1"))[0] == 40  # not a list
        assert alter("x", ("log.retention.ms", 0, "1"))[0] == 42
        assert alter("7", ("log.retention.ms", 0, "1")) == (
            42,
            "Unexpected broker id, expected 0 or empty string, but received 7",
        )
    finally:
        assert alter("", ("log.cleanup.policy", 1, None)) == (0, None)
        assert alter("0", ("log.cleanup.policy", 1, None)) == (0, None)
    assert described(admin, "TOPIC", topic)["cleanup.policy"].value == "delete"
    assert described(admin, "TOPIC", topic)["cleanup.policy"].source == 5


def test_alter_configs_replaces_a_brokers_whole_set(broker: BrokerProcess) -> None:
    """AlterConfigs on a BROKER resource replaces its dynamic configs: a key left
    out of the request loses its value; an empty set removes them all."""

    def replace_set(*configs: tuple[str, str]) -> int:
        with broker.connect() as sock:
            resp = request(
                sock,
                33,
                1,
                ac.AlterConfigsRequest(
                    resources=(
                        ac.AlterConfigsResource(
                            resource_type=4,
                            resource_name="0",
                            configs=tuple(
                                ac.AlterableConfig(name=k, value=v) for k, v in configs
                            ),
                        ),
                    ),
                    validate_only=False,
                ),
            )
        assert isinstance(resp, ac.AlterConfigsResponse)
        return resp.responses[0].error_code

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    try:
        assert (
            replace_set(("log.roll.jitter.ms", "5"), ("log.preallocate", "true")) == 0
        )
        got = described(admin, "BROKER", "0")
        assert got["log.roll.jitter.ms"].value == "5"
        assert got["log.preallocate"].value == "true"
        assert replace_set(("log.preallocate", "true")) == 0
        got = described(admin, "BROKER", "0")
        assert got["log.roll.jitter.ms"].source == ConfigSource.DEFAULT_CONFIG.value
        assert got["log.preallocate"].source == ConfigSource.DYNAMIC_BROKER_CONFIG.value
        assert replace_set(("num.partitions", "2")) == 40
    finally:
        assert replace_set() == 0
    got = described(admin, "BROKER", "0")
    assert got["log.preallocate"].source == ConfigSource.DEFAULT_CONFIG.value


def test_changes_survive_a_restart(tmp_path: Path) -> None:
    """Topic overrides stay in the topic's manifest and dynamic broker configs in
    broker-configs.json: a restarted broker applies both."""
    data = tmp_path / "data"
    b = start_broker(data, log_dir=tmp_path / "logs", timeout=60)
    try:
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        topic = new_topic(admin)
        incremental(admin, "TOPIC", topic, ("retention.ms", "7200000", SET))
        incremental(admin, "BROKER", "0", ("log.roll.ms", "3600000", SET))
        # the cluster-wide default is the "" broker resource (a raw request:
        # neither client library sends an empty broker name)
        assert raw_incremental(b, "", ("log.retention.bytes", 0, "999999")) == (
            0,
            None,
        )
    finally:
        assert b.stop() == 0
    stored = json.loads((data / "broker-configs.json").read_text())
    assert stored["brokers"] == {
        "0": {"log.roll.ms": "3600000"},
        "<default>": {"log.retention.bytes": "999999"},
    }
    b = start_broker(data, log_dir=tmp_path / "logs", timeout=60)
    try:
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        got = described(admin, "TOPIC", topic)
        assert got["retention.ms"].value == "7200000"
        assert got["segment.ms"].value == "3600000"
        assert got["segment.ms"].source == ConfigSource.DYNAMIC_BROKER_CONFIG.value
        assert got["retention.bytes"].value == "999999"
        assert (
            got["retention.bytes"].source
            == ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value
        )
    finally:
        assert b.stop() == 0
