"""Broker loggers (BROKER_LOGGER config resources, KIP-412) and the feature flags of
ApiVersions (KIP-584), against a running broker.

One broker for the module (node id 3, so another id is refused); tests that change a
logger's level put it back. kafka-python's KafkaAdminClient drives describe/alter on
BROKER_LOGGER and ``describe_features``; confluent-kafka cannot name the resource
type (librdkafka's ResourceType stops at TRANSACTIONAL_ID), so refusals go as raw
requests through ``protocol/``. The ApiVersions v3 answer is decoded by kio, the
test-only codec oracle, as well as by our codec.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import time
from collections.abc import Iterator

import pytest
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient
from kio.index import load_response_schema
from kio.serial import entity_reader

from protocol.codec import encode_request
from protocol.error_codes import ErrorCode
from protocol.headers import RequestHeader
from protocol.messages import alter_configs as ac
from protocol.messages.api_versions import (
    ApiVersionsRequest,
    ApiVersionsResponse,
    FinalizedFeatureKey,
    SupportedFeatureKey,
)
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
from tests._broker import BrokerProcess, recv_frame, request, start_broker

pytestmark = pytest.mark.integration

NODE = 3
LOGGER = 8
SET, DELETE, APPEND, SUBTRACT = 0, 1, 2, 3


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    tmp = tmp_path_factory.mktemp("loggers")
    b = start_broker(tmp / "data", "--node-id", str(NODE), timeout=60)
    yield b
    assert b.stop() == 0


@pytest.fixture(scope="module")
def admin(broker: BrokerProcess) -> Iterator[KafkaAdminClient]:
    client = KafkaAdminClient(
        bootstrap_servers=broker.bootstrap, request_timeout_ms=20000
    )
    yield client
    client.close()


def _levels(admin: KafkaAdminClient) -> dict[str, str]:
    answer = admin.describe_configs(
        [ConfigResource(ConfigResourceType.BROKER_LOGGER, str(NODE))],
        config_filter="all",
    )
    return {k: v["value"] for k, v in answer["broker_logger"][str(NODE)].items()}


def _alter(
    broker: BrokerProcess,
    name: str,
    *configs: tuple[str, int, str | None],
    validate_only: bool = False,
) -> tuple[int, str | None]:
    body = IncrementalAlterConfigsRequest(
        resources=(
            AlterConfigsResource(
                resource_type=LOGGER,
                resource_name=name,
                configs=tuple(
                    AlterableConfig(name=n, config_operation=op, value=v)
                    for n, op, v in configs
                ),
            ),
        ),
        validate_only=validate_only,
    )
    with broker.connect() as sock:
        resp = request(sock, 44, 1, body)
    assert isinstance(resp, IncrementalAlterConfigsResponse)
    (r,) = resp.responses
    return r.error_code, r.error_message


def _bad_request_closes(broker: BrokerProcess) -> None:
    """Send a request for an API we do not serve and wait for its ``bad_request``."""
    before = len(broker.events("bad_request"))
    header = struct.pack(">hhih", 999, 0, 1, 1) + b"x"
    with broker.connect() as sock:
        sock.sendall(struct.pack(">i", len(header)) + header)
        sock.settimeout(10)
        with contextlib.suppress(ConnectionResetError):
            assert sock.recv(1) == b""
    deadline = time.monotonic() + 20
    while len(broker.events("bad_request")) == before:
        assert time.monotonic() < deadline, "no bad_request event"
        time.sleep(0.05)


def test_kafka_python_lists_the_brokers_loggers(admin: KafkaAdminClient) -> None:
    """DescribeConfigs on BROKER_LOGGER lists root and every named logger, writable,
    at root's level (``--log-level info``: INFO) while none has its own."""
    answer = admin.describe_configs(
        [ConfigResource(ConfigResourceType.BROKER_LOGGER, str(NODE))],
        config_filter="all",
    )
    configs = answer["broker_logger"][str(NODE)]
    for name in ("root", "broker", "broker.connection", "broker.cluster.etcd"):
        assert configs[name]["value"] == "INFO"
        assert configs[name]["config_source"] == "DYNAMIC_BROKER_LOGGER_CONFIG"
        assert configs[name]["read_only"] is False


