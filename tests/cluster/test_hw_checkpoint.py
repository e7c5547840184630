"""A leader's state after a restart or a failover, in-process (cluster mode over the
fake cache): the high watermark starts from the data dir's checkpoint, never above
the log end, and an idempotent producer's retry is answered from the state its
follower kept (or rebuilt off the loop)."""

from __future__ import annotations

import uuid
from pathlib import Path

import anyio
import pytest
from structlog.testing import capture_logs

from broker.context import BrokerContext
from protocol.error_codes import ErrorCode
from protocol.messages.fetch import FetchResponse
from protocol.messages.produce import (
    PartitionProduceData,
    ProduceRequest,
    ProduceResponse,
    TopicProduceData,
)
from protocol.record_builder import RecordInput, build_batch
from storage.hw_checkpoint import FILE_NAME, HighWatermarkCheckpoint
from tests.cluster.cluster_fake import (
    NODE,
    FakeCluster,
    call,
    cluster_config,
    running,
    settled,
)
from tests.cluster.helpers import fetch_request, produce_request

TOPIC_ID = uuid.UUID("5b3a7bd0-3f47-4b47-9c5e-2f1e64f7a001")


def _cluster(leader: int = NODE) -> FakeCluster:
    """Topic ``t`` (one partition, replicas NODE, 2, 3, all in the ISR)."""
    cluster = FakeCluster(NODE, brokers=(NODE, 2, 3))
    cluster.add_topic("t", [[NODE, 2, 3]], topic_id=TOPIC_ID)
    if leader != NODE:
        cluster.move_leader("t", 0, leader)
    return cluster


async def _high_watermark(ctx: BrokerContext) -> int:
    """The high watermark a consumer's Fetch answers."""
    resp = await call(ctx, 1, 12, fetch_request("t"))
    assert isinstance(resp, FetchResponse)
    part = resp.responses[0].partitions[0]
    assert part.error_code == ErrorCode.NONE
    return part.high_watermark


async def _produce(ctx: BrokerContext, count: int) -> None:
    """Append ``count`` records and make them durable (no group commit runs here)."""
    for _ in range(count):
        resp = await call(ctx, 0, 9, produce_request("t", acks=1))
        assert isinstance(resp, ProduceResponse)
        assert resp.responses[0].partition_responses[0].error_code == ErrorCode.NONE
    await anyio.to_thread.run_sync(ctx.topics.logs.partition("t", 0).sync)


async def _followers_fetch(ctx: BrokerContext, offset: int) -> None:
    for replica in (2, 3):
        resp = await call(ctx, 1, 12, fetch_request("t", offset, replica=replica))
        assert isinstance(resp, FetchResponse)


async def _written(ctx: BrokerContext) -> None:
    """Produce 3 records and let both followers fetch them: high watermark 3."""
    await settled(ctx, _cluster_of(ctx))
    await _produce(ctx, 3)
    assert await _high_watermark(ctx) == 0  # the followers have not fetched
    await _followers_fetch(ctx, 3)
    assert await _high_watermark(ctx) == 3


def _cluster_of(ctx: BrokerContext) -> FakeCluster:
    cluster = ctx.topics.cluster
    assert isinstance(cluster, FakeCluster)
    return cluster


@pytest.mark.anyio
async def test_a_restarted_leader_starts_from_its_checkpointed_high_watermark(
    tmp_path: Path,
) -> None:
    """The high watermark is checkpointed at stop; after a restart the leader, whose
    ISR followers have not fetched yet, shows consumers everything below it at
    once (not 0), and the file holds Kafka's text format."""
    config = cluster_config(tmp_path)
    async with running(config, _cluster()) as ctx:
        await _written(ctx)
    assert (config.data_dir / FILE_NAME).read_text() == "0\n1\nt 0 3\n"

    async with running(config, _cluster()) as ctx:
        await settled(ctx, _cluster_of(ctx))
        assert await _high_watermark(ctx) == 3
        # an append the followers have not fetched stays invisible
        await _produce(ctx, 1)
        assert await _high_watermark(ctx) == 3
        await _followers_fetch(ctx, 4)
        assert await _high_watermark(ctx) == 4
        assert ctx.replicas is not None
        await ctx.replicas.checkpoint.write()  # what the 5 s job does
        assert HighWatermarkCheckpoint(config.data_dir).read() == {("t", 0): 4}


