"""The admin API's cluster routes over a cluster's watched cache: brokers, health,
partition states, and the controller's answers to elect and reassign as HTTP.

The broker's storage is real (``open_context``); the cluster service is scripted:
its cache is filled with the keys etcd would hold, and its ``elect``/``reassign``
answer as the controller would (writing the new partition state into the cache
first), so the cluster-mode branch of every route is checked without etcd; runs
against real etcd and brokers belong in tests/cluster.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import anyio
import pytest

from broker.admin.routes import build_routes, cluster
from broker.admin.server import AdminView, HttpRequest, HttpResponse, RouteTable
from broker.cluster.cache import MetadataCache
from broker.cluster.keys import Keys
from broker.cluster.model import (
    BrokerInfo,
    ControllerInfo,
    Endpoint,
    PartitionRecord,
    RequestError,
    TopicRecord,
    encode,
)
from broker.cluster.service import ClusterService
from broker.cluster.store import Event
from broker.config import resolve
from broker.context import Runtime
from broker.metrics import Metrics
from broker.server import open_context
from protocol.error_codes import ErrorCode

KEYS = Keys("/t")
P0 = PartitionRecord(replicas=(1, 2), leader=2, leader_epoch=4, isr=(1, 2))
P1 = PartitionRecord(replicas=(2, 3), leader=2, leader_epoch=1, isr=(2,))
P2 = PartitionRecord(replicas=(3,), leader=-1, leader_epoch=7, isr=(3,))


def _put(cache: MetadataCache, key: str, value: bytes, revision: int = 1) -> None:
    cache.apply(
        [Event(key=key, value=value, create_revision=revision, mod_revision=revision)]
    )


def _broker(node_id: int) -> BrokerInfo:
    return BrokerInfo(
        node_id=node_id,
        endpoints=(Endpoint(name="internal", host=f"b{node_id}", port=9092),),
        rack=f"r{node_id}",
        admin=f"10.0.0.{node_id}:9644",
    )


class ScriptedCluster(ClusterService):
    """Brokers 1 (this one) and 2 (the controller) live, 3 gone; ``orders`` has a
    partition led by 2 (preferred leader 1), one under-replicated, one offline."""

    def __init__(self) -> None:
        self.cache = MetadataCache(KEYS, node_id=1, cluster_id="c-1")
        for n in (1, 2):
            _put(self.cache, KEYS.broker(n), encode(_broker(n)))
        _put(self.cache, KEYS.controller, encode(ControllerInfo(node_id=2)), 5)
        for i, p in enumerate((P0, P1, P2)):
            _put(self.cache, KEYS.partition("orders", i), encode(p))
        topic = TopicRecord(name="orders", topic_id=uuid.uuid4(), partitions=3)
        _put(self.cache, KEYS.topic("orders"), encode(topic))
        self.calls: list[tuple[object, ...]] = []
        self.stall = False

    async def elect(
        self, topic: str, index: int, *, unclean: bool = False
    ) -> RequestError | None:
        self.calls.append(("elect", topic, index, unclean))
        if self.stall:
            await anyio.sleep_forever()
        p = self.cache.partition(topic, index)
        assert p is not None
        if p.replicas[0] not in {b.node_id for b in self.cache.brokers()}:
            return RequestError(
                code=ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE,
                message=f"replica {p.replicas[0]} is not live",
            )
        if p.leader == p.replicas[0]:
            return RequestError(code=ErrorCode.ELECTION_NOT_NEEDED, message="")
        moved = dataclasses.replace(
            p, leader=p.replicas[0], leader_epoch=p.leader_epoch + 1
        )
        _put(self.cache, KEYS.partition(topic, index), encode(moved), 9)
        return None

    async def reassign(
        self, topic: str, index: int, replicas: Sequence[int]
    ) -> RequestError | None:
        self.calls.append(("reassign", topic, index, tuple(replicas)))
        p = self.cache.partition(topic, index)
        assert p is not None
        if any(r > 3 for r in replicas):
            return RequestError(
                code=ErrorCode.INVALID_REPLICA_ASSIGNMENT, message="no broker 9"
            )
        target = tuple(replicas)
        moving = dataclasses.replace(
            p,
            replicas=target + tuple(r for r in p.replicas if r not in target),
            adding=tuple(r for r in target if r not in p.replicas),
            removing=tuple(r for r in p.replicas if r not in target),
        )
        _put(self.cache, KEYS.partition(topic, index), encode(moving), 10)
        return None


@pytest.fixture
async def view(tmp_path: Path) -> AsyncIterator[tuple[AdminView, ScriptedCluster]]:
    config = resolve(flags={"data_dir": str(tmp_path), "node_id": "1"}, sets={})
    runtime = Runtime(ready=True, admin_address=("127.0.0.1", 9999))
    async with open_context(config) as ctx:
        svc = ScriptedCluster()
        clustered = dataclasses.replace(ctx, cluster=svc.cache, coordination=svc)
        v = AdminView(config=config, runtime=runtime, metrics=Metrics(), ctx=clustered)
        yield v, svc


async def call(
    view: AdminView, method: str, path: str, body: object | None = None
) -> tuple[int, object]:
    routes = RouteTable()
    build_routes(routes)
    [(route, m)] = [(r, m) for r, m in routes.match(path) if r.method == method]
    request = HttpRequest(
        method=method,
        path=path,
        query={},
        params=m.groupdict(),
        headers={},
        body=b"" if body is None else json.dumps(body).encode(),
    )
    result = route.fn(view, request)
    answer = await result if inspect.isawaitable(result) else result
    assert isinstance(answer, HttpResponse)
    return answer.status, json.loads(answer.body)


@pytest.mark.anyio
async def test_brokers_and_cluster_come_from_the_watched_cache(
    view: tuple[AdminView, ScriptedCluster],
) -> None:
    """Live brokers with racks, endpoints, admin addresses and partition counts; the
    overview names the controller, the broker down, leaderless and under-replicated
    partitions, and is unhealthy while a partition has no leader."""
    v, _ = view
    status, brokers = await call(v, "GET", "/v1/brokers")
    assert status == 200
    assert isinstance(brokers, list)
    assert [
        (
            b["node_id"],
            b["rack"],
            b["is_controller"],
            b["is_self"],
            b["leader_partitions"],
            b["replica_partitions"],
            b["admin"],
        )
        for b in brokers
    ] == [
        (1, "r1", False, True, 0, 1, {"host": "127.0.0.1", "port": 9999}),
        (2, "r2", True, False, 2, 2, {"host": "10.0.0.2", "port": 9644}),
    ]
    assert brokers[1]["endpoints"] == [
        {
            "name": "internal",
            "host": "b2",
            "port": 9092,
            "security_protocol": "PLAINTEXT",
        }
    ]
    status, overview = await call(v, "GET", "/v1/cluster")
    assert status == 200
    assert isinstance(overview, dict)
    assert {k: overview[k] for k in (
        "cluster_id", "clustered", "controller_id", "brokers", "broker_ids",
        "nodes_down", "partitions", "leaderless_partitions", "offline_partitions",
        "under_replicated_partitions", "healthy", "unhealthy_reasons",
    )} == {
        "cluster_id": "c-1",
        "clustered": True,
        "controller_id": 2,
        "brokers": 2,
        "broker_ids": [1, 2],
        "nodes_down": [3],
        "partitions": 3,
        "leaderless_partitions": ["orders/2"],
        "offline_partitions": 1,
        "under_replicated_partitions": ["orders/1"],
        "healthy": False,
        "unhealthy_reasons": ["leaderless_partitions"],
    }  # fmt: skip


@pytest.mark.anyio
async def test_partitions_show_the_cluster_state(
    view: tuple[AdminView, ScriptedCluster],
) -> None:
    """Leader, epoch, replicas, ISR and offline replicas per partition; 404 for a
    topic the cluster does not have."""
    v, _ = view
    status, rows = await call(v, "GET", "/v1/partitions/orders")
    assert status == 200
    assert isinstance(rows, list)
    assert [
        (r["partition"], r["leader"], r["leader_epoch"], r["replicas"], r["isr"],
         r["offline_replicas"], r["leaderless"], r["under_replicated"])
        for r in rows
    ] == [
        (0, 2, 4, [1, 2], [1, 2], [], False, False),
        (1, 2, 1, [2, 3], [2], [3], False, True),
        (2, -1, 7, [3], [3], [3], True, False),
    ]  # fmt: skip
    assert (await call(v, "GET", "/v1/partitions"))[1] == rows
    assert (await call(v, "GET", "/v1/partitions/nope"))[0] == 404


@pytest.mark.anyio
async def test_elect_answers_the_new_state_or_the_controllers_refusal(
    view: tuple[AdminView, ScriptedCluster],
) -> None:
    """A done election answers the partition with its new leader; "not needed" is a
    success; a refusal is 400 naming Kafka's error; an unknown partition 404."""
    v, svc = view
    status, moved = await call(v, "POST", "/v1/partitions/orders/0/elect")
    assert status == 200
    assert isinstance(moved, dict)
    assert (moved["leader"], moved["leader_epoch"]) == (1, 5)
    status, again = await call(v, "POST", "/v1/partitions/orders/0/elect", {})
    assert (status, again) == (200, moved)
    status, refused = await call(v, "POST", "/v1/partitions/orders/2/elect")
    assert status == 400
    assert refused == {
        "error": "PREFERRED_LEADER_NOT_AVAILABLE: replica 3 is not live",
        "error_code": 80,
        "error_name": "PREFERRED_LEADER_NOT_AVAILABLE",
    }
    assert (await call(v, "POST", "/v1/partitions/orders/7/elect"))[0] == 404
    status, bad = await call(v, "POST", "/v1/partitions/orders/0/elect", {"unclean": 1})
    assert (status, bad) == (400, {"error": "unclean must be true or false"})
    assert svc.calls == [("elect", "orders", i, False) for i in (0, 0, 2)]


