"""An in-memory cluster for unit tests of the broker's side of cluster mode.

:class:`FakeCluster` implements :class:`broker.cluster.requests.ClusterRequests`
over a real :class:`~broker.cluster.cache.MetadataCache`: it plays the controller by
applying each admin request's outcome to the cache as watched events would (no
etcd). Tests also write partition states and brokers directly, as a controller
would after a failover.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import anyio

from broker.cluster.cache import MetadataCache
from broker.cluster.keys import Keys
from broker.cluster.model import (
    BrokerInfo,
    ControllerInfo,
    CreatePartitionsRequest,
    CreateTopicRequest,
    Endpoint,
    PartitionRecord,
    RequestError,
    TopicRecord,
    encode,
    encode_configs,
)
from broker.cluster.store import Event
from broker.config import BrokerConfig, ClusterSettings, resolve
from broker.context import BrokerContext
from broker.net.dispatch import Dispatcher, load_handlers
from broker.net.request import Deferred, RequestContext
from broker.server import open_context
from protocol.codec import EncodedResponse, decode_response, encode_response
from protocol.error_codes import ErrorCode
from protocol.headers import RequestHeader

LISTENER = "PLAINTEXT"


def endpoint(node_id: int) -> Endpoint:
    return Endpoint(name=LISTENER, host=f"broker-{node_id}", port=9000 + node_id)


class FakeCluster:
    """The cluster as one broker's cache sees it, with a controller in-process."""

    def __init__(self, node_id: int, brokers: Sequence[int] = (0,)) -> None:
        self.keys = Keys("/test")
        self.cache = MetadataCache(self.keys, node_id, "test-cluster")
        self.revision = 0
        self.requests: list[object] = []
        for b in brokers:
            self.add_broker(b)
        self._put(self.keys.controller, ControllerInfo(node_id=brokers[0]))

    # -- what a controller (or a broker's session) writes -------------------------

    def _put(self, key: str, value: object) -> None:
        self.revision += 1
        self.cache.apply(
            [
                Event(
                    key=key,
                    value=encode(value),
                    create_revision=self.revision,
                    mod_revision=self.revision,
                )
            ]
        )

    def _delete(self, key: str) -> None:
        self.revision += 1
        self.cache.apply(
            [
                Event(
                    key=key,
                    value=None,
                    create_revision=0,
                    mod_revision=self.revision,
                )
            ]
        )

    def add_broker(self, node_id: int, listener: str = LISTENER) -> None:
        self._put(
            self.keys.broker(node_id),
            BrokerInfo(
                node_id=node_id,
                endpoints=(dataclasses.replace(endpoint(node_id), name=listener),),
                rack=f"rack-{node_id % 2}",
            ),
        )

    def remove_broker(self, node_id: int) -> None:
        self._delete(self.keys.broker(node_id))

    def set_partition(self, topic: str, index: int, record: PartitionRecord) -> None:
        self._put(self.keys.partition(topic, index), record)

    def move_leader(self, topic: str, index: int, leader: int) -> PartitionRecord:
        """A new leader at the next epoch (what a controller's failover writes)."""
        p = self.cache.partition(topic, index)
        assert p is not None
        moved = dataclasses.replace(
            p,
            leader=leader,
            leader_epoch=p.leader_epoch + 1,
            partition_epoch=p.partition_epoch + 1,
        )
        self.set_partition(topic, index, moved)
        return moved

    def add_topic(
        self,
        name: str,
        assignment: Sequence[Sequence[int]],
        *,
        topic_id: uuid.UUID | None = None,
        configs: dict[str, str] | None = None,
        internal: bool = False,
    ) -> TopicRecord:
        """Partition keys first, the topic record last (as the controller writes)."""
        for i, replicas in enumerate(assignment):
            self.set_partition(
                name,
                i,
                PartitionRecord(
                    replicas=tuple(replicas),
                    leader=replicas[0],
                    leader_epoch=0,
                    isr=tuple(replicas),
                ),
            )
        record = TopicRecord(
            name=name,
            topic_id=topic_id or uuid.uuid4(),
            partitions=len(assignment),
            configs=configs or {},
            internal=internal,
        )
        self._put(self.keys.topic(name), record)
        return record

    def remove_topic(self, name: str) -> None:
        t = self.cache.topic(name)
        assert t is not None
        for i in range(t.partitions):
            self._delete(self.keys.partition(name, i))
        self._delete(self.keys.topic(name))

    # -- ClusterRequests --------------------------------------------------------------

    def _live(self) -> list[int]:
        return [b.node_id for b in self.cache.brokers()]

    async def create_topics(
        self, requests: Sequence[CreateTopicRequest]
    ) -> list[RequestError | None]:
        out: list[RequestError | None] = []
        for r in requests:
            self.requests.append(r)
            if self.cache.topic(r.name) is not None:
                out.append(
                    RequestError(
                        code=ErrorCode.TOPIC_ALREADY_EXISTS, message=f"{r.name} exists"
                    )
                )
                continue
            live = self._live()
            rf = 1 if r.replication_factor == -1 else r.replication_factor
            if r.assignment is None and rf > len(live):
                out.append(
                    RequestError(
                        code=ErrorCode.INVALID_REPLICATION_FACTOR,
                        message=f"{rf} > {len(live)} live brokers",
                    )
                )
                continue
            assignment = r.assignment or [
                [live[(i + k) % len(live)] for k in range(rf)]
                for i in range(r.partitions)
            ]
            self.add_topic(
                r.name, assignment, topic_id=r.topic_id, configs=dict(r.configs)
            )
            out.append(None)
        return out

    async def create_partitions(
        self, request: CreatePartitionsRequest
    ) -> RequestError | None:
        self.requests.append(request)
        t = self.cache.topic(request.name)
        if t is None:
            return RequestError(
                code=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, message="unknown topic"
            )
        for i in range(t.partitions, request.count):
            node = self._live()[0]
            self.set_partition(
                request.name,
                i,
                PartitionRecord(
                    replicas=(node,), leader=node, leader_epoch=0, isr=(node,)
                ),
            )
        self._put(
            self.keys.topic(request.name),
            dataclasses.replace(t, partitions=request.count),
        )
        return None

    async def delete_topic(self, name: str) -> RequestError | None:
        self.requests.append(("delete", name))
        if self.cache.topic(name) is None:
            return RequestError(
                code=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, message="unknown topic"
            )
        self.remove_topic(name)
        return None

    async def elect(
        self, topic: str, index: int, *, unclean: bool = False
    ) -> RequestError | None:
        self.requests.append(("elect", topic, index, unclean))
        p = self.cache.partition(topic, index)
        if p is None:
            return RequestError(
                code=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, message="unknown partition"
            )
        if p.leader == p.replicas[0]:
            return RequestError(
                code=ErrorCode.ELECTION_NOT_NEEDED, message="preferred leader leads"
            )
        self.move_leader(topic, index, p.replicas[0])
        return None

    async def reassign(
        self, topic: str, index: int, replicas: Sequence[int]
    ) -> RequestError | None:
        self.requests.append(("reassign", topic, index, tuple(replicas)))
        p = self.cache.partition(topic, index)
        if p is None:
            return RequestError(
                code=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, message="unknown partition"
            )
        target = tuple(replicas)
        self.set_partition(
            topic,
            index,
            dataclasses.replace(
                p,
                replicas=tuple(dict.fromkeys(target + p.replicas)),
                adding=tuple(r for r in target if r not in p.replicas),
                removing=tuple(r for r in p.replicas if r not in target),
                partition_epoch=p.partition_epoch + 1,
            ),
        )
        return None

    async def alter_topic_configs(
        self, name: str, edit: Callable[[Mapping[str, str]], dict[str, str]]
    ) -> dict[str, str] | RequestError:
        record = self.cache.topic(name)
        if record is None:
            return RequestError(code=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, message=name)
        configs = edit(record.configs)
        self._put(self.keys.topic(name), dataclasses.replace(record, configs=configs))
        return configs

    async def put_broker_configs(
        self, scope: str, edit: Callable[[Mapping[str, str]], dict[str, str]]
    ) -> dict[str, str] | RequestError:
        values = edit(self.cache.broker_configs(scope))
        self.revision += 1
        self.cache.apply(
            [
                Event(
                    key=self.keys.broker_config(scope),
                    value=encode_configs(values) if values else None,
                    create_revision=self.revision,
                    mod_revision=self.revision,
                )
            ]
        )
        return values

    async def alter_isr(
        self, topic: str, index: int, isr: Sequence[int], expected: PartitionRecord
    ) -> PartitionRecord | None:
        self.requests.append(("alter_isr", topic, index, tuple(isr)))
        p = self.cache.partition(topic, index)
        if (
            p is None
            or p.leader != self.cache.node_id
            or p.leader_epoch != expected.leader_epoch
            or p.partition_epoch != expected.partition_epoch
        ):
            return None
        new = dataclasses.replace(
            p, isr=tuple(isr), partition_epoch=p.partition_epoch + 1
        )
        self.set_partition(topic, index, new)
        return new