@pytest.mark.anyio
async def test_a_checkpoint_above_the_log_end_is_capped(tmp_path: Path) -> None:
    """A checkpointed high watermark beyond the local log (its tail was lost) is
    cut to the log end: later appends stay invisible until the followers have
    them."""
    config = cluster_config(tmp_path)
    async with running(config, _cluster()) as ctx:
        await _written(ctx)
    HighWatermarkCheckpoint(config.data_dir).write({("t", 0): 10, ("gone", 0): 7})
    async with running(config, _cluster()) as ctx:
        await settled(ctx, _cluster_of(ctx))
        assert await _high_watermark(ctx) == 3
        await _produce(ctx, 2)
        assert await _high_watermark(ctx) == 3
        assert ctx.replicas is not None
        assert ctx.replicas.checkpoint.update() == {("t", 0): 3}  # "gone" dropped


@pytest.mark.anyio
async def test_a_damaged_checkpoint_is_ignored_with_a_warning(tmp_path: Path) -> None:
    """A torn checkpoint file is logged and ignored: the broker serves, and the high
    watermark comes from the followers' fetches again."""
    config = cluster_config(tmp_path)
    async with running(config, _cluster()) as ctx:
        await _written(ctx)
    (config.data_dir / FILE_NAME).write_bytes(b"0\n1\nt 0 3")  # no final newline
    with capture_logs() as events:
        async with running(config, _cluster()) as ctx:
            await settled(ctx, _cluster_of(ctx))
            assert await _high_watermark(ctx) == 0
            await _followers_fetch(ctx, 3)
            assert await _high_watermark(ctx) == 3
    warnings = [e for e in events if e["event"] == "hw_checkpoint_corrupt"]
    assert len(warnings) == 1
    assert warnings[0]["log_level"] == "warning"
    assert "torn" in warnings[0]["error"]
    # rewritten whole at stop
    assert HighWatermarkCheckpoint(config.data_dir).read() == {("t", 0): 3}


def _batch(pid: int, seq: int, count: int = 2) -> bytes:
    return build_batch(
        [RecordInput(value=b"%d" % (seq + i)) for i in range(count)],
        producer_id=pid,
        producer_epoch=0,
        base_sequence=seq,
    )


def _idempotent(pid: int, seq: int) -> ProduceRequest:
    return ProduceRequest(
        acks=1,
        timeout_ms=1000,
        topic_data=(
            TopicProduceData(
                name="t",
                partition_data=(
                    PartitionProduceData(index=0, records=_batch(pid, seq)),
                ),
            ),
        ),
    )


async def _produce_idempotent(
    ctx: BrokerContext, pid: int, seq: int
) -> tuple[ErrorCode, int]:
    resp = await call(ctx, 0, 9, _idempotent(pid, seq))
    assert isinstance(resp, ProduceResponse)
    part = resp.responses[0].partition_responses[0]
    return ErrorCode(part.error_code), part.base_offset


