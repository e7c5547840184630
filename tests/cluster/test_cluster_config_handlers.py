"""The config APIs of a broker in cluster mode, over the in-memory cluster: edits
run on the topic record as stored (a change made through another broker is kept),
and dynamic broker configs written to the cluster reach this broker's topics."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import anyio
import pytest

from broker.cluster.configs import follow_broker_configs
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
from tests.cluster.cluster_fake import (
    NODE,
    FakeCluster,
    call,
    cluster_config,
    running,
    settled,
)

APPEND, SET = 2, 0


def alter(kind: int, name: str, *configs: tuple[str, int, str]) -> object:
    return IncrementalAlterConfigsRequest(
        resources=(
            AlterConfigsResource(
                resource_type=kind,
                resource_name=name,
                configs=tuple(
                    AlterableConfig(name=k, config_operation=op, value=v)
                    for k, op, v in configs
                ),
            ),
        ),
        validate_only=False,
    )


async def value(ctx: object, topic: str, key: str) -> tuple[str | None, int]:
    resp = await call(
        ctx,  # type: ignore[arg-type]
        32,
        4,
        DescribeConfigsRequest(
            resources=(
                DescribeConfigsResource(
                    resource_type=2, resource_name=topic, configuration_keys=(key,)
                ),
            ),
            include_synonyms=False,
            include_documentation=False,
        ),
    )
    assert isinstance(resp, DescribeConfigsResponse)
    [entry] = resp.results[0].configs
    return entry.value, entry.config_source


async def until(ctx: object, key: str, wanted: tuple[str, int]) -> None:
    """Poll (bounded) until topic t's ``key`` is ``wanted`` (value, source)."""
    for _ in range(500):
        if await value(ctx, "t", key) == wanted:
            return
        await anyio.sleep(0.01)
    raise AssertionError(f"{key} never became {wanted}")


@pytest.mark.anyio
async def test_edits_apply_to_the_stored_record_and_reach_local_logs(
    tmp_path: Path,
) -> None:
    """An APPEND edits the record's configs as stored, keeping a key another
    broker wrote that this one has not applied yet; the local partitions follow
    the record; another broker's id is a valid BROKER resource here."""
    cluster = FakeCluster(NODE, brokers=(NODE, 2))
    async with running(cluster_config(tmp_path), cluster, groups=False) as ctx:
        cluster.add_topic("t", [[NODE]])
        await settled(ctx, cluster)
        # another broker's change, written to the record (not yet applied here)
        record = cluster.cache.topic("t")
        assert record is not None
        stored = dataclasses.replace(record, configs={"retention.ms": "5000"})
        cluster._put(cluster.keys.topic("t"), stored)
        resp = await call(
            ctx, 44, 1, alter(2, "t", ("cleanup.policy", APPEND, "compact"))
        )
        assert isinstance(resp, IncrementalAlterConfigsResponse)
        assert resp.responses[0].error_code == 0
        topic = cluster.cache.topic("t")
        assert topic is not None
        assert dict(topic.configs) == {
            "retention.ms": "5000",
            "cleanup.policy": "delete,compact",
        }
        await settled(ctx, cluster)
        assert ctx.topics.logs.partition("t", 0).config.retention_ms == 5000
        assert await value(ctx, "t", "cleanup.policy") == ("delete,compact", 1)

        resp = await call(ctx, 44, 1, alter(4, "2", ("log.retention.ms", SET, "1")))
        assert isinstance(resp, IncrementalAlterConfigsResponse)
        assert resp.responses[0].error_code == 0
        assert cluster.cache.broker_configs("2") == {"log.retention.ms": "1"}
        # broker 2's value is not this broker's default
        assert ctx.topics.logs.defaults.get("retention.ms") is None


@pytest.mark.anyio
async def test_watched_broker_configs_change_topic_defaults(tmp_path: Path) -> None:
    """The cluster-wide and this broker's dynamic configs, as the watch delivers
    them, become the default of every topic that does not override the key."""
    cluster = FakeCluster(NODE, brokers=(NODE, 2))
    async with running(cluster_config(tmp_path), cluster, groups=False) as ctx:
        cluster.add_topic("t", [[NODE]])
        await settled(ctx, cluster)
        async with anyio.create_task_group() as tg:
            tg.start_soon(follow_broker_configs, cluster.cache, ctx.configs)
            await cluster.put_broker_configs(
                "<default>", lambda _: {"log.segment.bytes": "9999"}
            )
            await cluster.put_broker_configs(
                str(NODE), lambda _: {"log.roll.ms": "7777"}
            )
            await until(ctx, "segment.ms", ("7777", 2))
            assert await value(ctx, "t", "segment.bytes") == ("9999", 3)
            assert ctx.topics.logs.partition("t", 0).config.segment_bytes == 9999
            await cluster.put_broker_configs("<default>", lambda _: {})
            await until(ctx, "segment.bytes", ("1073741824", 5))
            tg.cancel_scope.cancel()
