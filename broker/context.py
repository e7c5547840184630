"""The composition root: every broker-wide service, typed, built once by the server.

``BrokerContext`` is built by :func:`broker.server.serve` (or
:func:`broker.server.open_context` in tests) in dependency order, each service from
those built before it:

1. ``metrics`` and ``runtime`` (first: the admin API serves them while starting);
2. ``security`` (before storage: what it refuses a person must fix);
3. ``disk`` and ``topics`` (storage opened and recovered); in cluster mode then
   ``coordination`` (registered in etcd once the logs are loaded, as Kafka
   registers in ZooKeeper after its log manager starts) and ``cluster`` (its cache);
4. ``durability`` and ``append_gate``;
5. ``producers``, then ``groups`` (both read their state from the data dir), then
   ``transactions`` (the transaction coordinator);
6. ``snapshots`` (uses all of the above) and ``scheduler`` (uses ``snapshots``);
7. in cluster mode, ``replicas`` (the replica manager: local logs made to match the
   cluster's cache; ``cluster`` is then that cache).

The context is then handed to the admin API and the Kafka listeners, and passed to
handlers through :class:`broker.net.request.RequestContext`. It is frozen: a service
is a field of a concrete type, never looked up by id or narrowed at run time. What
changes while the broker runs (readiness, the bound listeners, the admin address)
lives in :class:`Runtime`. The tasks that drive the services (group commit, groups,
listeners, snapshots, background jobs) belong to the server's task tree
(:mod:`broker.server`), not to the context.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from broker.cluster.service import ClusterService
from broker.cluster.view import ClusterView
from broker.config import BrokerConfig
from broker.configs.dynamic import DynamicConfigs
from broker.disk.guard import DiskGuard
from broker.durability.acks import Durability
from broker.fetch.sessions import FetchSessionCache
from broker.groups.service import GroupService
from broker.metrics import Metrics
from broker.producers.service import ProducerService
from broker.replication.manager import ReplicaManager
from broker.security.service import SecurityService
from broker.snapshots.gate import AppendGate
from broker.snapshots.scheduler import SnapshotScheduler
from broker.snapshots.service import SnapshotService
from broker.topics.service import TopicService
from broker.transactions.coordinator import TransactionCoordinator


@dataclass(frozen=True, slots=True, kw_only=True)
class BoundListener:
    """A listener after binding: the actual port and what clients are told."""

    name: str
    host: str
    port: int
    advertised_host: str
    advertised_port: int

    def as_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "host": self.host,
            "port": self.port,
            "advertised_host": self.advertised_host,
            "advertised_port": self.advertised_port,
        }


@dataclass(slots=True, kw_only=True, eq=False)
class Runtime:
    """What changes while the broker runs; created first (the admin API serves it
    while starting)."""

    ready: bool = False
    shutting_down: bool = False
    listeners: dict[str, BoundListener] = field(default_factory=dict)
    admin_address: tuple[str, int] | None = None


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class BrokerContext:
    """Process-wide services shared by connections, handlers and background jobs."""

    config: BrokerConfig
    metrics: Metrics
    runtime: Runtime
    cluster: ClusterView  # the brokers, the controller, group coordinators
    coordination: ClusterService | None  # etcd membership; None: a single node
    disk: DiskGuard
    topics: TopicService  # owns the LogManager
    configs: DynamicConfigs  # dynamic broker configs (AlterConfigs on BROKER)
    durability: Durability  # group commit, partition waiters, acks=all
    append_gate: AppendGate
    producers: ProducerService
    groups: GroupService
    transactions: TransactionCoordinator  # transactional ids (KIP-98)
    security: SecurityService  # always built; may enforce nothing
    snapshots: SnapshotService
    scheduler: SnapshotScheduler | None  # None: no topic is scheduled
    replicas: ReplicaManager | None = None  # None: a single node
    # incremental fetch sessions (KIP-227), sized by the broker config
    fetch_sessions: FetchSessionCache = field(default_factory=FetchSessionCache)