@pytest.mark.anyio
async def test_a_new_leader_rebuilds_untracked_producer_state_off_the_loop(
    tmp_path: Path,
) -> None:
    """A partition whose producer state is not kept (its log was written behind the
    producer service's back) is rebuilt in a worker thread when this broker comes
    to lead it: a retry is then a duplicate with its first offset, a gap is
    OUT_OF_ORDER_SEQUENCE_NUMBER, the next batch appends."""
    config = cluster_config(tmp_path)
    pid = 4242
    async with running(config, _cluster(leader=2)) as ctx:
        cluster = _cluster_of(ctx)
        await settled(ctx, cluster)
        plog = ctx.topics.logs.partition("t", 0)
        for seq, offset in ((0, 0), (2, 2)):
            plog.append(_batch(pid, seq), leader_epoch=1)
            assert plog.log_end_offset == offset + 2
        ctx.producers.forget(plog)
        assert not ctx.producers.tracks(plog)

        cluster.move_leader("t", 0, NODE)
        await settled(ctx, cluster)
        with anyio.fail_after(5):
            while not ctx.producers.tracks(plog):  # noqa: ASYNC110 (no event to wait on)
                await anyio.sleep(0.01)
        assert await _produce_idempotent(ctx, pid, 2) == (ErrorCode.NONE, 2)
        assert await _produce_idempotent(ctx, pid, 0) == (ErrorCode.NONE, 0)
        assert plog.log_end_offset == 4
        code, _ = await _produce_idempotent(ctx, pid, 9)
        assert code == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
        assert await _produce_idempotent(ctx, pid, 4) == (ErrorCode.NONE, 4)
        assert plog.log_end_offset == 6


@pytest.mark.anyio
async def test_idempotent_batches_wait_while_the_state_is_rebuilt(
    tmp_path: Path,
) -> None:
    """While a partition's producer state is being rebuilt, its idempotent batches
    answer NOT_LEADER_OR_FOLLOWER (the client retries) and are not appended."""
    config = cluster_config(tmp_path)
    async with running(config, _cluster()) as ctx:
        await settled(ctx, _cluster_of(ctx))
        plog = ctx.topics.logs.partition("t", 0)
        assert await _produce_idempotent(ctx, 7, 0) == (ErrorCode.NONE, 0)
        ctx.producers.begin_reload(plog)
        code, _ = await _produce_idempotent(ctx, 7, 0)
        assert code == ErrorCode.NOT_LEADER_OR_FOLLOWER
        assert plog.log_end_offset == 2
        await ctx.producers.reload(plog, begun=True)
        assert await _produce_idempotent(ctx, 7, 0) == (ErrorCode.NONE, 0)
        assert await _produce_idempotent(ctx, 7, 2) == (ErrorCode.NONE, 2)
        # a plain batch is never held back
        await _produce(ctx, 1)
        assert plog.log_end_offset == 5


@pytest.mark.anyio
async def test_a_topic_made_again_does_not_inherit_the_old_high_watermark(
    tmp_path: Path,
) -> None:
    """A deleted topic's checkpointed high watermark goes with it: the topic made
    again under the same name starts from 0 and waits for its followers."""
    config = cluster_config(tmp_path)
    async with running(config, _cluster()) as ctx:
        cluster = _cluster_of(ctx)
        await _written(ctx)
        assert ctx.replicas is not None
        await ctx.replicas.checkpoint.write()
        assert HighWatermarkCheckpoint(config.data_dir).read() == {("t", 0): 3}
        cluster.remove_topic("t")
        await settled(ctx, cluster)
        cluster.add_topic("t", [[NODE, 2, 3]])  # a new topic id
        await settled(ctx, cluster)
        await _produce(ctx, 3)
        assert await _high_watermark(ctx) == 0
        await ctx.replicas.checkpoint.write()
        assert HighWatermarkCheckpoint(config.data_dir).read() == {}


@pytest.mark.anyio
async def test_an_unusable_checkpoint_path_is_logged_and_never_stops_the_broker(
    tmp_path: Path,
) -> None:
    """A checkpoint path that cannot be read nor replaced (a directory stands there)
    is logged at start and at each write; the broker serves and stops cleanly."""
    config = cluster_config(tmp_path)
    (config.data_dir / FILE_NAME).mkdir(parents=True)
    with capture_logs() as events:
        async with running(config, _cluster()) as ctx:
            await _written(ctx)
            assert ctx.replicas is not None
            await ctx.replicas.checkpoint.write()
    names = [e["event"] for e in events]
    assert names.count("hw_checkpoint_unreadable") == 1
    assert names.count("hw_checkpoint_failed") == 2  # the write above, and at stop
    assert "storage_closed" in names
