"""Cluster mode without etcd: the topic service reads partition state from a
cache fed directly, and the replica manager makes the local logs match it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import anyio
import pytest
from structlog.testing import capture_logs

from broker.cluster.model import (
    CreatePartitionsRequest,
    CreateTopicRequest,
    PartitionRecord,
)
from broker.server import open_context
from protocol.error_codes import ErrorCode
from protocol.messages.fetch import (
    FetchResponse,
)
from protocol.messages.produce import (
    ProduceResponse,
)
from protocol.record_builder import RecordInput, build_batch
from tests.cluster.cluster_fake import (
    NODE,
    FakeCluster,
    call,
    cluster_config,
    running,
    settled,
)
from tests.cluster.helpers import fetch_request, produce_request


@pytest.mark.anyio
async def test_local_topics_follow_the_cache_with_its_ids_and_configs(
    tmp_path: Path,
) -> None:
    """A topic in the cache becomes a local topic with the cluster's id and configs,
    grows with it, and is deleted locally (logged) once gone from the cache."""
    cluster = FakeCluster(NODE, brokers=(NODE, 2))
    async with running(cluster_config(tmp_path), cluster) as ctx:
        record = cluster.add_topic(
            "orders", [[2, NODE], [NODE, 2]], configs={"retention.ms": "1234"}
        )
        await settled(ctx, cluster)
        meta = ctx.topics.find("orders")
        assert meta is not None
        assert meta.topic_uuid == record.topic_id
        assert meta.partition_count == 2
        assert dict(meta.config.overrides) == {"retention.ms": "1234"}

        await cluster.create_partitions(CreatePartitionsRequest(name="orders", count=3))

        def grown() -> bool:
            m = ctx.topics.find("orders")
            return m is not None and m.partition_count == 3

        await settled(ctx, cluster)
        assert grown()

        with capture_logs() as logs:
            cluster.remove_topic("orders")
            await settled(ctx, cluster)
        assert ctx.topics.find("orders") is None
        assert any(
            e["event"] == "topic_deleted" and e["topic"] == "orders" for e in logs
        )


@pytest.mark.anyio
async def test_state_comes_from_the_cache_and_only_the_leader_takes_produce(
    tmp_path: Path,
) -> None:
    """Leader, epoch, replicas and ISR come from the cache; a partition another
    broker leads, or that is offline, refuses Produce and Fetch with
    NOT_LEADER_OR_FOLLOWER; once this broker leads, its appends carry the cache's
    leader epoch."""
    cluster = FakeCluster(NODE, brokers=(NODE, 2))
    async with running(cluster_config(tmp_path), cluster) as ctx:
        cluster.add_topic("t", [[2, NODE]])
        await settled(ctx, cluster)
        meta = ctx.topics.find("t")
        assert meta is not None
        plog = ctx.topics.logs.partition("t", 0)
        state = ctx.topics.state(meta, plog)
        assert (state.leader_id, state.replicas, state.isr) == (2, (2, NODE), (2, NODE))
        assert not state.is_local_leader

        resp = await call(ctx, 0, 9, produce_request("t"))
        assert isinstance(resp, ProduceResponse)
        assert (
            resp.responses[0].partition_responses[0].error_code
            == ErrorCode.NOT_LEADER_OR_FOLLOWER
        )
        fetched = await call(ctx, 1, 11, fetch_request("t"))
        assert isinstance(fetched, FetchResponse)
        assert (
            fetched.responses[0].partitions[0].error_code
            == ErrorCode.NOT_LEADER_OR_FOLLOWER
        )

        cluster.set_partition(
            "t",
            0,
            PartitionRecord(replicas=(2, NODE), leader=-1, leader_epoch=3, isr=(2,)),
        )
        assert ctx.topics.state(meta, plog).leader_id == -1
        resp = await call(ctx, 0, 9, produce_request("t"))
        assert isinstance(resp, ProduceResponse)
        assert (
            resp.responses[0].partition_responses[0].error_code
            == ErrorCode.NOT_LEADER_OR_FOLLOWER
        )

        cluster.move_leader("t", 0, NODE)  # epoch 4
        assert ctx.topics.state(meta, plog).leader_epoch == 4
        resp = await call(ctx, 0, 9, produce_request("t"))
        assert isinstance(resp, ProduceResponse)
        assert resp.responses[0].partition_responses[0].error_code == ErrorCode.NONE
        assert plog.log_end_offset == 1
        assert plog.leader_epoch == 4


@pytest.mark.anyio
async def test_leadership_changes_are_logged_and_wake_long_polls(
    tmp_path: Path,
) -> None:
    """Becoming and losing a partition's leadership is logged as leader_changed, and
    a long-polling fetch of a partition whose leadership moves away answers
    NOT_LEADER_OR_FOLLOWER at once rather than at its deadline."""
    cluster = FakeCluster(NODE, brokers=(NODE, 2))
    with capture_logs() as logs:
        async with running(cluster_config(tmp_path), cluster) as ctx:
            cluster.add_topic("t", [[NODE, 2]])
            await settled(ctx, cluster)
            gained = [e for e in logs if e["event"] == "leader_changed"]
            assert gained[0]["leader"] == NODE
            assert gained[0]["reason"] == "elected"

            result: list[object] = []

            async def poll() -> None:
                result.append(
                    await call(ctx, 1, 11, fetch_request("t", max_wait_ms=20_000))
                )

            with anyio.fail_after(5):  # far below the 20 s long poll
                async with anyio.create_task_group() as tg:
                    tg.start_soon(poll)
                    await anyio.wait_all_tasks_blocked()
                    cluster.move_leader("t", 0, 2)
            [fetched] = result
            assert isinstance(fetched, FetchResponse)
            assert (
                fetched.responses[0].partitions[0].error_code
                == ErrorCode.NOT_LEADER_OR_FOLLOWER
            )
    lost = [e for e in logs if e["event"] == "leader_changed" and e["leader"] == 2]
    assert lost
    assert lost[0]["reason"] == "moved"
    assert lost[0]["leader_epoch"] == 1


@pytest.mark.anyio
async def test_an_isr_shrink_answers_the_acks_all_produce_it_unblocks(
    tmp_path: Path,
) -> None:
    """An acks=all produce waiting for a follower that never fetches is answered
    as soon as the ISR shrinks to the leader, not at its timeout: the ISR change
    alone moves the high watermark, with no fetch to notice it."""
    cluster = FakeCluster(NODE, brokers=(NODE, 2))
    async with running(cluster_config(tmp_path), cluster) as ctx:
        cluster.add_topic("t", [[NODE, 2]])
        await settled(ctx, cluster)
        p = cluster.cache.partition("t", 0)
        assert p is not None
        cluster.set_partition(
            "t", 0, dataclasses.replace(p, isr=(NODE, 2), partition_epoch=1)
        )
        await settled(ctx, cluster)
        result: list[object] = []
        answered = anyio.Event()

        async def produce() -> None:
            request = produce_request("t", acks=-1, timeout_ms=20_000)
            result.append(await call(ctx, 0, 9, request))
            answered.set()

        with anyio.fail_after(5):  # far below the produce's 20 s timeout
            async with anyio.create_task_group() as tg:
                tg.start_soon(ctx.durability.run)  # the fsyncs
                tg.start_soon(produce)
                await anyio.wait_all_tasks_blocked()
                assert not result  # waiting for follower 2
                cluster.set_partition(
                    "t", 0, dataclasses.replace(p, isr=(NODE,), partition_epoch=2)
                )
                await answered.wait()
                tg.cancel_scope.cancel()
        [resp] = result
        assert isinstance(resp, ProduceResponse)
        part = resp.responses[0].partition_responses[0]
        assert part.error_code == ErrorCode.NONE
        assert part.base_offset == 0


@pytest.mark.anyio
async def test_local_topics_unknown_to_the_cluster_are_registered_with_their_ids(
    tmp_path: Path,
) -> None:
    """A data dir's topics the cluster does not know are registered with the
    controller under their own ids, hosted on this broker, and kept with their
    data."""
    config = cluster_config(tmp_path)
    # the data dir of a single node, with a record in it
    single = dataclasses.replace(config, cluster=None)
    async with open_context(single) as ctx:
        meta = ctx.topics.logs.create_topic("old", 2, {"retention.ms": "5000"})
        ctx.topics.logs.partition("old", 1).append(
            build_batch([RecordInput(value=b"kept")]), leader_epoch=0, now_ms=0
        )
    cluster = FakeCluster(NODE, brokers=(NODE, 2))
    async with running(config, cluster) as ctx:
        [request] = cluster.requests
        assert isinstance(request, CreateTopicRequest)
        assert request.topic_id == meta.topic_uuid
        assert request.assignment == ((NODE,), (NODE,))
        assert dict(request.configs) == {"retention.ms": "5000"}
        record = cluster.cache.topic("old")
        assert record is not None
        assert record.topic_id == meta.topic_uuid
        local = ctx.topics.find("old")
        assert local is not None
        assert local.topic_uuid == meta.topic_uuid
        assert ctx.topics.logs.partition("old", 1).log_end_offset == 1


@pytest.mark.anyio
async def test_a_returning_member_deletes_topics_deleted_while_it_was_away(
    tmp_path: Path,
) -> None:
    """Once a data dir has joined the cluster, a local topic the cluster no longer
    knows at the next start was deleted meanwhile: its logs are deleted, not
    registered again."""
    config = cluster_config(tmp_path)
    first = FakeCluster(NODE, brokers=(NODE, 2))
    async with running(config, first) as ctx:
        first.add_topic("gone", [[NODE]])
        await settled(ctx, first)
        assert ctx.topics.find("gone") is not None
    assert (Path(config.data_dir) / "cluster_member.json").exists()

    again = FakeCluster(NODE, brokers=(NODE, 2))  # "gone" was deleted meanwhile
    async with running(config, again) as ctx:
        assert again.requests == []
        assert ctx.topics.find("gone") is None
