"""The leader's side of replication in Fetch: follower reads, progress, diverging epochs."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.config import resolve
from broker.context import BrokerContext
from broker.net.dispatch import Dispatcher, load_handlers
from broker.net.request import RequestContext
from broker.server import open_context
from broker.topics.followers import FollowerProgress
from protocol.headers import RequestHeader
from protocol.messages.fetch import (
    FetchPartition,
    FetchRequest,
    FetchResponse,
    FetchTopic,
    PartitionData,
    ReplicaState,
)
from protocol.record_builder import RecordInput, build_batch
from protocol.records import iter_batches


def _fetch(
    ctx: BrokerContext,
    *,
    replica: int,
    offset: int,
    last_fetched_epoch: int = -1,
    version: int = 12,
) -> PartitionData:
    request = FetchRequest(
        replica_id=replica if version < 15 else -1,
        replica_state=ReplicaState(replica_id=replica if version >= 15 else -1),
        max_wait_ms=0,
        min_bytes=1,
        topics=(
            FetchTopic(
                topic="t",
                topic_id=ctx.topics.logs.topic("t").topic_id,
                partitions=(
                    FetchPartition(
                        partition=0,
                        fetch_offset=offset,
                        last_fetched_epoch=last_fetched_epoch,
                        log_start_offset=0,
                        partition_max_bytes=1 << 20,
                    ),
                ),
            ),
        ),
    )
    header = RequestHeader(
        request_api_key=1, request_api_version=version, correlation_id=1, client_id="t"
    )
    rctx = RequestContext(
        broker=ctx, header=header, listener="PLAINTEXT", peer="test", received_at=0.0
    )
    resp = Dispatcher()(rctx, request)
    assert isinstance(resp, FetchResponse)
    return resp.responses[0].partitions[0]


def _offsets(part: PartitionData) -> list[int]:
    records = part.records
    assert isinstance(records, (bytes, memoryview))
    return [h.base_offset for _, h in iter_batches(records)]


@pytest.mark.anyio
@pytest.mark.parametrize("version", [12, 15])
async def test_follower_reads_past_the_high_watermark_and_is_recorded(
    tmp_path: Path, version: int
) -> None:
    """A replica's Fetch reads to the log end while a consumer stops at the high
    watermark; the leader notes the follower's offset and when it caught up."""
    load_handlers()
    config = resolve(flags={"data_dir": str(tmp_path / "data")}, sets={})
    async with open_context(config) as ctx:
        ctx.topics.logs.create_topic("t", 1)
        plog = ctx.topics.logs.partition("t", 0)
        for _ in range(3):
            plog.append(build_batch([RecordInput(value=b"a")]), leader_epoch=0)
        plog.sync()
        plog.append(build_batch([RecordInput(value=b"b")]), leader_epoch=0)
        consumer = _fetch(ctx, replica=-1, offset=0, version=version)
        assert consumer.high_watermark == 3
        assert _offsets(consumer) == [0, 1, 2]
        follower = _fetch(ctx, replica=2, offset=1, version=version)
        assert _offsets(follower) == [1, 2, 3]
        assert follower.high_watermark == 3
        seen = ctx.topics.followers.followers("t", 0)
        assert list(seen) == [2]
        assert (seen[2].fetch_offset, seen[2].leader_log_end) == (1, 4)
        assert seen[2].caught_up_at is None
        _fetch(ctx, replica=2, offset=4, version=version)
        assert ctx.topics.followers.followers("t", 0)[2].caught_up_at is not None
        assert ctx.topics.followers.followers("t", 0)[2].fetch_offset == 4


@pytest.mark.anyio
async def test_diverging_epoch_tells_a_follower_where_its_history_leaves(
    tmp_path: Path,
) -> None:
    """KIP-320: a follower whose last fetched epoch ended earlier on the leader, or
    whose offset is past the end of that epoch, gets diverging_epoch and no records;
    one that agrees gets records; consumers are never told."""
    load_handlers()
    config = resolve(flags={"data_dir": str(tmp_path / "data")}, sets={})
    async with open_context(config) as ctx:
        ctx.topics.logs.create_topic("t", 1)
        plog = ctx.topics.logs.partition("t", 0)
        for epoch in (1, 1, 1, 3, 3, 3):
            plog.append(build_batch([RecordInput(value=b"a")]), leader_epoch=epoch)
        plog.sync()
        older = _fetch(ctx, replica=2, offset=6, last_fetched_epoch=2)
        div = older.diverging_epoch
        assert (div.epoch, div.end_offset) == (1, 3)
        assert not older.records
        longer = _fetch(ctx, replica=2, offset=8, last_fetched_epoch=3)
        div = longer.diverging_epoch
        assert (div.epoch, div.end_offset) == (3, 6)
        agrees = _fetch(ctx, replica=2, offset=3, last_fetched_epoch=1)
        assert agrees.diverging_epoch.epoch == -1
        assert _offsets(agrees) == [3, 4, 5]
        consumer = _fetch(ctx, replica=-1, offset=3, last_fetched_epoch=2)
        assert consumer.diverging_epoch.epoch == -1
        assert _offsets(consumer) == [3, 4, 5]


def test_follower_progress_keeps_the_last_catch_up_time() -> None:
    """A follower's caught-up time moves only when a fetch reaches the leader's end."""
    table = FollowerProgress()
    common = {"replica_id": 2, "log_start_offset": 0}
    assert table.record("t", 0, fetch_offset=5, leader_log_end=5, now=1.0, **common)
    late = table.record("t", 0, fetch_offset=6, leader_log_end=9, now=2.0, **common)
    assert (late.fetch_offset, late.fetched_at, late.caught_up_at) == (6, 2.0, 1.0)
    table.forget("t")
    assert table.followers("t", 0) == {}