# -- a broker context in cluster mode over the fake -------------------------------

NODE = 1


def cluster_config(tmp_path: Path, node_id: int = NODE) -> BrokerConfig:
    config = resolve(flags={"data_dir": str(tmp_path / "data")}, sets={})
    return dataclasses.replace(
        config,
        node_id=node_id,
        cluster=ClusterSettings(
            endpoints=(("127.0.0.1", 2379),), prefix="/test", request_timeout_ms=3000
        ),
    )


@asynccontextmanager
async def running(
    config: BrokerConfig, cluster: FakeCluster, *, groups: bool = True
) -> AsyncIterator[BrokerContext]:
    """A broker context in cluster mode with its group commit and replica manager
    running, and its group service (``groups``; without it no offsets partition is
    ever loaded)."""
    load_handlers()
    async with open_context(config, cluster=cluster) as ctx:
        assert ctx.replicas is not None
        async with anyio.create_task_group() as tg:
            tg.start_soon(ctx.durability.run)
            if groups:
                tg.start_soon(ctx.groups.run)
            await tg.start(ctx.replicas.run)
            try:
                yield ctx
            finally:
                tg.cancel_scope.cancel()


async def settled(ctx: BrokerContext, cluster: FakeCluster) -> None:
    """Wait (bounded) until the replica manager has acted on every change so far."""
    assert ctx.replicas is not None
    with anyio.fail_after(5):
        await ctx.replicas.caught_up(cluster.cache.version)


