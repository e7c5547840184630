"""A controller over the in-memory store, with brokers as leases: what the
controller unit tests drive. ``settle()`` returns once the controller has acted on
every change (it is blocked on its watch)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
import anyio.abc

from broker.cluster.controller import Controller, ControllerSettings, NotController
from broker.cluster.fake import MemoryStore
from broker.cluster.keys import Keys
from broker.cluster.model import (
    BrokerInfo,
    ControllerInfo,
    Endpoint,
    PartitionRecord,
    TopicRecord,
    encode,
)
from broker.cluster.store import Compare, Put

KEYS = Keys("/c")


@dataclass
class Cluster:
    store: MemoryStore = field(default_factory=MemoryStore)
    settings: ControllerSettings = field(
        default_factory=lambda: ControllerSettings(offsets_partitions=4)
    )
    leases: dict[int, int] = field(default_factory=dict)
    controller: Controller | None = None
    outcome: list[BaseException] = field(default_factory=list)

    async def join(self, node_id: int, rack: str | None = None) -> None:
        lease = await self.store.grant_lease(9)
        info = BrokerInfo(
            node_id=node_id,
            endpoints=(
                Endpoint(name="PLAINTEXT", host="127.0.0.1", port=9000 + node_id),
            ),
            rack=rack,
        )
        ok, _ = await self.store.txn(
            [Compare(KEYS.broker(node_id), absent=True)],
            [Put(KEYS.broker(node_id), encode(info), lease)],
        )
        assert ok
        self.leases[node_id] = lease

    def leave(self, node_id: int) -> None:
        """The broker's lease expires (it crashed or left)."""
        self.store.expire(self.leases.pop(node_id))

    def live(self) -> set[int]:
        return set(self.leases)

    async def elect(self, node_id: int) -> int:
        """Put the controller key (replacing any): the new epoch."""
        await self.store.delete(KEYS.controller)
        await self.store.put(KEYS.controller, encode(ControllerInfo(node_id=node_id)))
        kv = await self.store.get(KEYS.controller)
        assert kv is not None
        return kv.create_revision

    async def _run(self, controller: Controller) -> None:
        try:
            await controller.run()
        except NotController as e:
            self.outcome.append(e)

    async def start(self, tg: anyio.abc.TaskGroup, node_id: int = 0) -> Controller:
        epoch = await self.elect(node_id)
        c = Controller(
            self.store, KEYS, node_id=node_id, epoch=epoch, settings=self.settings
        )
        self.controller = c
        tg.start_soon(self._run, c)
        await self.settle()
        return c

    async def settle(self) -> None:
        await anyio.wait_all_tasks_blocked()

    # -- reading --------------------------------------------------------------------

    def value(self, key: str) -> bytes | None:
        kv = self.store._kv.get(key)
        return None if kv is None else kv.value

    def topic(self, name: str) -> TopicRecord | None:
        raw = self.value(KEYS.topic(name))
        return None if raw is None else TopicRecord.decode(raw)

    def must_topic(self, name: str) -> TopicRecord:
        topic = self.topic(name)
        assert topic is not None, f"topic {name} missing"
        return topic

    @property
    def epoch(self) -> int:
        """The running controller's epoch."""
        assert self.controller is not None
        return self.controller.epoch

    def partition(self, name: str, index: int) -> PartitionRecord:
        raw = self.value(KEYS.partition(name, index))
        assert raw is not None, f"{name}-{index} missing"
        return PartitionRecord.decode(raw)

    def partitions(self) -> dict[tuple[str, int], PartitionRecord]:
        out = {}
        for key, kv in self.store._kv.items():
            parts = KEYS.relative(key)
            if len(parts) == 3 and parts[0] == "partitions":
                out[parts[1], int(parts[2])] = PartitionRecord.decode(kv.value)
        return out

    async def set_isr(self, name: str, index: int, isr: tuple[int, ...]) -> None:
        """What a partition leader does when followers catch up or fall behind:
        a compare-and-set of the ISR (not controller-guarded)."""
        key = KEYS.partition(name, index)
        kv = self.store._kv[key]
        rec = PartitionRecord.decode(kv.value)
        new = PartitionRecord(
            replicas=rec.replicas,
            leader=rec.leader,
            leader_epoch=rec.leader_epoch,
            isr=isr,
            partition_epoch=rec.partition_epoch + 1,
            controller_epoch=rec.controller_epoch,
            adding=rec.adding,
            removing=rec.removing,
        )
        ok, _ = await self.store.txn(
            [Compare(key, mod_revision=kv.mod_revision)], [Put(key, encode(new))]
        )
        assert ok


@asynccontextmanager
async def running(cluster: Cluster, node_id: int = 0) -> AsyncIterator[Controller]:
    """The controller running until the block ends (bounded: 20 s)."""
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            c = await cluster.start(tg, node_id)
            yield c
            tg.cancel_scope.cancel()