def test_a_raised_level_makes_debug_events_appear(
    broker: BrokerProcess, admin: KafkaAdminClient
) -> None:
    """SET DEBUG on broker.connection logs its debug events from then on; DELETE
    puts it back at root's level and they stop."""
    _bad_request_closes(broker)
    assert broker.events("connection_closing") == []

    resource = ConfigResource(
        ConfigResourceType.BROKER_LOGGER,
        str(NODE),
        configs={"broker.connection": "DEBUG"},
    )
    assert admin.alter_configs([resource], incremental=True) == {
        "broker_logger": {str(NODE): "OK"}
    }
    levels = _levels(admin)
    assert levels["broker.connection"] == "DEBUG"
    assert levels["root"] == levels["broker"] == levels["broker.server"] == "INFO"
    assert broker.events("logger_level_set")[-1]["logger"] == "broker.connection"

    _bad_request_closes(broker)
    seen = len(broker.events("connection_closing"))
    assert seen >= 1
    assert broker.events("connection_closing")[-1]["level"] == "debug"

    assert _alter(broker, str(NODE), ("broker.connection", DELETE, None)) == (0, None)
    assert _levels(admin)["broker.connection"] == "INFO"
    _bad_request_closes(broker)
    assert len(broker.events("connection_closing")) == seen


def test_an_ancestors_level_is_inherited(
    broker: BrokerProcess, admin: KafkaAdminClient
) -> None:
    """A level set on ``broker`` applies to every ``broker.*`` logger without its
    own; OFF silences; a child's own level wins."""
    assert _alter(
        broker,
        str(NODE),
        ("broker", SET, "WARN"),
        ("broker.cluster.etcd", SET, "TRACE"),
    ) == (0, None)
    try:
        levels = _levels(admin)
        assert levels["broker.topics"] == levels["broker.cluster"] == "WARN"
        assert levels["broker.cluster.etcd"] == "TRACE"
        assert levels["root"] == "INFO"
    finally:
        assert _alter(
            broker,
            str(NODE),
            ("broker", DELETE, None),
            ("broker.cluster.etcd", DELETE, None),
        ) == (0, None)
    assert set(_levels(admin).values()) == {"INFO"}


@pytest.mark.parametrize(
    ("name", "config", "code"),
    [
        ("0", ("broker.topics", SET, "DEBUG"), ErrorCode.INVALID_REQUEST),
        ("", ("broker.topics", SET, "DEBUG"), ErrorCode.INVALID_REQUEST),
        ("three", ("broker.topics", SET, "DEBUG"), ErrorCode.INVALID_REQUEST),
        (str(NODE), ("broker.topics", APPEND, "DEBUG"), ErrorCode.INVALID_REQUEST),
        (str(NODE), ("broker.topics", SUBTRACT, "DEBUG"), ErrorCode.INVALID_REQUEST),
        (str(NODE), ("broker.topics", SET, "LOUD"), ErrorCode.INVALID_CONFIG),
        (str(NODE), ("broker.topics", SET, "debug"), ErrorCode.INVALID_CONFIG),
        (str(NODE), ("kafka.server", SET, "DEBUG"), ErrorCode.INVALID_CONFIG),
        (str(NODE), ("root", DELETE, None), ErrorCode.INVALID_REQUEST),
        (str(NODE), ("broker.topics", SET, None), ErrorCode.INVALID_REQUEST),
    ],
)
def test_refusals_carry_kafkas_codes(
    broker: BrokerProcess,
    admin: KafkaAdminClient,
    name: str,
    config: tuple[str, int, str | None],
    code: ErrorCode,
) -> None:
    """Another broker's id, APPEND/SUBTRACT, DELETE of root and a null value are
    INVALID_REQUEST; an unknown level or logger INVALID_CONFIG; nothing changes."""
    got, message = _alter(broker, name, config)
    assert got == code
    assert message
    assert set(_levels(admin).values()) == {"INFO"}


def test_a_refused_change_applies_none_and_validate_only_applies_nothing(
    broker: BrokerProcess, admin: KafkaAdminClient
) -> None:
    """All changes of a resource are checked before any applies; validate_only
    checks and changes nothing."""
    code, _ = _alter(
        broker,
        str(NODE),
        ("broker.topics", SET, "DEBUG"),
        ("broker.groups", SET, "LOUD"),
    )
    assert code == ErrorCode.INVALID_CONFIG
    assert _alter(
        broker, str(NODE), ("broker.topics", SET, "ERROR"), validate_only=True
    ) == (0, None)
    assert set(_levels(admin).values()) == {"INFO"}


