"""Topic administration through the CLI's client: create, delete, grow, trim, configs.

Each function sends one admin request to the controller (or the bootstrap broker) and
turns a per-topic error code into a :class:`~broker.client.errors.KafkaError` whose
message names the topic and carries the broker's error message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

from broker.client.client import KafkaClient
from broker.client.connection import Connection
from broker.client.errors import KafkaError
from broker.client.types import ConfigEntry, TopicInfo
from protocol.error_codes import ErrorCode
from protocol.messages.create_partitions import (
    CreatePartitionsRequest,
    CreatePartitionsResponse,
    CreatePartitionsTopic,
)
from protocol.messages.create_topics import (
    CreatableTopic,
    CreatableTopicConfig,
    CreateTopicsRequest,
    CreateTopicsResponse,
)
from protocol.messages.delete_records import (
    DeleteRecordsPartition,
    DeleteRecordsRequest,
    DeleteRecordsResponse,
    DeleteRecordsTopic,
)
from protocol.messages.delete_topics import (
    DeleteTopicsRequest,
    DeleteTopicsResponse,
    DeleteTopicState,
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

TOPIC_RESOURCE: Final = 2
BROKER_RESOURCE: Final = 4

# IncrementalAlterConfigs operations (KIP-339)
OP_SET: Final = 0
OP_DELETE: Final = 1
OP_APPEND: Final = 2
OP_SUBTRACT: Final = 3

# DescribeConfigs v1+ ``config_source`` values (Kafka's DescribeConfigsResponse.ConfigSource).
CONFIG_SOURCES: Final = {
    -1: "unknown",
    0: "unknown",
    1: "topic",
    2: "dynamic-broker",
    3: "dynamic-default-broker",
    4: "static-broker",
    5: "default",
    6: "dynamic-broker-logger",
    7: "client-metrics",
    8: "group",
}


def create_topic(
    client: KafkaClient,
    name: str,
    *,
    partitions: int = 1,
    replication_factor: int = -1,
    configs: Mapping[str, str] | None = None,
    validate_only: bool = False,
    timeout_ms: int = 30_000,
) -> TopicInfo:
    """Create a topic; returns its metadata (topic ID, partitions) once it has leaders."""
    conn = client.controller()
    version = conn.version_for(19)
    if version < 4 and replication_factor == -1:
        replication_factor = 1  # "use the broker default" only exists from v4 (KIP-464)
    request = CreateTopicsRequest(
        topics=(
            CreatableTopic(
                name=name,
                num_partitions=partitions,
                replication_factor=replication_factor,
                configs=tuple(
                    CreatableTopicConfig(name=k, value=v)
                    for k, v in (configs or {}).items()
                ),
            ),
        ),
        timeout_ms=timeout_ms,
        validate_only=validate_only,
    )
    response = conn.request(request, CreateTopicsResponse)
    for result in response.topics:
        if result.error_code:
            message = result.error_message
            if result.error_code == ErrorCode.INVALID_CONFIG and configs:
                given = ", ".join(f"{k}={v}" for k, v in configs.items())
                if not message or not any(k in message for k in configs):
                    message = (
                        f"{message}; given: {given}" if message else f"given: {given}"
                    )
            raise KafkaError(result.error_code, f"create topic {name!r}", message)
    if validate_only:
        return TopicInfo(name=name)
    return client.topic(name, refresh=True)


def delete_topic(client: KafkaClient, name: str, *, timeout_ms: int = 30_000) -> None:
    """Delete a topic by name."""
    conn = client.controller()
    request = DeleteTopicsRequest(
        topics=(DeleteTopicState(name=name),),
        topic_names=(name,),
        timeout_ms=timeout_ms,
    )
    response = conn.request(request, DeleteTopicsResponse)
    for result in response.responses:
        if result.error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION:
            raise KafkaError(
                result.error_code,
                f"delete topic {name!r}",
                "no such topic (see `ailurus topic list`)",
            )
        if result.error_code:
            raise KafkaError(
                result.error_code, f"delete topic {name!r}", result.error_message
            )


def add_partitions(
    client: KafkaClient, name: str, total: int, *, timeout_ms: int = 30_000
) -> None:
    """Grow ``name`` to ``total`` partitions."""
    conn = client.controller()
    request = CreatePartitionsRequest(
        topics=(CreatePartitionsTopic(name=name, count=total, assignments=None),),
        timeout_ms=timeout_ms,
        validate_only=False,
    )
    response = conn.request(request, CreatePartitionsResponse)
    for result in response.results:
        if result.error_code:
            raise KafkaError(
                result.error_code, f"add partitions to {name!r}", result.error_message
            )


def delete_records(
    client: KafkaClient,
    topic: str,
    offsets: Mapping[int, int],
    *,
    timeout_ms: int = 30_000,
) -> dict[int, int]:
    """Delete records before ``offsets`` (partition -> offset; -1 = high watermark).

    Returns each partition's new log start offset (low watermark).
    """
    out: dict[int, int] = {}
    for partition, offset in sorted(offsets.items()):
        conn = client.leader_of(topic, partition)
        request = DeleteRecordsRequest(
            topics=(
                DeleteRecordsTopic(
                    name=topic,
                    partitions=(
                        DeleteRecordsPartition(
                            partition_index=partition, offset=offset
                        ),
                    ),
                ),
            ),
            timeout_ms=timeout_ms,
        )
        response = conn.request(request, DeleteRecordsResponse)
        for t in response.topics:
            for p in t.partitions:
                if p.error_code:
                    raise KafkaError(p.error_code, f"trim {topic}/{p.partition_index}")
                out[p.partition_index] = p.low_watermark
    return out


def _config_conn(client: KafkaClient, resource_type: int, name: str) -> Connection:
    """Where a config request goes: broker N's own resource to broker N (as Kafka
    clients send it), everything else to the controller."""
    if resource_type == BROKER_RESOURCE and name.isdigit():
        client.metadata([])
        return client.connection_for(int(name))
    return client.controller()


def describe_configs(
    client: KafkaClient, name: str, *, resource_type: int = TOPIC_RESOURCE
) -> list[ConfigEntry]:
    """The configuration of a topic (or, with BROKER_RESOURCE, a broker id; ""
    for the cluster-wide dynamic defaults)."""
    conn = _config_conn(client, resource_type, name)
    request = DescribeConfigsRequest(
        resources=(
            DescribeConfigsResource(
                resource_type=resource_type, resource_name=name, configuration_keys=None
            ),
        ),
    )
    response = conn.request(request, DescribeConfigsResponse)
    entries: list[ConfigEntry] = []
    v0 = conn.version_for(32) == 0
    for result in response.results:
        if result.error_code:
            raise KafkaError(
                result.error_code, f"describe configs of {name!r}", result.error_message
            )
        for c in result.configs:
            if v0:
                source = "default" if c.is_default else "topic"
            else:
                source = CONFIG_SOURCES.get(c.config_source, str(c.config_source))
            entries.append(
                ConfigEntry(
                    name=c.name,
                    value=c.value,
                    source=source,
                    read_only=c.read_only,
                    sensitive=c.is_sensitive,
                )
            )
    return sorted(entries, key=lambda e: e.name)


def alter_configs(
    client: KafkaClient,
    name: str,
    changes: Sequence[tuple[str, int, str | None]],
    *,
    resource_type: int = TOPIC_RESOURCE,
    validate_only: bool = False,
) -> None:
    """IncrementalAlterConfigs of one resource: ``changes`` are (key, operation,
    value) with the OP_* operations. A refusal raises :class:`KafkaError` naming the
    resource, with the broker's message."""
    conn = _config_conn(client, resource_type, name)
    request = IncrementalAlterConfigsRequest(
        resources=(
            AlterConfigsResource(
                resource_type=resource_type,
                resource_name=name,
                configs=tuple(
                    AlterableConfig(name=k, config_operation=op, value=v)
                    for k, op, v in changes
                ),
            ),
        ),
        validate_only=validate_only,
    )
    response = conn.request(request, IncrementalAlterConfigsResponse)
    what = "the cluster-wide broker defaults" if name == "" else repr(name)
    for result in response.responses:
        if result.error_code:
            raise KafkaError(
                result.error_code, f"alter configs of {what}", result.error_message
            )
