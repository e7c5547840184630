"""The Produce handler without the producer service, and the start-up state preload."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from broker.config import resolve
from broker.context import BrokerContext
from broker.net.dispatch import Dispatcher, load_handlers
from broker.net.request import RequestContext
from broker.producers.service import ProducerService
from broker.server import open_context
from protocol.error_codes import ErrorCode
from protocol.headers import RequestHeader
from protocol.messages.produce import (
    PartitionProduceData,
    ProduceRequest,
    ProduceResponse,
    TopicProduceData,
)
from protocol.record_builder import RecordInput, build_batch
from storage.log_manager import LogManager
from storage.producer_state import Duplicate, ProducerIdAllocator


def _request(records: bytes) -> ProduceRequest:
    return ProduceRequest(
        acks=1,
        timeout_ms=1000,
        topic_data=(
            TopicProduceData(
                name="t",
                partition_data=(PartitionProduceData(index=0, records=records),),
            ),
        ),
    )


def _rctx(ctx: BrokerContext) -> RequestContext:
    header = RequestHeader(
        request_api_key=0, request_api_version=9, correlation_id=1, client_id="t"
    )
    return RequestContext(
        broker=ctx, header=header, listener="PLAINTEXT", peer="test", received_at=0.0
    )


@pytest.mark.anyio
async def test_idempotent_batch_is_refused_retriably_while_producer_state_is_not_loaded(
    tmp_path: Path,
) -> None:
    """With the producer state not loaded an idempotent batch gets
    NOT_LEADER_OR_FOLLOWER (retriable) and is not appended unchecked; a plain batch
    is appended."""
    load_handlers()
    config = resolve(flags={"data_dir": str(tmp_path / "data")}, sets={})
    async with open_context(config) as ctx:
        ctx.topics.logs.create_topic("t", 1)
        ctx.producers.close()
        assert not ctx.producers.loaded
        idempotent = build_batch(
            [RecordInput(value=b"x")], producer_id=7, producer_epoch=0, base_sequence=0
        )
        dispatch = Dispatcher()
        resp = dispatch(_rctx(ctx), _request(idempotent))
        assert isinstance(resp, ProduceResponse)
        part = resp.responses[0].partition_responses[0]
        assert part.error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER
        assert ctx.topics.logs.partition("t", 0).log_end_offset == 0
        plain = dispatch(_rctx(ctx), _request(build_batch([RecordInput(value=b"p")])))
        assert isinstance(plain, ProduceResponse)
        assert plain.responses[0].partition_responses[0].error_code == 0
        assert ctx.topics.logs.partition("t", 0).log_end_offset == 1


def test_preload_rebuilds_state_so_first_check_reads_nothing(tmp_path: Path) -> None:
    """preload() rebuilds every partition's state up front: a retried batch is
    recognised afterwards without reading the log again; empty logs cost nothing."""
    data = str(tmp_path / "data")
    lm = LogManager(data, {})
    lm.create_topic("t", 3)
    batch = build_batch(
        [RecordInput(value=b"v")] * 3, producer_id=5, producer_epoch=0, base_sequence=0
    )
    lm.partition("t", 1).append(batch, leader_epoch=0)
    lm.close()

    lm = LogManager(data, {})
    svc = ProducerService(ProducerIdAllocator(tmp_path))
    plogs = lm.partitions("t")
    assert svc.preload(plogs) == 1  # only partition 1 holds data
    assert svc.preload(plogs) == 0  # already loaded: nothing rebuilt twice
    lm.partition("t", 1).close()  # a rebuild now would fail to read: none happens
    verdict = svc.state(plogs[1]).check(5, 0, 0, 3)
    assert isinstance(verdict, Duplicate)
    assert (verdict.base_offset, verdict.last_offset) == (0, 2)
    lm.close()


def test_preload_of_an_empty_data_dir_costs_nothing(tmp_path: Path) -> None:
    """Start-up impact on an empty data dir: no partitions, nothing read."""
    lm = LogManager(str(tmp_path / "data"), {})
    svc = ProducerService(ProducerIdAllocator(tmp_path))
    started = time.perf_counter()
    assert svc.preload([]) == 0
    assert time.perf_counter() - started < 0.01
    lm.close()
