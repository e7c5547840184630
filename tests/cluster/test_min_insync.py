"""min.insync.replicas on a cluster leader without etcd (the in-memory fake):
acks=all is refused before the append when the ISR is too small, answered
NOT_ENOUGH_REPLICAS_AFTER_APPEND when the ISR shrinks below it while the answer
waits, and acks=0/1 are not affected."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

from broker.context import BrokerContext
from broker.net.request import NO_RESPONSE
from protocol.error_codes import ErrorCode
from protocol.messages.fetch import FetchResponse
from protocol.messages.produce import ProduceResponse
from tests.cluster.cluster_fake import (
    NODE,
    FakeCluster,
    call,
    cluster_config,
    running,
    settled,
)
from tests.cluster.helpers import fetch_request, produce_request

pytestmark = pytest.mark.anyio

FOLLOWER = 2
MIN_ISR = {"min.insync.replicas": "2"}


@asynccontextmanager
async def serving(
    tmp_path: Path, cluster: FakeCluster, isr: tuple[int, ...]
) -> AsyncIterator[BrokerContext]:
    """A leader of ``t`` (replicas NODE and FOLLOWER, min.insync.replicas=2) whose
    ISR is ``isr``, with its group commit running."""
    async with (
        running(cluster_config(tmp_path), cluster) as ctx,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(ctx.durability.run)
        cluster.add_topic("t", [[NODE, FOLLOWER]], configs=MIN_ISR)
        rec = cluster.cache.partition("t", 0)
        assert rec is not None
        cluster.set_partition("t", 0, dataclasses.replace(rec, isr=isr))
        await settled(ctx, cluster)
        try:
            yield ctx
        finally:
            tg.cancel_scope.cancel()


async def produce(ctx: BrokerContext, acks: int) -> ErrorCode:
    resp = await call(ctx, 0, 9, produce_request("t", acks=acks, timeout_ms=5000))
    assert isinstance(resp, ProduceResponse)
    return ErrorCode(resp.responses[0].partition_responses[0].error_code)


async def test_acks_all_below_min_insync_is_refused_before_the_append(
    tmp_path: Path,
) -> None:
    """ISR [leader] with min.insync.replicas=2: acks=all gets NOT_ENOUGH_REPLICAS
    and nothing is appended; acks=1 and acks=0 append."""
    cluster = FakeCluster(NODE, brokers=(NODE, FOLLOWER))
    async with serving(tmp_path, cluster, (NODE,)) as ctx:
        plog = ctx.topics.logs.partition("t", 0)
        assert ctx.topics.find("t") is not None
        assert await produce(ctx, -1) == ErrorCode.NOT_ENOUGH_REPLICAS
        assert plog.log_end_offset == 0
        assert await produce(ctx, 1) == ErrorCode.NONE
        assert plog.log_end_offset == 1
        acks0 = await call(ctx, 0, 9, produce_request("t", acks=0))
        assert acks0 is NO_RESPONSE
        assert plog.log_end_offset == 2


async def test_acks_all_is_not_enough_replicas_after_append_when_the_isr_shrinks(
    tmp_path: Path,
) -> None:
    """An acks=all write waiting for its follower is answered
    NOT_ENOUGH_REPLICAS_AFTER_APPEND once the ISR shrinks to the leader alone
    (the record stays in the leader's log)."""
    cluster = FakeCluster(NODE, brokers=(NODE, FOLLOWER))
    async with serving(tmp_path, cluster, (NODE, FOLLOWER)) as ctx:
        answers: list[ErrorCode] = []
        answered = anyio.Event()

        async def acks_all() -> None:
            answers.append(await produce(ctx, -1))
            answered.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(acks_all)
            plog = ctx.topics.logs.partition("t", 0)
            with anyio.fail_after(5):
                await ctx.durability.commit.wait_durable(plog, 1)
            await anyio.wait_all_tasks_blocked()
            assert answers == []  # waiting for the follower
            rec = cluster.cache.partition("t", 0)
            assert rec is not None
            cluster.set_partition(
                "t",
                0,
                dataclasses.replace(
                    rec, isr=(NODE,), partition_epoch=rec.partition_epoch + 1
                ),
            )
            # woken by the ISR change, well before the request's 5 s timeout
            with anyio.fail_after(2):
                await answered.wait()
        assert answers == [ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND]
        assert plog.log_end_offset == 1


async def test_acks_all_succeeds_once_min_insync_replicas_have_the_record(
    tmp_path: Path,
) -> None:
    """With the ISR at min.insync.replicas, acks=all answers once the follower
    fetched past the record."""
    cluster = FakeCluster(NODE, brokers=(NODE, FOLLOWER))
    async with serving(tmp_path, cluster, (NODE, FOLLOWER)) as ctx:
        answers: list[ErrorCode] = []

        async def acks_all() -> None:
            answers.append(await produce(ctx, -1))

        async with anyio.create_task_group() as tg:
            tg.start_soon(acks_all)
            plog = ctx.topics.logs.partition("t", 0)
            with anyio.fail_after(5):
                await ctx.durability.commit.wait_durable(plog, 1)
            resp = await call(ctx, 1, 12, fetch_request("t", 1, replica=FOLLOWER))
            assert isinstance(resp, FetchResponse)
            assert resp.responses[0].partitions[0].error_code == ErrorCode.NONE
        assert answers == [ErrorCode.NONE]
