"""Random histories of brokers joining and leaving, admin requests, followers
catching up and controller re-elections, against the controller over the
in-memory store. After every step: each partition's leader is a live in-sync
replica or -1, its ISR is a non-empty subset of its replicas, and every request
is answered. Over the whole history: leader epochs never go back and grow with
every leader change, partition epochs grow with every write, and a controller
that lost the election cannot write."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.cluster.controller import NotController
from broker.cluster.model import (
    NO_LEADER,
    CreatePartitionsRequest,
    CreateTopicRequest,
    ElectRequest,
    PartitionRecord,
    ReassignRequest,
    ShutdownRequest,
    encode,
)
from broker.cluster.store import Put
from tests.cluster.controller_harness import KEYS, Cluster

pytestmark = pytest.mark.anyio

NODES = range(5)
TOPICS = ("t0", "t1", "t2")

node = st.sampled_from(NODES)
topic = st.sampled_from(TOPICS)
action = st.one_of(
    st.tuples(st.just("join"), node),
    st.tuples(st.just("leave"), node),
    st.tuples(st.just("create"), topic, st.integers(1, 5), st.integers(1, 3)),
    st.tuples(st.just("grow"), topic, st.integers(0, 3)),
    st.tuples(st.just("delete"), topic),
    st.tuples(st.just("elect"), topic, st.integers(0, 7), st.booleans()),
    st.tuples(
        st.just("reassign"),
        topic,
        st.integers(0, 7),
        st.lists(node, max_size=3, unique=True),
    ),
    st.tuples(st.just("catch_up"), topic, st.integers(0, 7)),
    st.tuples(st.just("fall_behind"), topic, st.integers(0, 7)),
    st.tuples(st.just("shutdown"), node),
    st.tuples(st.just("reelect"), node),
)


def _count(c: Cluster, name: str) -> int:
    t = c.topic(name)
    return 0 if t is None else t.partitions


async def _step(c: Cluster, tg: Any, act: tuple[Any, ...]) -> None:
    kind = act[0]
    if kind == "join" and act[1] not in c.live():
        await c.join(act[1])
    elif kind == "leave" and act[1] in c.live():
        c.leave(act[1])
    elif kind == "create":
        req = CreateTopicRequest(
            name=act[1], partitions=act[2], replication_factor=act[3]
        )
        await c.store.put(KEYS.create(act[1]), encode(req))
    elif kind == "grow":
        req2 = CreatePartitionsRequest(name=act[1], count=_count(c, act[1]) + act[2])
        await c.store.put(KEYS.grow(act[1]), encode(req2))
    elif kind == "delete":
        await c.store.put(KEYS.delete(act[1]), b"")
    elif kind in {"elect", "reassign", "catch_up", "fall_behind"}:
        n = _count(c, act[1])
        index = act[2] % n if n else act[2]
        if kind == "elect":
            await c.store.put(
                KEYS.elect(act[1], index), encode(ElectRequest(unclean=act[3]))
            )
        elif kind == "reassign":
            req3 = ReassignRequest(replicas=tuple(act[3]))
            await c.store.put(KEYS.reassign(act[1], index), encode(req3))
        elif n:
            await _leader_changes_isr(c, act[1], index, grow=kind == "catch_up")
    elif kind == "shutdown" and act[1] in c.live():
        await c.store.put(
            KEYS.shutdown(act[1]), encode(ShutdownRequest(node_id=act[1]))
        )
    elif kind == "reelect":
        old = c.controller
        assert old is not None
        failed = len(c.outcome)
        await c.start(tg, act[1])
        assert len(c.outcome) == failed + 1  # the old controller stopped
        before = c.store.revision
        with pytest.raises(NotController):
            await old._write([], [Put(KEYS.topic("stale"), b"{}")])
        assert c.store.revision == before
    await c.settle()


async def _leader_changes_isr(c: Cluster, name: str, index: int, *, grow: bool) -> None:
    """A live leader adds its live replicas to the ISR (they caught up), or drops
    its followers (they fell behind)."""
    p = c.partition(name, index)
    live = c.live()
    if p.leader == NO_LEADER or p.leader not in live:
        return
    if grow:
        isr = tuple(dict.fromkeys([*p.isr, *(r for r in p.replicas if r in live)]))
    else:
        isr = (p.leader,)
    if isr != p.isr:
        await c.set_isr(name, index, isr)


async def _check_state(c: Cluster) -> None:
    live = c.live()
    for (name, index), p in c.partitions().items():
        where = f"{name}-{index}: {p}"
        assert p.isr, where
        assert set(p.isr) <= set(p.replicas), where
        assert set(p.adding) <= set(p.replicas), where
        assert set(p.removing) <= set(p.replicas), where
        assert not set(p.adding) & set(p.removing), where
        if p.leader != NO_LEADER:
            assert p.leader in p.replicas, where
            assert p.leader in p.isr, where
            assert p.leader in live, where
    # Every request is answered; the requester then deletes a refused one.
    for kv in (await c.store.get_prefix(KEYS.admin)).items:
        key = kv.key
        parts = KEYS.relative(key)
        if parts[:1] != ["admin"]:
            continue
        if parts[1] == "shutdown":
            assert ShutdownRequest.decode(kv.value).done, key
            continue
        assert b'"error":{' in kv.value, f"unanswered {key}"
        await c.store.delete(key)


def _check_history(c: Cluster) -> None:
    last: dict[str, PartitionRecord] = {}
    for ev in c.store._history:
        parts = KEYS.relative(ev.key)
        if parts[:1] != ["partitions"]:
            continue
        if ev.value is None:
            last.pop(ev.key, None)
            continue
        new = PartitionRecord.decode(ev.value)
        old = last.get(ev.key)
        last[ev.key] = new
        if old is None:
            continue
        assert new.partition_epoch > old.partition_epoch, ev.key
        assert new.leader_epoch >= old.leader_epoch, ev.key
        if new.leader != old.leader:
            assert new.leader_epoch > old.leader_epoch, ev.key
        assert new.controller_epoch >= old.controller_epoch, ev.key


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    brokers=st.sets(node, min_size=1, max_size=4),
    actions=st.lists(action, max_size=30),
)
async def test_random_histories_keep_the_invariants(
    brokers: set[int], actions: list[tuple[Any, ...]]
) -> None:
    c = Cluster()
    for b in sorted(brokers):
        await c.join(b)
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            await c.start(tg, 0)
            for i, name in enumerate(TOPICS):
                rf = min(i + 1, len(brokers))
                await _step(c, tg, ("create", name, 2 + i, rf))
            await _check_state(c)
            for act in actions:
                await _step(c, tg, act)
                await _check_state(c)
            tg.cancel_scope.cancel()
    _check_history(c)
