"""The replica manager's fetcher planning without etcd: one fetcher per leader
this broker follows, re-planned as the cache changes (the in-memory fake)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from broker.replication.fetch_round import TopicPartition
from tests.cluster.cluster_fake import (
    NODE,
    FakeCluster,
    cluster_config,
    running,
    settled,
)

T0 = TopicPartition("t", 0)
T1 = TopicPartition("t", 1)


@pytest.mark.anyio
async def test_partitions_are_fetched_from_their_leader_as_the_cache_says(
    tmp_path: Path,
) -> None:
    """A partition this broker follows is fetched from its leader at the leader's
    epoch; a moved leader takes it to another fetcher; one this broker leads, or no
    longer hosts, is not fetched; a leader without partitions has no fetcher."""
    cluster = FakeCluster(NODE, brokers=(NODE,))
    config = cluster_config(tmp_path)
    for node in (2, 3):  # at the endpoint of the listener named like ours
        cluster.add_broker(node, listener=config.listeners[0].name)
    async with running(config, cluster) as ctx:
        assert ctx.replicas is not None
        pool = ctx.replicas.fetchers
        cluster.add_topic("t", [[2, NODE], [NODE, 2]])
        await settled(ctx, cluster)
        assert pool.fetching(T0) == 2
        assert pool.fetching(T1) is None  # led here
        assert pool._running[2].address == ("broker-2", 9002)

        cluster.move_leader("t", 0, 3)
        await settled(ctx, cluster)
        assert pool.fetching(T0) == 3
        assert 2 not in pool._running
        progress = pool._running[3].fetcher.progress(T0)
        assert progress is not None
        assert progress.leader_epoch == 1

        rec = cluster.cache.partition("t", 0)
        assert rec is not None
        cluster.set_partition("t", 0, dataclasses.replace(rec, replicas=(3,)))
        await settled(ctx, cluster)
        assert pool.fetching(T0) is None
        assert pool._running == {}