def test_describe_filters_keys_and_refuses_other_ids(broker: BrokerProcess) -> None:
    """``configuration_keys`` filters the loggers; another id is INVALID_REQUEST."""
    body = DescribeConfigsRequest(
        resources=(
            DescribeConfigsResource(
                resource_type=LOGGER,
                resource_name=str(NODE),
                configuration_keys=("root", "broker.groups"),
            ),
            DescribeConfigsResource(
                resource_type=LOGGER, resource_name="0", configuration_keys=None
            ),
        ),
        include_synonyms=True,
        include_documentation=True,
    )
    with broker.connect() as sock:
        resp = request(sock, 32, 4, body)
    assert isinstance(resp, DescribeConfigsResponse)
    mine, other = resp.results
    assert mine.error_code == ErrorCode.NONE
    assert [(c.name, c.value, c.config_source) for c in mine.configs] == [
        ("broker.groups", "INFO", 6),
        ("root", "INFO", 6),
    ]
    assert all(c.synonyms == () and c.documentation is None for c in mine.configs)
    assert other.error_code == ErrorCode.INVALID_REQUEST


def test_alter_configs_does_not_serve_broker_loggers(broker: BrokerProcess) -> None:
    """AlterConfigs refuses BROKER_LOGGER with INVALID_REQUEST, as Kafka's does."""
    body = ac.AlterConfigsRequest(
        resources=(
            ac.AlterConfigsResource(
                resource_type=LOGGER,
                resource_name=str(NODE),
                configs=(ac.AlterableConfig(name="root", value="DEBUG"),),
            ),
        ),
        validate_only=False,
    )
    with broker.connect() as sock:
        resp = request(sock, 33, 2, body)
    assert isinstance(resp, ac.AlterConfigsResponse)
    assert resp.responses[0].error_code == ErrorCode.INVALID_REQUEST


def _api_versions_frame(sock: socket.socket, version: int) -> bytes:
    header = RequestHeader(
        request_api_key=18,
        request_api_version=version,
        correlation_id=77,
        client_id="features",
    )
    body = ApiVersionsRequest(client_software_name="t", client_software_version="1")
    sock.sendall(encode_request(header, body))
    return recv_frame(sock)


def test_api_versions_v3_lists_metadata_version_as_kafka_3_9(
    broker: BrokerProcess,
) -> None:
    """ApiVersions v3 carries metadata.version supported 1-21 and finalized at 21
    (3.9-IV0), and nothing else, as kio decodes it; v2 carries no features."""
    with broker.connect() as sock:
        frame = _api_versions_frame(sock, 3)
        assert frame[:4] == struct.pack(">i", 77)  # response header v0
        kio_cls = load_response_schema(18, 3)
        theirs, end = entity_reader(kio_cls)(frame[4:], 0)
        assert end == len(frame) - 4
        assert [
            (f.name, f.min_version, f.max_version) for f in theirs.supported_features
        ] == [("metadata.version", 1, 21)]
        assert [
            (f.name, f.min_version_level, f.max_version_level)
            for f in theirs.finalized_features
        ] == [("metadata.version", 21, 21)]
        assert theirs.finalized_features_epoch == 1
        assert theirs.zk_migration_ready is False

        resp = request(sock, 18, 3, ApiVersionsRequest())
        assert isinstance(resp, ApiVersionsResponse)
        assert resp.supported_features == (
            SupportedFeatureKey(name="metadata.version", min_version=1, max_version=21),
        )
        assert resp.finalized_features == (
            FinalizedFeatureKey(
                name="metadata.version", max_version_level=21, min_version_level=21
            ),
        )
        v2 = request(sock, 18, 2, ApiVersionsRequest())
        assert isinstance(v2, ApiVersionsResponse)
        assert v2.supported_features == ()
        assert v2.finalized_features_epoch == -1


def test_kafka_python_describes_features(admin: KafkaAdminClient) -> None:
    """kafka-python's describe_features reads the ApiVersions features."""
    assert admin.describe_features() == {
        "metadata.version": {
            "supported": (1, 21),
            "finalized": (21, 21),
            "finalized_epoch": 1,
        }
    }
