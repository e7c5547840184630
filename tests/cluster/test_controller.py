"""The controller over the in-memory store: the offsets topic, admin requests and
their refusals, leadership as brokers come and go, controlled shutdown,
elections, reassignment, and fencing of a stale controller."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence

import anyio
import pytest
from structlog.testing import capture_logs

from broker.cluster.controller import BATCH, CHUNK, NotController
from broker.cluster.fake import MemoryStore
from broker.cluster.model import (
    NO_LEADER,
    CreatePartitionsRequest,
    CreateTopicRequest,
    DeleteTopicRequest,
    ElectRequest,
    PartitionRecord,
    ReassignRequest,
    RequestError,
    ShutdownRequest,
    encode,
)
from broker.cluster.store import Compare, Op, Put, StoreUnavailable
from broker.cluster.view import OFFSETS_TOPIC
from protocol.error_codes import ErrorCode
from tests.cluster.controller_harness import KEYS, Cluster, running

pytestmark = pytest.mark.anyio


async def _cluster(*nodes: int, racks: dict[int, str] | None = None) -> Cluster:
    c = Cluster()
    for n in nodes:
        await c.join(n, (racks or {}).get(n))
    return c


async def _create(c: Cluster, req: CreateTopicRequest) -> RequestError | None:
    """Write a create request and let the controller act: its error, or None when
    the topic was written and the request deleted."""
    await c.store.put(KEYS.create(req.name), encode(req))
    await c.settle()
    raw = c.value(KEYS.create(req.name))
    if raw is None:
        return None
    err = CreateTopicRequest.decode(raw).error
    assert err is not None, "request neither served nor refused"
    return err


async def test_offsets_topic_waits_for_its_replication_factor_in_live_brokers() -> None:
    c = await _cluster(0, 1)
    async with running(c):
        # two live brokers, offsets.topic.replication.factor 3: not yet
        assert c.topic(OFFSETS_TOPIC) is None
        await c.join(2)
        await c.settle()
        topic = c.topic(OFFSETS_TOPIC)
        assert topic is not None
        assert topic.internal
        assert topic.partitions == 4
        for i in range(4):
            p = c.partition(OFFSETS_TOPIC, i)
            assert sorted(p.replicas) == [0, 1, 2]
            assert p.leader == p.replicas[0]
            assert p.isr == p.replicas
            assert p.controller_epoch == c.epoch


async def test_offsets_topic_asked_for_early_gets_the_live_brokers() -> None:
    """A group needed a coordinator before three brokers were live: the broker's
    request creates the topic with the offsets settings, capped at the live ones."""
    c = await _cluster(0, 1)
    async with running(c):
        req = CreateTopicRequest(name=OFFSETS_TOPIC, partitions=-1)
        assert await _create(c, req) is None
        topic = c.topic(OFFSETS_TOPIC)
        assert topic is not None
        assert topic.internal
        assert topic.partitions == 4
        for i in range(4):
            p = c.partition(OFFSETS_TOPIC, i)
            assert sorted(p.replicas) == [0, 1]
            assert p.isr == p.replicas


async def test_create_topic_writes_partitions_then_topic_and_deletes_request() -> None:
    c = await _cluster(0, 1, 2)
    tid = uuid.uuid4()
    async with running(c):
        err = await _create(
            c,
            CreateTopicRequest(
                name="orders",
                partitions=6,
                replication_factor=3,
                configs={"retention.ms": "1000"},
                topic_id=tid,
            ),
        )
        assert err is None
        topic = c.topic("orders")
        assert topic is not None
        assert (topic.topic_id, topic.partitions, dict(topic.configs)) == (
            tid,
            6,
            {"retention.ms": "1000"},
        )
        assert not topic.internal
        # The topic record is written after (at a later revision than) its partitions.
        topic_rev = c.store._kv[KEYS.topic("orders")].mod_revision
        leaders = []
        for i in range(6):
            p = c.partition("orders", i)
            assert sorted(p.replicas) == [0, 1, 2]
            assert (p.leader, p.leader_epoch, p.isr) == (p.replicas[0], 0, p.replicas)
            assert c.store._kv[KEYS.partition("orders", i)].mod_revision < topic_rev
            leaders.append(p.leader)
        assert sorted(leaders) == [0, 0, 1, 1, 2, 2]


async def test_default_replication_factor_and_manual_assignment() -> None:
    c = await _cluster(0, 1, 2)
    async with running(c):
        assert await _create(c, CreateTopicRequest(name="a", partitions=2)) is None
        assert all(len(c.partition("a", i).replicas) == 1 for i in range(2))
        req = CreateTopicRequest(name="m", partitions=-1, assignment=((2, 0), (1, 2)))
        assert await _create(c, req) is None
        assert c.partition("m", 0).replicas == (2, 0)
        assert c.partition("m", 0).leader == 2
        assert c.partition("m", 1).replicas == (1, 2)


@pytest.mark.parametrize(
    ("req", "code"),
    [
        (CreateTopicRequest(name="t", partitions=1, replication_factor=4), 38),
        (CreateTopicRequest(name="t", partitions=1, replication_factor=0), 38),
        (CreateTopicRequest(name="t", partitions=0), 37),
        (CreateTopicRequest(name="t", partitions=-1, assignment=((0, 0),)), 39),
        (CreateTopicRequest(name="t", partitions=-1, assignment=((0, 7),)), 39),
        (CreateTopicRequest(name="bad*name", partitions=1), 17),
    ],
)
async def test_create_refusals_carry_kafka_codes(
    req: CreateTopicRequest, code: int
) -> None:
    c = await _cluster(0, 1, 2)
    async with running(c):
        err = await _create(c, req)
        assert err is not None
        assert err.code == code
        assert c.topic(req.name) is None
        assert not any(t == req.name for t, _ in c.partitions())


async def test_create_existing_topic_is_refused() -> None:
    c = await _cluster(0)
    async with running(c):
        assert await _create(c, CreateTopicRequest(name="t", partitions=1)) is None
        err = await _create(c, CreateTopicRequest(name="t", partitions=3))
        assert err is not None
        assert err.code == ErrorCode.TOPIC_ALREADY_EXISTS
        assert c.must_topic("t").partitions == 1


async def test_big_topic_is_written_in_chunks_within_etcds_txn_limit() -> None:
    c = await _cluster(0, 1)
    c.store.max_txn_ops = CHUNK + 1  # tighter than etcd: a chunk plus the guard
    async with running(c):
        assert await _create(c, CreateTopicRequest(name="big", partitions=250)) is None
        assert c.must_topic("big").partitions == 250
        assert len([k for k in c.partitions() if k[0] == "big"]) == 250


async def test_pending_requests_are_served_when_a_controller_starts() -> None:
    c = await _cluster(0, 1)
    await c.store.put(
        KEYS.create("early"), encode(CreateTopicRequest(name="early", partitions=2))
    )
    async with running(c):
        assert c.topic("early") is not None
        assert c.value(KEYS.create("early")) is None


async def test_leader_moves_when_its_broker_is_lost_and_returns_with_it() -> None:
    c = await _cluster(0, 1, 2)
    async with running(c):
        req = CreateTopicRequest(name="t", partitions=-1, assignment=((1, 2),))
        assert await _create(c, req) is None
        req = CreateTopicRequest(name="one", partitions=-1, assignment=((1,),))
        assert await _create(c, req) is None
        with capture_logs() as logs:
            c.leave(1)
            await c.settle()
        p0 = c.partition("t", 0)
        assert (p0.leader, p0.leader_epoch, p0.isr) == (2, 1, (2,))
        p1 = c.partition("one", 0)
        # RF 1: offline, the last ISR kept so the broker can come back.
        assert (p1.leader, p1.leader_epoch, p1.isr) == (NO_LEADER, 1, (1,))
        events = [(e["event"], e.get("topic"), e.get("partition")) for e in logs]
        assert ("broker_lost", None, None) in events
        assert ("leader_changed", "t", 0) in events
        assert ("partition_offline", "one", 0) in events
        changed = next(
            e
            for e in logs
            if e["event"] == "leader_changed"
            and (e["topic"], e["partition"]) == ("t", 0)
        )
        assert (changed["leader"], changed["leader_epoch"]) == (2, 1)
        await c.join(1)
        await c.settle()
        p1 = c.partition("one", 0)
        assert (p1.leader, p1.leader_epoch, p1.isr) == (1, 2, (1,))
        # Partition 0 keeps its leader; broker 1 rejoins the ISR by replication.
        assert c.partition("t", 0).leader == 2


async def test_a_lost_follower_leaves_the_isr() -> None:
    c = await _cluster(0, 1, 2)
    async with running(c):
        req = CreateTopicRequest(name="t", partitions=-1, assignment=((0, 1, 2),))
        assert await _create(c, req) is None
        c.leave(2)
        await c.settle()
        p = c.partition("t", 0)
        assert (p.leader, p.leader_epoch, p.isr, p.partition_epoch) == (0, 0, (0, 1), 1)


async def test_unclean_topic_config_elects_an_out_of_sync_replica() -> None:
    c = await _cluster(0, 1)
    async with running(c):
        req = CreateTopicRequest(
            name="u",
            partitions=-1,
            assignment=((0, 1),),
            configs={"unclean.leader.election.enable": "true"},
        )
        assert await _create(c, req) is None
        await c.set_isr("u", 0, (0,))  # 1 fell behind
        c.leave(0)
        await c.settle()
        p = c.partition("u", 0)
        assert (p.leader, p.isr) == (1, (1,))


async def test_grow_partitions_continues_the_placement() -> None:
    c = await _cluster(0, 1, 2)
    async with running(c):
        assert (
            await _create(
                c, CreateTopicRequest(name="g", partitions=3, replication_factor=2)
            )
            is None
        )
        await c.store.put(
            KEYS.grow("g"), encode(CreatePartitionsRequest(name="g", count=6))
        )
        await c.settle()
        assert c.value(KEYS.grow("g")) is None
        assert c.must_topic("g").partitions == 6
        leaders = [c.partition("g", i).leader for i in range(6)]
        assert sorted(leaders) == [0, 0, 1, 1, 2, 2]
        assert all(len(c.partition("g", i).replicas) == 2 for i in range(6))


@pytest.mark.parametrize(
    ("name", "count", "assignment", "code"),
    [
        ("g", 3, None, ErrorCode.INVALID_PARTITIONS),
        ("g", 2, None, ErrorCode.INVALID_PARTITIONS),
        ("nope", 5, None, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION),
        ("g", 5, ((0, 1),), ErrorCode.INVALID_REPLICA_ASSIGNMENT),
        ("g", 4, ((0,),), ErrorCode.INVALID_REPLICA_ASSIGNMENT),
    ],
)
async def test_grow_refusals(
    name: str, count: int, assignment: tuple[tuple[int, ...], ...] | None, code: int
) -> None:
    c = await _cluster(0, 1, 2)
    async with running(c):
        await _create(
            c, CreateTopicRequest(name="g", partitions=3, replication_factor=2)
        )
        req = CreatePartitionsRequest(name=name, count=count, assignment=assignment)
        await c.store.put(KEYS.grow(name), encode(req))
        await c.settle()
        raw = c.value(KEYS.grow(name))
        assert raw is not None
        err = CreatePartitionsRequest.decode(raw).error
        assert err is not None
        assert err.code == code
        assert c.must_topic("g").partitions == 3


async def test_delete_topic_removes_its_keys() -> None:
    c = await _cluster(0)
    async with running(c):
        await _create(c, CreateTopicRequest(name="d", partitions=3))
        await c.store.put(KEYS.delete("d"), b"")
        await c.settle()
        assert c.topic("d") is None
        assert not any(t == "d" for t, _ in c.partitions())
        assert c.value(KEYS.delete("d")) is None
        await c.store.put(KEYS.delete("d"), b"")
        await c.settle()
        raw = c.value(KEYS.delete("d"))
        assert raw is not None
        err = DeleteTopicRequest.decode(raw).error
        assert err is not None
        assert err.code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION


async def _elect(
    c: Cluster, topic: str, index: int, *, unclean: bool = False
) -> RequestError | None:
    await c.store.put(KEYS.elect(topic, index), encode(ElectRequest(unclean=unclean)))
    await c.settle()
    raw = c.value(KEYS.elect(topic, index))
    return None if raw is None else ElectRequest.decode(raw).error


async def test_preferred_election() -> None:
    c = await _cluster(0, 1)
    async with running(c):
        await _create(
            c, CreateTopicRequest(name="e", partitions=-1, assignment=((0, 1),))
        )
        err = await _elect(c, "e", 0)
        assert err is not None
        assert err.code == ErrorCode.ELECTION_NOT_NEEDED
        c.leave(0)
        await c.settle()
        assert c.partition("e", 0).leader == 1
        err = await _elect(c, "e", 0)
        assert err is not None
        assert err.code == ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE
        await c.store.delete(KEYS.elect("e", 0))
        await c.join(0)
        await c.settle()
        err = await _elect(c, "e", 0)  # 0 is back but not in sync yet
        assert err is not None
        assert err.code == ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE
        await c.store.delete(KEYS.elect("e", 0))
        await c.set_isr("e", 0, (1, 0))
        assert await _elect(c, "e", 0) is None
        p = c.partition("e", 0)
        assert (p.leader, p.leader_epoch) == (0, 2)
        err = await _elect(c, "nope", 0)
        assert err is not None
        assert err.code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION


async def test_unclean_election() -> None:
    c = await _cluster(0, 1)
    async with running(c):
        await _create(
            c, CreateTopicRequest(name="e", partitions=-1, assignment=((0, 1),))
        )
        err = await _elect(c, "e", 0, unclean=True)
        assert err is not None
        assert err.code == ErrorCode.ELECTION_NOT_NEEDED
        await c.store.delete(KEYS.elect("e", 0))
        await c.set_isr("e", 0, (0,))
        c.leave(0)
        await c.settle()
        assert c.partition("e", 0).leader == NO_LEADER
        assert await _elect(c, "e", 0, unclean=True) is None
        p = c.partition("e", 0)
        assert (p.leader, p.isr, p.leader_epoch) == (1, (1,), 2)


async def _reassign(
    c: Cluster, topic: str, index: int, target: tuple[int, ...]
) -> RequestError | None:
    await c.store.put(
        KEYS.reassign(topic, index), encode(ReassignRequest(replicas=target))
    )
    await c.settle()
    raw = c.value(KEYS.reassign(topic, index))
    return None if raw is None else ReassignRequest.decode(raw).error


async def test_reassignment_completes_when_targets_join_the_isr() -> None:
    c = await _cluster(0, 1, 2, 3)
    async with running(c):
        await _create(
            c, CreateTopicRequest(name="r", partitions=-1, assignment=((0, 1),))
        )
        assert await _reassign(c, "r", 0, (2, 3)) is None
        p = c.partition("r", 0)
        assert (p.replicas, p.adding, p.removing, p.leader) == (
            (2, 3, 0, 1),
            (2, 3),
            (0, 1),
            0,
        )
        await c.set_isr("r", 0, (0, 1, 2))
        await c.settle()
        assert c.partition("r", 0).adding == (2, 3)  # 3 not in sync yet
        await c.set_isr("r", 0, (0, 1, 2, 3))
        await c.settle()
        p = c.partition("r", 0)
        assert (p.replicas, p.adding, p.removing, p.isr) == ((2, 3), (), (), (2, 3))
        assert (p.leader, p.leader_epoch) == (2, 1)


async def test_reassignment_cancel_and_refusals() -> None:
    c = await _cluster(0, 1, 2)
    async with running(c):
        await _create(
            c, CreateTopicRequest(name="r", partitions=-1, assignment=((0, 1),))
        )
        err = await _reassign(c, "r", 0, ())
        assert err is not None
        assert err.code == ErrorCode.NO_REASSIGNMENT_IN_PROGRESS
        await c.store.delete(KEYS.reassign("r", 0))
        for target in ((0, 0), (0, 9)):
            err = await _reassign(c, "r", 0, target)
            assert err is not None
            assert err.code == ErrorCode.INVALID_REPLICA_ASSIGNMENT
            await c.store.delete(KEYS.reassign("r", 0))
        assert await _reassign(c, "r", 0, (1, 2)) is None
        p = c.partition("r", 0)
        assert (p.replicas, p.adding, p.removing) == ((1, 2, 0), (2,), (0,))
        assert await _reassign(c, "r", 0, ()) is None
        p = c.partition("r", 0)
        # Back to the original replicas (in the merged order, as KRaft does).
        assert (p.replicas, p.adding, p.removing, p.isr, p.leader) == (
            (1, 0),
            (),
            (),
            (0, 1),
            0,
        )


async def test_reassignment_to_in_sync_replicas_completes_at_once() -> None:
    c = await _cluster(0, 1, 2)
    async with running(c):
        await _create(
            c, CreateTopicRequest(name="r", partitions=-1, assignment=((0, 1, 2),))
        )
        assert await _reassign(c, "r", 0, (2, 1)) is None
        p = c.partition("r", 0)
        assert (p.replicas, p.adding, p.removing, p.isr) == ((2, 1), (), (), (1, 2))
        assert (p.leader, p.leader_epoch) == (2, 1)


async def test_controlled_shutdown_moves_leadership_away() -> None:
    c = await _cluster(0, 1, 2)
    async with running(c):
        req = CreateTopicRequest(
            name="s", partitions=-1, assignment=((1, 2), (1, 0), (2, 1), (0, 2))
        )
        await _create(c, req)
        c.leave(0)  # s-1 keeps only broker 1 in its ISR
        await c.settle()
        await c.join(0)
        await c.settle()
        await c.store.put(KEYS.shutdown(1), encode(ShutdownRequest(node_id=1)))
        await c.settle()
        raw = c.value(KEYS.shutdown(1))
        assert raw is not None
        done = ShutdownRequest.decode(raw)
        assert done.done
        assert done.remaining == 1  # s-1 has no other replica
        p0, p1, p2 = (c.partition("s", i) for i in range(3))
        assert (p0.leader, p0.isr, p0.leader_epoch) == (2, (2,), 1)
        assert (p1.leader, p1.isr) == (1, (1,))
        assert (p2.leader, p2.isr) == (2, (2,))
        # A broker shutting down is not elected leader elsewhere.
        await c.set_isr("s", 3, (0, 2))
        c.leave(0)
        await c.settle()
        assert c.partition("s", 3).leader == 2
        c.leave(1)
        await c.settle()
        assert c.partition("s", 1).leader == NO_LEADER
        assert c.value(KEYS.shutdown(1)) is None  # forgotten once it left


async def test_a_stale_controller_cannot_write() -> None:
    c = await _cluster(0, 1)
    async with anyio.create_task_group() as tg:
        with anyio.fail_after(10):
            old = await c.start(tg, 0)
            await c.start(tg, 1)  # a new election: a new epoch
            await c.settle()
            assert len(c.outcome) == 1
            assert isinstance(c.outcome[0], NotController)
            before = c.store.revision
            with pytest.raises(NotController):
                await old._write([], [Put(KEYS.topic("x"), b"{}")])
            assert c.store.revision == before
            # The new controller carries on from etcd's state.
            assert (
                await _create(c, CreateTopicRequest(name="after", partitions=1)) is None
            )
            p = c.partition("after", 0)
            assert p.controller_epoch == c.epoch
            assert p.controller_epoch > old.epoch
            tg.cancel_scope.cancel()


async def test_names_colliding_on_dot_and_underscore_are_refused() -> None:
    c = await _cluster(0)
    async with running(c):
        assert await _create(c, CreateTopicRequest(name="a.b", partitions=1)) is None
        err = await _create(c, CreateTopicRequest(name="a_b", partitions=1))
        assert err is not None
        assert err.code == ErrorCode.INVALID_TOPIC_EXCEPTION
        assert "a.b" in err.message


async def test_a_new_controller_reconciles_what_changed_while_there_was_none() -> None:
    c = await _cluster(0, 1, 2)
    async with running(c):
        await _create(
            c, CreateTopicRequest(name="r", partitions=-1, assignment=((0, 1),))
        )
        await _create(
            c, CreateTopicRequest(name="o", partitions=-1, assignment=((0, 1),))
        )
        assert await _reassign(c, "r", 0, (1, 2)) is None
    # No controller: a follower catches up, a leader's broker dies.
    await c.set_isr("r", 0, (0, 1, 2))
    c.leave(0)
    async with running(c, 1):
        r = c.partition("r", 0)
        assert (r.replicas, r.adding, r.removing, r.isr, r.leader) == (
            (1, 2),
            (),
            (),
            (1, 2),
            1,
        )
        o = c.partition("o", 0)
        assert (o.leader, o.leader_epoch, o.isr, o.controller_epoch) == (
            1,
            1,
            (1,),
            c.epoch,
        )


class _RacingStore(MemoryStore):
    """A leader changes the ISR of ``key`` just before the controller's first
    write of it lands."""

    def __init__(self, key: str, isr: tuple[int, ...]) -> None:
        super().__init__()
        self.race_key = key
        self.race_isr = isr
        self.raced = False

    async def txn(
        self, compares: Sequence[Compare], ops: Sequence[Op]
    ) -> tuple[bool, int]:
        if not self.raced and any(
            isinstance(op, Put) and op.key == self.race_key for op in ops
        ):
            kv = self._kv.get(self.race_key)
            if kv is not None:
                self.raced = True
                rec = PartitionRecord.decode(kv.value)
                rec = dataclasses.replace(
                    rec, isr=self.race_isr, partition_epoch=rec.partition_epoch + 1
                )
                await self.put(self.race_key, encode(rec))
        return await super().txn(compares, ops)


async def test_a_failed_compare_rereads_and_decides_again() -> None:
    c = Cluster(store=_RacingStore(KEYS.partition("t", 0), (0, 1)))
    for n in (0, 1, 2):
        await c.join(n)
    async with running(c):
        req = CreateTopicRequest(name="t", partitions=-1, assignment=((0, 1, 2),))
        assert await _create(c, req) is None
        assert isinstance(c.store, _RacingStore)
        c.store.raced = False  # race the next write of t-0, not its creation
        c.leave(0)
        await c.settle()
        assert c.store.raced
        p = c.partition("t", 0)
        # Decided from the ISR the leader wrote meanwhile: 2 had left it.
        assert (p.leader, p.isr, p.leader_epoch, p.partition_epoch) == (1, (1,), 1, 2)


async def test_an_unreachable_store_ends_the_run() -> None:
    c = await _cluster(0)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            controller = await c.start(tg, 0)
            c.store.unavailable = True
            with pytest.raises(StoreUnavailable):
                await controller.run()
            tg.cancel_scope.cancel()


async def test_a_lost_broker_is_handled_in_batched_writes() -> None:
    c = await _cluster(0, 1)
    async with running(c):
        req = CreateTopicRequest(name="big", partitions=120, replication_factor=2)
        assert await _create(c, req) is None
        before = c.store.writes
        c.leave(0)
        await c.settle()
        changed = 124  # every partition, the offsets topic's 4 included
        assert c.store.writes - before <= 1 + -(-changed // BATCH)  # + the expiry
        assert all(p.leader == 1 and p.isr == (1,) for p in c.partitions().values())
