"""unclean.leader.election.enable on the controller: off by default, the broker
default when a topic does not set it, and a loud warning when it elects an
out-of-sync replica (in-memory store)."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from broker.cluster.controller import ControllerSettings
from broker.cluster.fake import MemoryStore
from broker.cluster.model import NO_LEADER, CreateTopicRequest, Endpoint, encode
from broker.cluster.service import ClusterService
from broker.config import BrokerConfig, ClusterSettings
from tests.cluster.controller_harness import KEYS, Cluster, running

pytestmark = pytest.mark.anyio

UNCLEAN = "unclean.leader.election.enable"


async def _cluster(settings: ControllerSettings) -> Cluster:
    c = Cluster(settings=settings)
    for n in (0, 1):
        await c.join(n)
    return c


async def _create(
    c: Cluster, name: str, partitions: int, configs: dict[str, str] | None = None
) -> None:
    req = CreateTopicRequest(
        name=name,
        partitions=-1,
        assignment=((0, 1),) * partitions,
        configs=configs or {},
    )
    await c.store.put(KEYS.create(name), encode(req))
    await c.settle()
    assert c.value(KEYS.create(name)) is None
    for i in range(partitions):
        await c.set_isr(name, i, (0,))  # broker 1 fell behind
    await c.settle()


async def test_a_partition_whose_isr_is_down_stays_offline_by_default() -> None:
    """With the defaults, the live out-of-sync replica does not lead."""
    c = await _cluster(ControllerSettings(offsets_partitions=1))
    async with running(c):
        await _create(c, "d", 1)
        with capture_logs() as logs:
            c.leave(0)
            await c.settle()
        p = c.partition("d", 0)
        assert (p.leader, p.isr) == (NO_LEADER, (0,))
        assert not [e for e in logs if e["event"] == "unclean_leader_elected"]


async def test_the_broker_default_elects_an_out_of_sync_replica_with_a_warning() -> (
    None
):
    """unclean.leader.election.enable=true as the broker default elects the live
    replica, bumps the epoch and warns once per topic."""
    c = await _cluster(
        ControllerSettings(offsets_partitions=1, unclean_leader_election=True)
    )
    async with running(c):
        await _create(c, "u", 2)
        epoch = c.partition("u", 0).leader_epoch
        with capture_logs() as logs:
            c.leave(0)
            await c.settle()
        for i in range(2):
            p = c.partition("u", i)
            assert (p.leader, p.isr) == (1, (1,))
            assert p.leader_epoch == epoch + 1
        warnings = [e for e in logs if e["event"] == "unclean_leader_elected"]
        assert [(w["topic"], w["log_level"]) for w in warnings] == [("u", "warning")]
        assert warnings[0]["previous_isr"] == [0]


async def test_a_topic_that_disables_it_overrides_the_broker_default() -> None:
    """A topic's own unclean.leader.election.enable=false beats the broker's
    true."""
    c = await _cluster(
        ControllerSettings(offsets_partitions=1, unclean_leader_election=True)
    )
    async with running(c):
        await _create(c, "k", 1, {UNCLEAN: "false"})
        c.leave(0)
        await c.settle()
        assert c.partition("k", 0).leader == NO_LEADER


@pytest.mark.parametrize("value", ["true", "false"])
async def test_a_broker_started_with_unclean_election_warns(value: str) -> None:
    """--set unclean.leader.election.enable=true is the controller's default and
    a warning at start; false (the default) says nothing."""
    config = BrokerConfig(
        node_id=1,
        topic_defaults={UNCLEAN: value},
        cluster=ClusterSettings(endpoints=(("127.0.0.1", 2379),), prefix="/u"),
    )
    endpoints = [Endpoint(name="default", host="127.0.0.1", port=9092)]
    with capture_logs() as logs:
        service = await ClusterService.connect(
            config, endpoints, None, store=MemoryStore()
        )
    try:
        assert service.unclean_leader_election is (value == "true")
        warned = [e for e in logs if e["event"] == "unclean_leader_election_enabled"]
        assert [w["log_level"] for w in warned] == (
            ["warning"] if value == "true" else []
        )
    finally:
        await service.leave()
