"""Partition state: computed in one place, asked by Produce and Fetch."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from broker.config import resolve
from broker.context import BrokerContext
from broker.net.dispatch import Dispatcher, load_handlers
from broker.net.request import RequestContext
from broker.server import open_context
from broker.topics.state import PartitionState
from protocol.error_codes import ErrorCode
from protocol.headers import RequestHeader
from protocol.messages.fetch import (
    FetchPartition,
    FetchRequest,
    FetchResponse,
    FetchTopic,
)
from protocol.messages.produce import (
    PartitionProduceData,
    ProduceRequest,
    ProduceResponse,
    TopicProduceData,
)
from protocol.record_builder import RecordInput, build_batch
from storage.log_manager import TopicMeta
from storage.partition_log import PartitionLog


def _rctx(ctx: BrokerContext, api_key: int, version: int) -> RequestContext:
    header = RequestHeader(
        request_api_key=api_key,
        request_api_version=version,
        correlation_id=1,
        client_id="t",
    )
    return RequestContext(
        broker=ctx, header=header, listener="PLAINTEXT", peer="test", received_at=0.0
    )


def _produce(ctx: BrokerContext, acks: int = 1) -> ProduceResponse:
    request = ProduceRequest(
        acks=acks,
        timeout_ms=1000,
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
    resp = Dispatcher()(_rctx(ctx, 0, 9), request)
    assert isinstance(resp, ProduceResponse)
    return resp


def _fetch(ctx: BrokerContext) -> FetchResponse:
    request = FetchRequest(
        max_wait_ms=0,
        min_bytes=1,
        topics=(
            FetchTopic(
                topic="t",
                partitions=(
                    FetchPartition(
                        partition=0, fetch_offset=0, partition_max_bytes=1 << 20
                    ),
                ),
            ),
        ),
    )
    resp = Dispatcher()(_rctx(ctx, 1, 11), request)
    assert isinstance(resp, FetchResponse)
    return resp


@pytest.mark.anyio
async def test_single_node_leads_every_partition_and_shows_the_durable_offset(
    tmp_path: Path,
) -> None:
    """On one node the state says this node leads, is the only replica and in-sync
    replica, and the high watermark is the durable offset, not the log end."""
    load_handlers()
    config = resolve(flags={"data_dir": str(tmp_path / "data")}, sets={})
    async with open_context(config) as ctx:
        meta = ctx.topics.logs.create_topic("t", 1)
        plog = ctx.topics.logs.partition("t", 0)
        plog.append(build_batch([RecordInput(value=b"a")]), leader_epoch=0, now_ms=0)
        state = ctx.topics.state(meta, plog)
        node = config.node_id
        assert state.is_local_leader
        assert (state.leader_id, state.replicas, state.isr) == (node, (node,), (node,))
        assert plog.log_end_offset == 1
        assert state.high_watermark == plog.durable_offset == 0
        assert state.last_stable_offset == state.high_watermark
        plog.sync()
        assert ctx.topics.state(meta, plog).high_watermark == 1


@pytest.mark.anyio
async def test_produce_and_fetch_answer_not_leader_when_another_node_leads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a state naming another leader, Produce appends nothing and answers
    NOT_LEADER_OR_FOLLOWER, and so does Fetch; with this node leading both work."""
    load_handlers()
    config = resolve(flags={"data_dir": str(tmp_path / "data")}, sets={})
    async with open_context(config) as ctx:
        ctx.topics.logs.create_topic("t", 1)
        assert _produce(ctx).responses[0].partition_responses[0].error_code == 0
        local = ctx.topics.state

        def elsewhere(meta: TopicMeta, plog: PartitionLog) -> PartitionState:
            other = config.node_id + 1
            return dataclasses.replace(
                local(meta, plog), leader_id=other, replicas=(other,), isr=(other,)
            )

        monkeypatch.setattr(ctx.topics, "state", elsewhere)
        for acks in (1, -1):
            part = _produce(ctx, acks).responses[0].partition_responses[0]
            assert part.error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER
            assert part.base_offset == -1
        assert ctx.topics.logs.partition("t", 0).log_end_offset == 1
        fetched = _fetch(ctx).responses[0].partitions[0]
        assert fetched.error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER
        assert fetched.records == b""

        monkeypatch.setattr(ctx.topics, "state", local)
        ctx.topics.logs.partition("t", 0).sync()
        fetched = _fetch(ctx).responses[0].partitions[0]
        assert fetched.error_code == ErrorCode.NONE
        assert fetched.high_watermark == 1
        records = fetched.records
        assert isinstance(records, (bytes, memoryview))
        assert len(records) > 0
