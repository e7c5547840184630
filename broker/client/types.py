"""Plain values the CLI's Kafka client returns: clusters, topics, records, groups.

They are independent of wire versions (the client fills them from whichever version it
negotiated) and convert to JSON-ready dicts for ``--format json``. Also here:
:class:`RequestChannel`, the part of a connection that authentication uses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, TypeVar

R = TypeVar("R")


class RequestChannel(Protocol):
    """A negotiated connection to one broker, as SASL authentication uses it.

    :class:`broker.client.connection.Connection` is one; authentication needs only
    these members, so it does not depend on the connection module.
    """

    @property
    def address(self) -> str:
        """``host:port`` of the broker, for error messages."""
        ...

    def supports(self, api_key: int) -> bool:
        """Whether both sides speak some version of ``api_key``."""
        ...

    def request(
        self, request: object, response_type: type[R], *, version: int | None = None
    ) -> R:
        """Send ``request`` and return its decoded response (of ``response_type``)."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokerInfo:
    """A broker as Metadata describes it."""

    node_id: int
    host: str
    port: int
    rack: str | None = None

    @property
    def address(self) -> str:
        """``host:port``."""
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True, kw_only=True)
class PartitionInfo:
    """One partition of a topic as Metadata describes it."""

    partition: int
    leader: int
    leader_epoch: int = -1
    replicas: tuple[int, ...] = ()
    isr: tuple[int, ...] = ()
    offline_replicas: tuple[int, ...] = ()
    error_code: int = 0

    @property
    def online(self) -> bool:
        """Whether the partition has a leader and no error."""
        return self.leader >= 0 and self.error_code == 0


@dataclass(frozen=True, slots=True, kw_only=True)
class TopicInfo:
    """A topic as Metadata describes it."""

    name: str
    topic_id: bytes = b"\x00" * 16
    internal: bool = False
    partitions: tuple[PartitionInfo, ...] = ()
    error_code: int = 0

    @property
    def topic_id_hex(self) -> str | None:
        """The topic ID as a dashed UUID string, or None for the all-zero ID."""
        if not any(self.topic_id):
            return None
        h = self.topic_id.hex()
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterInfo:
    """What one Metadata request says about the cluster."""

    cluster_id: str | None
    controller_id: int
    brokers: tuple[BrokerInfo, ...]
    topics: tuple[TopicInfo, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ProducerRecord:
    """A record to produce; ``partition`` None lets the partitioner choose."""

    key: bytes | None = None
    value: bytes | None = None
    headers: tuple[tuple[str, bytes | None], ...] = ()
    partition: int | None = None
    timestamp: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ProduceResult:
    """Where a produced record landed (offset -1 when acks=0)."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsumedRecord:
    """One record read back from a partition."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class PartitionFetch:
    """The result of fetching one partition once."""

    partition: int
    error_code: int
    high_watermark: int
    log_start_offset: int
    records: tuple[ConsumedRecord, ...] = ()
    next_offset: int = -1


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigEntry:
    """One configuration value of a topic or broker."""

    name: str
    value: str | None
    source: str
    read_only: bool = False
    sensitive: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupListing:
    """A consumer group as ListGroups shows it."""

    group_id: str
    protocol_type: str
    state: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupMember:
    """A member of a group, with its assignment decoded when it uses the consumer protocol."""

    member_id: str
    client_id: str
    client_host: str
    group_instance_id: str | None = None
    assignment: tuple[tuple[str, tuple[int, ...]], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupDescription:
    """A consumer group as DescribeGroups shows it."""

    group_id: str
    state: str
    protocol_type: str
    protocol: str
    members: tuple[GroupMember, ...] = field(default_factory=tuple)
    error_code: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class TransactionListing:
    """A transactional id as ListTransactions shows it, with its coordinator."""

    transactional_id: str
    producer_id: int
    state: str
    coordinator: int = -1


@dataclass(frozen=True, slots=True, kw_only=True)
class TransactionDescription:
    """A transactional id as DescribeTransactions shows it (``start_ms`` -1: no
    transaction begun); ``partitions`` are those of the current transaction."""

    transactional_id: str
    coordinator: int
    state: str
    producer_id: int
    producer_epoch: int
    timeout_ms: int
    start_ms: int
    partitions: tuple[tuple[str, int], ...] = ()