@pytest.mark.anyio
async def test_reassign_validates_and_shows_replicas_moving(
    view: tuple[AdminView, ScriptedCluster],
) -> None:
    """The body must be distinct node ids; the answer shows the replicas being added
    and removed; the controller's refusal names INVALID_REPLICA_ASSIGNMENT."""
    v, svc = view
    for body in ({}, {"replicas": [1, 1]}, {"replicas": "1,2"}, {"replicas": [-1]}):
        status, answer = await call(v, "POST", "/v1/partitions/orders/1/reassign", body)
        assert status == 400, body
        assert isinstance(answer, dict)
        assert "distinct node ids" in answer["error"]
    assert svc.calls == []
    status, moving = await call(
        v, "POST", "/v1/partitions/orders/1/reassign", {"replicas": [2, 1]}
    )
    assert status == 200
    assert isinstance(moving, dict)
    assert (moving["replicas"], moving["adding_replicas"], moving["removing_replicas"]) == (
        [2, 1, 3], [1], [3]
    )  # fmt: skip
    status, refused = await call(
        v, "POST", "/v1/partitions/orders/1/reassign", {"replicas": [9]}
    )
    assert status == 400
    assert isinstance(refused, dict)
    assert refused["error_name"] == "INVALID_REPLICA_ASSIGNMENT"
    overview = (await call(v, "GET", "/v1/cluster"))[1]
    assert isinstance(overview, dict)
    assert overview["reassigning_partitions"] == ["orders/1"]


@pytest.mark.anyio
async def test_a_controller_that_does_not_answer_is_a_504(
    view: tuple[AdminView, ScriptedCluster], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The route gives up before the admin server's own deadline and says the
    request may still be applied."""
    v, svc = view
    svc.stall = True
    monkeypatch.setattr(cluster, "WRITE_WAIT_S", 0.1)
    status, answer = await call(v, "POST", "/v1/partitions/orders/0/elect")
    assert status == 504
    assert isinstance(answer, dict)
    assert "may still be applied" in answer["error"]


@pytest.mark.anyio
async def test_cluster_gauges_follow_the_cache(
    view: tuple[AdminView, ScriptedCluster],
) -> None:
    """Two live brokers, this one not the controller (2), leading nothing; one
    partition offline cluster-wide."""
    v, _ = view
    lines = [
        line for line in cluster.cluster_metric_lines(v) if not line.startswith("#")
    ]
    assert lines == [
        "ailurus_cluster_brokers 2",
        "ailurus_cluster_is_controller 0",
        "ailurus_cluster_controller_id 2",
        "ailurus_partitions_leader 0",
        "ailurus_partitions_offline 1",
    ]
