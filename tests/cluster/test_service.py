"""``ClusterService`` in process against a real etcd: admin requests wait for the
controller's answer in the broker's own cache, and the cache follows the prefix.

A small stand-in controller in the test answers the requests the way the real
one does (apply and delete the request in one transaction, or set ``error``).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import ClassVar

import anyio
import pytest
from structlog.testing import capture_logs

from broker.cluster.controller import Controller, NotController
from broker.cluster.etcd import EtcdStore
from broker.cluster.keys import Keys
from broker.cluster.model import (
    CreateTopicRequest,
    Endpoint,
    PartitionRecord,
    RequestError,
    ShutdownRequest,
    TopicRecord,
    encode,
)
from broker.cluster.service import ClusterService
from broker.cluster.store import Compare, Delete, Put
from broker.config import BrokerConfig, ClusterSettings
from protocol.error_codes import ErrorCode
from tests.cluster.etcd import EtcdProcess

pytestmark = pytest.mark.anyio

PREFIX = "/svc"
KEYS = Keys(PREFIX)


def _config(etcd: EtcdProcess, node_id: int, **cluster: int) -> BrokerConfig:
    return BrokerConfig(
        node_id=node_id,
        cluster=ClusterSettings(
            endpoints=(("127.0.0.1", etcd.client_port),), prefix=PREFIX, **cluster
        ),
    )


ENDPOINTS = [Endpoint(name="default", host="127.0.0.1", port=9092)]


async def _answer_requests(store: EtcdStore) -> None:
    """Answer admin requests like the controller: topics named ``bad*`` are
    refused, ``slow*`` never answered, others created; deletes and shutdowns are
    done."""
    while True:
        snap = await store.get_prefix(KEYS.admin)
        for kv in snap.items:
            parts = KEYS.relative(kv.key)
            guard = [Compare(kv.key, mod_revision=kv.mod_revision)]
            match parts:
                case ["admin", "create", name] if name.startswith("bad"):
                    refused = CreateTopicRequest.decode(kv.value)
                    if refused.error is None:
                        error = RequestError(
                            code=ErrorCode.INVALID_REPLICATION_FACTOR,
                            message="replication factor 5 > 1 live broker",
                        )
                        await store.txn(
                            guard,
                            [Put(kv.key, encode(_with_error(refused, error)))],
                        )
                case ["admin", "create", name] if not name.startswith("slow") and (
                    CreateTopicRequest.decode(kv.value).error is None
                ):
                    record = TopicRecord(name=name, topic_id=uuid.uuid4(), partitions=1)
                    state = PartitionRecord(
                        replicas=(1,), leader=1, leader_epoch=0, isr=(1,)
                    )
                    await store.txn(
                        guard,
                        [
                            Put(KEYS.partition(name, 0), encode(state)),
                            Put(KEYS.topic(name), encode(record)),
                            Delete(kv.key),
                        ],
                    )
                case ["admin", "delete", name]:
                    await store.txn(
                        guard,
                        [
                            Delete(KEYS.topic_partitions(name), prefix=True),
                            Delete(KEYS.topic(name)),
                            Delete(kv.key),
                        ],
                    )
                case ["admin", "shutdown", _]:
                    request = ShutdownRequest.decode(kv.value)
                    if not request.done:
                        done = ShutdownRequest(
                            node_id=request.node_id, done=True, remaining=1
                        )
                        await store.txn(guard, [Put(kv.key, encode(done))])
        await anyio.sleep(0.05)


class _Idle(Controller):
    """Elected, but leaves every request to the stand-in (which never answers
    ``slow*``): the real controller would create the topic."""

    async def run(self) -> None:
        await anyio.sleep_forever()


def _with_error(r: CreateTopicRequest, error: RequestError) -> CreateTopicRequest:
    return CreateTopicRequest(
        name=r.name,
        partitions=r.partitions,
        replication_factor=r.replication_factor,
        error=error,
    )


@pytest.fixture
async def stand_in(etcd: EtcdProcess) -> AsyncIterator[EtcdStore]:
    """A store of the stand-in controller, answering requests while the test runs."""
    store = EtcdStore([("127.0.0.1", etcd.client_port)])
    async with anyio.create_task_group() as tg:
        tg.start_soon(_answer_requests, store)
        yield store
        tg.cancel_scope.cancel()
    await store.close()


class _Silent(Controller):
    """Holds the office and decides nothing: the stand-in answers requests (or,
    without it, nobody does)."""

    async def run(self) -> None:
        await anyio.sleep_forever()


async def _running(
    etcd: EtcdProcess,
    node_id: int,
    body: Callable[[ClusterService], Awaitable[None]],
    *,
    controller_type: type[Controller] = _Silent,
    cluster_id: str = "ailurus-dev",
    **cluster: int,
) -> None:
    config = replace(_config(etcd, node_id, **cluster), cluster_id=cluster_id)
    service = await ClusterService.connect(
        config, ENDPOINTS, "127.0.0.1:9644", controller_type=controller_type
    )
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(service.run)
            with anyio.fail_after(20):
                await body(service)
            tg.cancel_scope.cancel()
    finally:
        await service.leave()


async def test_create_topics_returns_once_the_topic_is_in_the_cache(
    etcd: EtcdProcess, stand_in: EtcdStore
) -> None:
    """Created topics are in the broker's cache when create_topics returns; a
    refusal is returned with its code and its request key is deleted."""

    async def body(service: ClusterService) -> None:
        results = await service.create_topics(
            [
                CreateTopicRequest(name="good", partitions=1),
                CreateTopicRequest(name="bad", partitions=1, replication_factor=5),
            ]
        )
        assert results[0] is None
        assert service.cache.topic("good") is not None
        p = service.cache.partition("good", 0)
        assert p is not None
        assert p.leader == 1
        assert results[1] is not None
        assert results[1].code == ErrorCode.INVALID_REPLICATION_FACTOR
        assert await stand_in.get(KEYS.create("bad")) is None
        again = await service.create_topics(
            [CreateTopicRequest(name="good", partitions=1)]
        )
        assert again[0] is not None
        assert again[0].code == ErrorCode.TOPIC_ALREADY_EXISTS

    await _running(etcd, 1, body)


async def test_an_unanswered_request_times_out(etcd: EtcdProcess) -> None:
    """No answer within request_timeout_ms: REQUEST_TIMED_OUT."""

    async def body(service: ClusterService) -> None:
        with anyio.fail_after(5):
            [result] = await service.create_topics(
                [CreateTopicRequest(name="slow", partitions=1)]
            )
        assert result is not None
        assert result.code == ErrorCode.REQUEST_TIMED_OUT

    await _running(etcd, 1, body, controller_type=_Idle, request_timeout_ms=1000)


async def test_delete_topic_returns_once_the_topic_left_the_cache(
    etcd: EtcdProcess, stand_in: EtcdStore
) -> None:
    """delete_topic returns once the cache no longer has the topic; an unknown
    topic is UNKNOWN_TOPIC_OR_PARTITION."""

    async def body(service: ClusterService) -> None:
        assert await service.create_topics(
            [CreateTopicRequest(name="t", partitions=1)]
        ) == [None]
        assert await service.delete_topic("t") is None
        assert service.cache.topic("t") is None
        assert service.cache.partition("t", 0) is None
        unknown = await service.delete_topic("t")
        assert unknown is not None
        assert unknown.code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION

    await _running(etcd, 1, body)


async def test_controlled_shutdown_returns_what_the_controller_left(
    etcd: EtcdProcess, stand_in: EtcdStore
) -> None:
    """controlled_shutdown returns the controller's ``remaining`` and keeps the
    answered request (the broker is shutting down until it leaves)."""

    async def body(service: ClusterService) -> None:
        assert await service.controlled_shutdown() == 1
        kept = await stand_in.get(KEYS.shutdown(1))
        assert kept is not None
        assert ShutdownRequest.decode(kept.value).done

    await _running(etcd, 1, body, controller_type=_Idle)


async def test_cache_follows_other_brokers_and_the_controller(
    etcd: EtcdProcess,
) -> None:
    """The controller's cache sees another broker join (which sees it as the
    controller) and leave, and logs the arrival and the departure."""

    async def body(first: ClusterService) -> None:
        with anyio.fail_after(10):
            while first.cache.controller_id != 1:
                await first.cache.wait_changed(first.cache.version)
        with capture_logs() as logs:

            async def second(other: ClusterService) -> None:
                seen = first.cache.version
                while first.cache.broker(2) is None:
                    seen = await first.cache.wait_changed(seen)
                assert other.cache.controller_id == 1
                assert [b.node_id for b in other.cache.brokers()] == [1, 2]

            await _running(etcd, 2, second)
            seen = first.cache.version
            while first.cache.broker(2) is not None:
                seen = await first.cache.wait_changed(seen)
        events = [(e["event"], e.get("node_id")) for e in logs]
        assert ("broker_registered", 2) in events
        assert ("broker_lost", 2) in events
        assert first.is_controller

    await _running(etcd, 1, body)


async def test_a_compacted_watch_reads_the_prefix_again(etcd: EtcdProcess) -> None:
    """Changes made while the broker was not watching, and compacted away, reach
    its cache by a full read."""
    service = await ClusterService.connect(_config(etcd, 1), ENDPOINTS, None)
    writer = EtcdStore([("127.0.0.1", etcd.client_port)])
    try:
        record = TopicRecord(name="t", topic_id=uuid.uuid4(), partitions=1)
        await writer.put(KEYS.topic("t"), encode(record))
        revision = await writer.put(KEYS.topic("t"), encode(record))
        etcd.ctl("compaction", str(revision))
        with capture_logs() as logs:
            async with anyio.create_task_group() as tg:
                await tg.start(service.run)
                with anyio.fail_after(10):
                    while service.cache.topic("t") is None:
                        await service.cache.wait_changed(service.cache.version)
                tg.cancel_scope.cancel()
        assert "cluster_watch_reread" in [e["event"] for e in logs]
    finally:
        await writer.close()
        await service.leave()


async def test_later_brokers_adopt_the_stored_cluster_id(etcd: EtcdProcess) -> None:
    """The first broker's cluster id is the cluster's; a later broker configured
    with another one adopts it."""

    async def first(a: ClusterService) -> None:
        assert a.cache.cluster_id == "first"

        async def second(b: ClusterService) -> None:
            assert b.cache.cluster_id == "first"

        await _running(etcd, 2, second, cluster_id="second")

    await _running(etcd, 1, first, cluster_id="first")


class _FencedOnce(Controller):
    """A controller whose first term ends with a failed guarded write."""

    terms: ClassVar[list[int]] = []
    second_term: ClassVar[anyio.Event]

    async def run(self) -> None:
        _FencedOnce.terms.append(self.epoch)
        if len(_FencedOnce.terms) == 1:
            raise NotController("guarded write failed")
        _FencedOnce.second_term.set()
        await anyio.sleep_forever()


async def test_a_fenced_controller_resigns_and_campaigns_again(
    etcd: EtcdProcess,
) -> None:
    """NotController ends the term: the key is deleted and the broker, alone,
    is elected again at a higher epoch."""
    _FencedOnce.terms = []
    _FencedOnce.second_term = anyio.Event()

    async def body(service: ClusterService) -> None:
        await _FencedOnce.second_term.wait()
        second = _FencedOnce.terms[1]
        while (
            service.cache.controller is None or service.cache.controller.epoch != second
        ):
            await service.cache.wait_changed(service.cache.version)
        assert service.is_controller

    with capture_logs() as logs:
        await _running(etcd, 1, body, controller_type=_FencedOnce)
    first, second = _FencedOnce.terms
    assert second > first
    resigned = [e for e in logs if e["event"] == "controller_resigned"]
    assert [(e["epoch"], e["reason"]) for e in resigned] == [
        (first, "fenced"),
        (second, "stopped"),
    ]


async def test_a_refusal_nobody_collected_does_not_block_a_new_request(
    etcd: EtcdProcess, stand_in: EtcdStore
) -> None:
    """A refused request left behind by a stopped broker is replaced by the next
    request for the same topic."""
    stale = CreateTopicRequest(
        name="again",
        partitions=1,
        error=RequestError(code=ErrorCode.INVALID_PARTITIONS, message="old"),
    )
    await stand_in.put(KEYS.create("again"), encode(stale))

    async def body(service: ClusterService) -> None:
        [result] = await service.create_topics(
            [CreateTopicRequest(name="again", partitions=1)]
        )
        assert result is None
        assert service.cache.topic("again") is not None

    await _running(etcd, 1, body)
