"""The leader's side of replication without etcd: the high watermark with
followers in the ISR, acks=all waiting for them, and the ISR growing and
shrinking through the cluster's compare-and-set (the in-memory fake)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

from broker.context import BrokerContext
from broker.replication.isr import IsrManager
from protocol.error_codes import ErrorCode
from protocol.messages.fetch import (
    FetchPartition,
    FetchRequest,
    FetchResponse,
    FetchTopic,
    ReplicaState,
)
from protocol.messages.produce import (
    PartitionProduceData,
    ProduceRequest,
    ProduceResponse,
    TopicProduceData,
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

FOLLOWER = 2


def produce(acks: int) -> ProduceRequest:
    return ProduceRequest(
        acks=acks,
        timeout_ms=5000,
        topic_data=(
            TopicProduceData(
                name="t",
                partition_data=(
                    PartitionProduceData(
                        index=0, records=build_batch([RecordInput(value=b"v")])
                    ),
                ),
            ),
        ),
    )


def fetch(offset: int, replica: int = -1) -> FetchRequest:
    return FetchRequest(
        replica_id=replica,
        replica_state=ReplicaState(replica_id=replica, replica_epoch=-1),
        max_wait_ms=0,
        min_bytes=1,
        topics=(
            FetchTopic(
                topic="t",
                partitions=(
                    FetchPartition(
                        partition=0, fetch_offset=offset, partition_max_bytes=1 << 20
                    ),
                ),
            ),
        ),
    )


@asynccontextmanager
async def serving(tmp_path: Path, cluster: FakeCluster) -> AsyncIterator[BrokerContext]:
    """A broker context with its replica manager and group commit running."""
    async with (
        running(cluster_config(tmp_path), cluster) as ctx,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(ctx.durability.run)
        try:
            yield ctx
        finally:
            tg.cancel_scope.cancel()


async def high_watermark(ctx: BrokerContext) -> int:
    resp = await call(ctx, 1, 12, fetch(0))
    assert isinstance(resp, FetchResponse)
    part = resp.responses[0].partitions[0]
    assert part.error_code == ErrorCode.NONE
    return part.high_watermark


async def follower_fetch(ctx: BrokerContext, offset: int) -> None:
    resp = await call(ctx, 1, 12, fetch(offset, FOLLOWER))
    assert isinstance(resp, FetchResponse)
    assert resp.responses[0].partitions[0].error_code == ErrorCode.NONE


@pytest.mark.anyio
async def test_acks_all_and_consumers_wait_for_the_isr_followers(
    tmp_path: Path,
) -> None:
    """With a follower in the ISR, an acks=all produce is answered once the
    follower has fetched past it, and consumers see only what it has fetched;
    acks=1 answers at once."""
    cluster = FakeCluster(NODE, brokers=(NODE, FOLLOWER))
    async with serving(tmp_path, cluster) as ctx:
        cluster.add_topic("t", [[NODE, FOLLOWER]])
        await settled(ctx, cluster)
        quick = await call(ctx, 0, 9, produce(1))
        assert isinstance(quick, ProduceResponse)
        assert quick.responses[0].partition_responses[0].error_code == 0
        answers: list[ProduceResponse] = []

        async def acks_all() -> None:
            resp = await call(ctx, 0, 9, produce(-1))
            assert isinstance(resp, ProduceResponse)
            answers.append(resp)

        async with anyio.create_task_group() as tg:
            tg.start_soon(acks_all)
            plog = ctx.topics.logs.partition("t", 0)
            with anyio.fail_after(5):
                await ctx.durability.commit.wait_durable(plog, 2)
            await anyio.wait_all_tasks_blocked()
            assert answers == []  # on the leader's disk, not yet on the follower's
            assert await high_watermark(ctx) == 0
            await follower_fetch(ctx, 1)
            assert await high_watermark(ctx) == 1
            await anyio.wait_all_tasks_blocked()
            assert answers == []
            await follower_fetch(ctx, 2)
        [resp] = answers
        part = resp.responses[0].partition_responses[0]
        assert part.error_code == ErrorCode.NONE
        assert part.base_offset == 1
        assert await high_watermark(ctx) == 2


@pytest.mark.anyio
async def test_acks_all_is_not_leader_once_the_leadership_moves(
    tmp_path: Path,
) -> None:
    """An acks=all produce waiting for a follower is answered
    NOT_LEADER_OR_FOLLOWER when the leadership moves away meanwhile."""
    cluster = FakeCluster(NODE, brokers=(NODE, FOLLOWER))
    async with serving(tmp_path, cluster) as ctx:
        cluster.add_topic("t", [[NODE, FOLLOWER]])
        await settled(ctx, cluster)
        answers: list[ProduceResponse] = []

        async def acks_all() -> None:
            resp = await call(ctx, 0, 9, produce(-1))
            assert isinstance(resp, ProduceResponse)
            answers.append(resp)

        async with anyio.create_task_group() as tg:
            tg.start_soon(acks_all)
            await anyio.wait_all_tasks_blocked()
            cluster.move_leader("t", 0, FOLLOWER)
        [resp] = answers
        part = resp.responses[0].partition_responses[0]
        assert part.error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER


@pytest.mark.anyio
async def test_a_caught_up_replica_joins_the_isr_and_a_lagging_one_leaves(
    tmp_path: Path,
) -> None:
    """A replica outside the ISR that fetched up to the high watermark joins it
    (compare-and-set at the next partition epoch); a follower that has not
    caught up for replica.lag.time.max.ms leaves it."""
    cluster = FakeCluster(NODE, brokers=(NODE, FOLLOWER))
    async with serving(tmp_path, cluster) as ctx:
        cluster.add_topic("t", [[NODE, FOLLOWER]])
        rec = cluster.cache.partition("t", 0)
        assert rec is not None
        cluster.set_partition("t", 0, dataclasses.replace(rec, isr=(NODE,)))
        await settled(ctx, cluster)
        isr = IsrManager(cluster, ctx.topics, lag_time_max_ms=1000)
        for _ in range(3):
            resp = await call(ctx, 0, 9, produce(1))
            assert isinstance(resp, ProduceResponse)
        plog = ctx.topics.logs.partition("t", 0)
        with anyio.fail_after(5):
            await ctx.durability.commit.wait_durable(plog, 3)

        await follower_fetch(ctx, 2)  # behind: stays out
        assert ctx.topics.followers.take_expand() == set()
        await follower_fetch(ctx, 3)
        wanted = ctx.topics.followers.take_expand()
        assert wanted == {("t", 0)}
        await isr.expand("t", 0)
        grown = cluster.cache.partition("t", 0)
        assert grown is not None
        assert grown.isr == (NODE, FOLLOWER)
        assert grown.partition_epoch == rec.partition_epoch + 1
        assert grown.leader_epoch == rec.leader_epoch
        assert await high_watermark(ctx) == 3

        # caught up a moment ago: stays
        await call(ctx, 0, 9, produce(1))
        await isr.shrink_all()
        kept = cluster.cache.partition("t", 0)
        assert kept is not None
        assert kept.isr == (NODE, FOLLOWER)
        # not heard from since this broker became leader, long ago
        ctx.topics.followers.lead("t", 0, 3, now=time.monotonic() - 5)
        await isr.shrink_all()
        shrunk = cluster.cache.partition("t", 0)
        assert shrunk is not None
        assert shrunk.isr == (NODE,)
        assert ("alter_isr", "t", 0, (NODE,)) in cluster.requests


@pytest.mark.anyio
async def test_an_isr_change_on_a_moved_state_is_not_written(tmp_path: Path) -> None:
    """The leader's ISR write is a compare-and-set: against a newer leader epoch
    it writes nothing."""
    cluster = FakeCluster(NODE, brokers=(NODE, FOLLOWER))
    async with serving(tmp_path, cluster) as ctx:
        cluster.add_topic("t", [[NODE, FOLLOWER]])
        await settled(ctx, cluster)
        seen = cluster.cache.partition("t", 0)
        assert seen is not None
        moved = cluster.move_leader("t", 0, NODE)  # a new epoch, same leader
        assert await cluster.alter_isr("t", 0, (NODE,), seen) is None
        assert cluster.cache.partition("t", 0) == moved
