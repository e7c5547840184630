"""``ClusterService``: this broker's membership of a cluster (interface; the etcd
session, the watch, the election and the admin requests land with their tests)."""

from __future__ import annotations

from collections.abc import Sequence

import anyio.abc

from broker.cluster.cache import MetadataCache
from broker.cluster.model import (
    CreatePartitionsRequest,
    CreateTopicRequest,
    Endpoint,
    RequestError,
)
from broker.config import BrokerConfig


class ClusterService:
    """Session, watch, controller election and admin requests of one broker."""

    cache: MetadataCache

    @classmethod
    async def connect(
        cls,
        config: BrokerConfig,
        endpoints: Sequence[Endpoint],
        admin: str | None,
    ) -> ClusterService:
        """Connect to etcd, adopt the cluster id, register this broker under its
        session lease and load the cache.

        Raises:
            StartupError: etcd is unreachable, or the node id is taken.
        """
        raise NotImplementedError

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Keep the session alive, watch the prefix into the cache, campaign for
        controller and run the controller while elected; until cancelled."""
        raise NotImplementedError

    async def create_topics(
        self, requests: Sequence[CreateTopicRequest]
    ) -> list[RequestError | None]:
        """Ask the controller to create topics; each one's error or None, once the
        topic is in this broker's cache."""
        raise NotImplementedError

    async def create_partitions(
        self, request: CreatePartitionsRequest
    ) -> RequestError | None:
        raise NotImplementedError

    async def delete_topic(self, name: str) -> RequestError | None:
        raise NotImplementedError

    async def elect(
        self, topic: str, index: int, *, unclean: bool = False
    ) -> RequestError | None:
        raise NotImplementedError

    async def reassign(
        self, topic: str, index: int, replicas: Sequence[int]
    ) -> RequestError | None:
        raise NotImplementedError

    async def controlled_shutdown(self) -> int:
        """Ask the controller to move the leadership of this broker's partitions
        away; how many it still leads (no other live replica could take them)."""
        raise NotImplementedError

    async def leave(self) -> None:
        """Delete this broker's registration and revoke its lease (at stop)."""
        raise NotImplementedError