async def groups_loaded(ctx: BrokerContext, group_id: str) -> None:
    """Wait (bounded) until this broker has loaded the group's offsets partition
    (its group APIs no longer answer COORDINATOR_LOAD_IN_PROGRESS)."""
    for _ in range(500):
        if ctx.groups.refusal(group_id) != ErrorCode.COORDINATOR_LOAD_IN_PROGRESS:
            return
        await anyio.sleep(0.01)
    raise AssertionError(f"the offsets of group {group_id} were not loaded in 5 s")


def rctx(ctx: BrokerContext, api_key: int, version: int) -> RequestContext:
    header = RequestHeader(
        request_api_key=api_key,
        request_api_version=version,
        correlation_id=1,
        client_id="t",
    )
    return RequestContext(
        broker=ctx, header=header, listener=LISTENER, peer="test", received_at=0.0
    )


async def call(
    ctx: BrokerContext, api_key: int, version: int, request: object
) -> object:
    """Dispatch one request; await it when it is deferred. An answer encoded once
    (a cached Metadata) is decoded as a client would."""
    context = rctx(ctx, api_key, version)
    resp = Dispatcher()(context, request)
    if isinstance(resp, Deferred):
        return await resp.run()
    if isinstance(resp, EncodedResponse):
        frame = b"".join(encode_response(context.header, resp))
        return decode_response(api_key, version, frame[4:])[1]
    return resp
