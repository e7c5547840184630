"""What the broker asks of the cluster: the admin requests any broker may make.

:class:`ClusterRequests` is the part of :class:`broker.cluster.service.ClusterService`
that the topic service uses (topic creation, growth and deletion, leader elections
and reassignments) together with the watched cache those requests are answered in.
Each method returns once this broker's cache shows the result, or the controller's
refusal as a :class:`~broker.cluster.model.RequestError` (Kafka's error code and a
message). Unit tests of the broker's side hand the topic service an in-memory
implementation that applies the changes to a cache directly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from broker.cluster.cache import MetadataCache
from broker.cluster.model import (
    CreatePartitionsRequest,
    CreateTopicRequest,
    PartitionRecord,
    RequestError,
)


class ClusterRequests(Protocol):
    """The cluster's admin requests, and the cache that shows their results."""

    @property
    def cache(self) -> MetadataCache: ...

    async def create_topics(
        self, requests: Sequence[CreateTopicRequest]
    ) -> list[RequestError | None]: ...

    async def create_partitions(
        self, request: CreatePartitionsRequest
    ) -> RequestError | None: ...

    async def delete_topic(self, name: str) -> RequestError | None: ...

    async def elect(
        self, topic: str, index: int, *, unclean: bool = False
    ) -> RequestError | None: ...

    async def reassign(
        self, topic: str, index: int, replicas: Sequence[int]
    ) -> RequestError | None: ...

    async def alter_topic_configs(
        self, name: str, edit: Callable[[Mapping[str, str]], dict[str, str]]
    ) -> dict[str, str] | RequestError:
        """Replace a topic's config overrides in its record with ``edit`` of the
        stored ones (compare-and-set; ``edit`` runs again if the record moved on
        and may raise to refuse); the overrides written, once this broker's cache
        shows them."""
        ...

    async def put_broker_configs(
        self, scope: str, edit: Callable[[Mapping[str, str]], dict[str, str]]
    ) -> dict[str, str] | RequestError:
        """Replace the dynamic broker configs of ``scope`` (``<default>`` or a node
        id) with ``edit`` of the stored ones (compare-and-set, as for topics); the
        configs written, once this broker's cache shows them."""
        ...

    async def alter_isr(
        self, topic: str, index: int, isr: Sequence[int], expected: PartitionRecord
    ) -> PartitionRecord | None:
        """The partition leader's ISR change, compare-and-set against ``expected``
        (None: the state moved on)."""
        ...
