"""Broker configuration: where each setting comes from and what it means.

Precedence, highest first: command-line flags, ``AILURUS_*`` environment variables
(click reads both), an optional YAML or TOML file (``--config``), then the defaults
below. The file uses the flag names with underscores (``data_dir``, ``kafka_addr``,
``advertise_kafka_addr``, ``admin_addr``, ``node_id``, ``log_level``, ``log_format``)
plus a ``set:`` mapping of Kafka config names, exactly what ``--set key=value`` takes.

``--set`` keys that name a broker setting (``auto.create.topics.enable``,
``num.partitions``, ``connections.max.idle.ms``, ``socket.request.max.bytes``,
``queued.max.request.bytes``, ``max.connections``, ``message.max.bytes``,
``ailurus.partial.frames.max.bytes``, ``log.retention.check.interval.ms``, and the caps ``ailurus.max.partitions``,
``ailurus.max.partitions.per.request``, ``ailurus.max.open.segment.files``,
``ailurus.auto.create.topics.per.request`` (see ``broker.fdlimits``), the fetch
session cache's ``max.incremental.fetch.session.cache.slots`` (1000) and
``min.incremental.fetch.session.eviction.ms`` (120000), and the log cleaner's
``log.cleaner.enable``, ``log.cleaner.backoff.ms`` and
``log.cleaner.io.max.bytes.per.second`` (``broker.topics.cleaner``)) configure the
broker; every other key is a topic default (``retention.ms``, ``segment.bytes``,
``max.message.bytes``, ...) handed to storage for topics that do not override it. The
dynamic broker configs (:mod:`broker.configs`, changed with AlterConfigs) override
these topic defaults live.

``queued.max.request.bytes`` caps, per connection, the bytes of requests received and
not yet answered; ``ailurus.partial.frames.max.bytes`` (default 256 MiB) caps, across
the whole broker, the bytes held in frames still being received (see
``broker.net.frame_budget``: over it, connections in the middle of a large frame pause
reading, except the one closest to completing it).

Snapshots (``broker.snapshots.settings``, ``broker.snapshots.scheduler``): ``--set`` keys
``snapshot.scan.interval.ms``, ``snapshot.settle.ms``, ``snapshot.ingest.bytes.per.sec``
and :data:`SCHEDULE_KEYS` (``snapshot.schedule.*``, ``snapshot.retention.*``). Each also
reads its environment variable, ``AILURUS_`` + the key upper-cased with ``_`` for ``.``
(:func:`env_name`, e.g. ``AILURUS_SNAPSHOT_SCHEDULE_TOPICS``), which ``--set`` beats and
which beats the file's ``set:`` mapping; an empty variable counts as unset.

Cluster mode (``broker.cluster``): ``--cluster etcd://host:port[,host:port]/prefix``
(``AILURUS_CLUSTER``; file key ``cluster``) joins the brokers registered under that
etcd prefix, ``--rack`` (``AILURUS_RACK``; Kafka's ``broker.rack``) places replicas
across racks, and the ``--set`` keys ``broker.session.timeout.ms`` (the session
lease, default 9000), ``default.replication.factor`` (1),
``offsets.topic.num.partitions`` (16), ``offsets.topic.replication.factor`` (3,
capped at the live brokers) and ``ailurus.cluster.request.timeout.ms`` (30000, how
long a broker waits on the controller) configure it (:data:`CLUSTER_KEYS`).

Security (``broker.security``): ``--tls-cert``/``--tls-key``/``--tls-ca``/
``--tls-client-auth`` (file keys ``tls_*``); ``--set`` keys
``listener.security.protocol.map``, ``sasl.enabled.mechanisms``, ``super.users``,
``authorizer.enabled``, ``connection.failed.authentication.delay.ms`` and
``ailurus.login.*`` (see ``broker.security.settings``); ``AILURUS_ADMIN_TOKEN`` (env
only) is the admin API's bearer token, required when the admin API listens beyond
loopback.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final

import yaml

from broker.security.admin_auth import AdminAuthError, check_binding
from broker.security.settings import (
    SECURITY_KEYS,
    SecurityConfigError,
    SecuritySettings,
    parse_settings,
)
from broker.security.tls import CLIENT_AUTH_MODES, TlsSettings
from storage.config import validate as validate_topic_config
from storage.errors import InvalidConfig
from storage.snapshot_meta import CODECS

DEFAULT_KAFKA_ADDR: Final = "127.0.0.1:9092"
DEFAULT_ADMIN_ADDR: Final = "127.0.0.1:9644"
DEFAULT_LISTENER_NAME: Final = "default"


class ConfigError(ValueError):
    """A setting is malformed; the message names it and says what is expected."""


class ScheduleConfigError(ConfigError):
    """A snapshot schedule setting is malformed; the message names it."""


# -- snapshot schedule settings (broker.snapshots.scheduler runs them) ------------------

SCHEDULE_KEYS: Final = (
    "snapshot.schedule.topics",
    "snapshot.schedule.interval",
    "snapshot.schedule.full_every",
    "snapshot.schedule.compression",
    "snapshot.schedule.with_group_offsets",
    "snapshot.schedule.push_url",
    "snapshot.schedule.push_endpoint_url",
    "snapshot.retention.keep_last",
    "snapshot.retention.max_age",
)
_UNITS: Final = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str, key: str = "duration") -> float:
    """``500ms``, ``90s``, ``15m``, ``12h``, ``7d``, ``2w`` (a bare number: seconds)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*", text)
    if m is None:
        raise ScheduleConfigError(f"{key}: {text!r} is not a duration like 30s or 1h")
    return float(m[1]) * _UNITS[m[2] or "s"]


def env_name(key: str) -> str:
    """``snapshot.schedule.topics`` -> ``AILURUS_SNAPSHOT_SCHEDULE_TOPICS``."""
    return "AILURUS_" + key.upper().replace(".", "_")


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduleSettings:
    """The snapshot schedule, resolved and validated."""

    topics: tuple[str, ...] = ()  # glob patterns; empty: the scheduler is off
    interval_s: float = 3600.0
    full_every: int = 24
    compression: str = "none"
    with_group_offsets: bool = False
    push_url: str | None = None
    push_endpoint_url: str | None = None
    keep_last: int | None = None
    max_age_s: float | None = None

    @property
    def enabled(self) -> bool:
        """Whether any topic is scheduled."""
        return bool(self.topics)

    @classmethod
    def from_mapping(cls, values: Mapping[str, str]) -> ScheduleSettings:
        """Settings from :data:`SCHEDULE_KEYS` (other keys and empty values ignored).

        Raises:
            ScheduleConfigError: a value is malformed.
        """
        keys = SCHEDULE_KEYS
        v = {k: values[k].strip() for k in keys if values.get(k, "").strip()}
        topics = tuple(p.strip() for p in v.get(keys[0], "").split(",") if p.strip())
        interval = parse_duration(v.get(keys[1], "1h"), keys[1])
        if interval < 0.05:
            raise ScheduleConfigError(f"{keys[1]} must be at least 50ms")
        compression = v.get(keys[3], "none")
        if compression not in CODECS:
            raise ScheduleConfigError(f"{keys[3]} must be one of {sorted(CODECS)}")
        keep_last = _sched_int(v, keys[7]) if keys[7] in v else None
        if keep_last is not None and keep_last < 1:
            # The newest snapshot is what the next incremental continues.
            raise ScheduleConfigError(f"{keys[7]} must be at least 1")
        with_offsets = v.get(keys[4], "false").lower()
        if with_offsets not in _BOOL_WORDS:
            raise ScheduleConfigError(f"{keys[4]} must be true or false")
        return cls(
            topics=topics,
            interval_s=interval,
            full_every=_sched_int(v, keys[2]) if keys[2] in v else 24,
            compression=compression,
            with_group_offsets=_BOOL_WORDS[with_offsets],
            push_url=v.get(keys[5]),
            push_endpoint_url=v.get(keys[6]),
            keep_last=keep_last,
            max_age_s=parse_duration(v[keys[8]], keys[8]) if keys[8] in v else None,
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ScheduleSettings:
        """Settings from ``AILURUS_SNAPSHOT_SCHEDULE_*`` / ``..._RETENTION_*`` only."""
        env = os.environ if env is None else env
        return cls.from_mapping(
            {k: env[env_name(k)] for k in SCHEDULE_KEYS if env_name(k) in env}
        )

    def to_json(self) -> dict[str, object]:
        """The settings as ``GET /v1/snapshots/schedule`` shows them."""
        return {
            "enabled": self.enabled,
            "topics": list(self.topics),
            "interval_s": self.interval_s,
            "full_every": self.full_every,
            "compression": self.compression,
            "with_group_offsets": self.with_group_offsets,
            "push_url": self.push_url,
            "keep_last": self.keep_last,
            "max_age_s": self.max_age_s,
        }


_BOOL_WORDS: Final = {
    "true": True,
    "1": True,
    "yes": True,
    "on": True,
    "false": False,
    "0": False,
    "no": False,
    "off": False,
}


def _sched_int(values: Mapping[str, str], key: str) -> int:
    try:
        n = int(values[key])
    except ValueError as e:
        raise ScheduleConfigError(f"{key} must be an integer") from e
    if n < 0:
        raise ScheduleConfigError(f"{key} must be >= 0")
    return n


@dataclass(frozen=True, slots=True, kw_only=True)
class Address:
    """One ``[name://]host:port``; port 0 means "any free port"."""

    name: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ListenerConfig:
    """A Kafka listener: where it binds and what it tells clients to connect to."""

    name: str
    bind: Address
    advertised: Address | None = None  # None: the bound address (actual port)


# Broker settings reachable through --set, with their Kafka names and defaults.
_BROKER_KEYS: Final[dict[str, tuple[str, type]]] = {
    "auto.create.topics.enable": ("auto_create_topics", bool),
    "num.partitions": ("default_partitions", int),
    "connections.max.idle.ms": ("connections_max_idle_ms", int),
    "socket.request.max.bytes": ("max_request_size", int),
    "queued.max.request.bytes": ("max_inflight_bytes", int),
    "max.connections": ("max_connections", int),
    "message.max.bytes": ("message_max_bytes", int),
    "ailurus.shutdown.grace.ms": ("shutdown_grace_ms", int),
    # how often closed segments past retention.ms / retention.bytes are deleted
    "log.retention.check.interval.ms": ("log_retention_check_interval_ms", int),
    # broker-wide cap on bytes held in partly received frames (broker.net.frame_budget)
    "ailurus.partial.frames.max.bytes": ("partial_frames_max_bytes", int),
    # free-space floor of the data dir's file system (broker.disk.guard); 0 = off
    "ailurus.disk.min.free.bytes": ("min_free_bytes", int),
    # partition and descriptor caps (broker.fdlimits derives unset ones at start)
    "ailurus.max.partitions": ("max_partitions", int),
    "ailurus.max.partitions.per.request": ("max_partitions_per_request", int),
    "ailurus.max.open.segment.files": ("max_open_segment_files", int),
    "ailurus.auto.create.topics.per.request": ("auto_create_topics_per_request", int),
    # consumer groups (broker.groups.settings.GroupConfig.from_config reads these)
    "group.initial.rebalance.delay.ms": ("initial_rebalance_delay_ms", int),
    "group.min.session.timeout.ms": ("min_session_timeout_ms", int),
    "group.max.session.timeout.ms": ("max_session_timeout_ms", int),
    "offsets.retention.minutes": ("offsets_retention_minutes", int),
    "offset.metadata.max.bytes": ("offset_metadata_max_bytes", int),
    "offsets.retention.check.interval.ms": ("retention_check_interval_ms", int),
    # the largest transaction.timeout.ms InitProducerId accepts (Kafka's default)
    "transaction.max.timeout.ms": ("transaction_max_timeout_ms", int),
    # the transaction coordinator (broker.transactions): its state log's partitions
    # (None: 1 on a single node, 16 in a cluster) and the timeout sweep's period
    "transaction.state.log.num.partitions": ("transaction_log_partitions", int),
    "transaction.abort.timed.out.transaction.cleanup.interval.ms": (
        "transaction_abort_interval_ms",
        int,
    ),
    # idle transactional ids are removed (tombstoned) after this, checked this often
    "transactional.id.expiration.ms": ("transactional_id_expiration_ms", int),
    "transaction.remove.expired.transaction.cleanup.interval.ms": (
        "transaction_remove_expired_interval_ms",
        int,
    ),
    # incremental fetch sessions (broker.fetch.sessions); 0 slots: none kept
    "max.incremental.fetch.session.cache.slots": ("fetch_session_cache_slots", int),
    "min.incremental.fetch.session.eviction.ms": ("fetch_session_eviction_ms", int),
    # the log cleaner (broker.topics.cleaner): compaction of cleanup.policy=compact
    "log.cleaner.enable": ("log_cleaner_enable", bool),
    "log.cleaner.backoff.ms": ("log_cleaner_backoff_ms", int),
    "log.cleaner.io.max.bytes.per.second": ("log_cleaner_io_max_bytes_per_second", int),
    # snapshot watcher (broker.snapshots.settings.SnapshotSettings.from_config)
    "snapshot.scan.interval.ms": ("snapshot_scan_interval_ms", int),
    "snapshot.settle.ms": ("snapshot_settle_ms", int),
    "snapshot.ingest.bytes.per.sec": ("snapshot_ingest_bytes_per_sec", int),
}
# Keys that also read AILURUS_<KEY> from the environment (see env_name).
SNAPSHOT_KEYS: Final = (
    "snapshot.scan.interval.ms",
    "snapshot.settle.ms",
    "snapshot.ingest.bytes.per.sec",
    *SCHEDULE_KEYS,
)


# Cluster settings reachable through --set (ClusterSettings fields); read only in
# cluster mode (--cluster), accepted and unused on a single node.
CLUSTER_KEYS: Final[dict[str, str]] = {
    "broker.session.timeout.ms": "session_timeout_ms",
    "default.replication.factor": "default_replication_factor",
    "offsets.topic.num.partitions": "offsets_partitions",
    "offsets.topic.replication.factor": "offsets_replication_factor",
    "transaction.state.log.replication.factor": "transaction_replication_factor",
    "transaction.state.log.min.isr": "transaction_min_isr",
    "ailurus.cluster.request.timeout.ms": "request_timeout_ms",
    "replica.lag.time.max.ms": "replica_lag_time_max_ms",
}
CLUSTER_SETTING: Final = "--cluster / AILURUS_CLUSTER"
MAX_CLUSTER_NODE_ID: Final = 1 << 23


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterSettings:
    """Cluster mode (``--cluster etcd://host:port[,host:port]/prefix``); absent on a
    single node."""

    endpoints: tuple[tuple[str, int], ...]  # etcd client addresses
    prefix: str  # every key of the cluster lives under it ("/ailurus")
    session_timeout_ms: int = 9_000  # the lease TTL (broker.session.timeout.ms)
    rack: str | None = None  # broker.rack
    default_replication_factor: int = 1  # default.replication.factor
    offsets_partitions: int = 16  # offsets.topic.num.partitions
    offsets_replication_factor: int = 3  # offsets.topic.replication.factor (capped)
    # transaction.state.log.replication.factor (capped at the live brokers)
    transaction_replication_factor: int = 3
    # transaction.state.log.min.isr: the state log's min.insync.replicas (capped
    # at its replication factor)
    transaction_min_isr: int = 2
    request_timeout_ms: int = 30_000  # how long a broker waits on the controller
    replica_lag_time_max_ms: int = 30_000  # a follower behind longer leaves the ISR


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokerConfig:
    """Every setting of one broker process, resolved and validated."""

    data_dir: Path = Path("./data")
    listeners: tuple[ListenerConfig, ...] = (
        ListenerConfig(
            name=DEFAULT_LISTENER_NAME,
            bind=Address(name=DEFAULT_LISTENER_NAME, host="127.0.0.1", port=9092),
        ),
    )
    admin: Address | None = field(
        default_factory=lambda: Address(name="admin", host="127.0.0.1", port=9644)
    )
    node_id: int = 0
    cluster_id: str = "ailurus-dev"
    log_level: str = "info"
    log_format: str = "auto"
    ready_file: Path | None = None
    auto_create_topics: bool = True
    default_partitions: int = 1
    connections_max_idle_ms: int = 600_000
    max_request_size: int = 100 * 1024 * 1024
    max_inflight_bytes: int = 64 * 1024 * 1024
    partial_frames_max_bytes: int = 256 * 1024 * 1024
    max_connections: int = 10_000
    message_max_bytes: int = 1_048_588
    shutdown_grace_ms: int = 5_000
    log_retention_check_interval_ms: int = 300_000  # Kafka's default
    min_free_bytes: int = 64 * 1024 * 1024  # broker.disk.guard.DEFAULT_MIN_FREE_BYTES
    # Partitions of all topics together, and segment descriptors open at once;
    # None: derived from the descriptor limit at start (broker.fdlimits).
    max_partitions: int | None = None
    max_open_segment_files: int | None = None
    # Partitions one CreateTopics/CreatePartitions request may add, and topics one
    # Metadata request may auto-create (the rest: UNKNOWN_TOPIC_OR_PARTITION).
    max_partitions_per_request: int = 5_000
    auto_create_topics_per_request: int = 100
    # consumer groups; None keeps broker.groups' own defaults (delay 0, 7-day offsets)
    initial_rebalance_delay_ms: int | None = None
    min_session_timeout_ms: int | None = None
    max_session_timeout_ms: int | None = None
    offsets_retention_minutes: int | None = None
    offset_metadata_max_bytes: int | None = None
    retention_check_interval_ms: int | None = None
    transaction_max_timeout_ms: int = 900_000
    transaction_log_partitions: int | None = None
    transaction_abort_interval_ms: int = 10_000  # Kafka's default
    transactional_id_expiration_ms: int = 604_800_000  # 7 days, Kafka's default
    transaction_remove_expired_interval_ms: int = 3_600_000  # Kafka's default
    fetch_session_cache_slots: int = 1_000
    fetch_session_eviction_ms: int = 120_000
    # log compaction (broker.topics.cleaner); io cap 0 = unlimited (Kafka's default)
    log_cleaner_enable: bool = True
    log_cleaner_backoff_ms: int = 15_000
    log_cleaner_io_max_bytes_per_second: int = 0
    # snapshots: the watcher's rescan period, settle time, ingest throttle (0: none),
    # and the schedule (broker.snapshots.scheduler)
    snapshot_scan_interval_ms: int = 5_000
    snapshot_settle_ms: int = 2_000
    snapshot_ingest_bytes_per_sec: int = 0
    snapshot_schedule: ScheduleSettings = field(default_factory=ScheduleSettings)
    topic_defaults: Mapping[str, str] = field(default_factory=dict)
    # Security (broker.security): listener protocols, SASL, ACLs; TLS material;
    # the admin API's bearer token (AILURUS_ADMIN_TOKEN).
    security: SecuritySettings = field(default_factory=SecuritySettings)
    tls: TlsSettings | None = None
    admin_token: str | None = None
    # Cluster mode through etcd (broker.cluster); None: a single node, no etcd.
    cluster: ClusterSettings | None = None


def parse_cluster_url(text: str) -> tuple[tuple[tuple[str, int], ...], str]:
    """Parse ``etcd://host:port[,host:port]/prefix``: (endpoints, prefix).

    The prefix defaults to ``/ailurus``; it keeps its leading slash and loses a
    trailing one. IPv6 hosts go in brackets.
    """
    text = text.strip()
    scheme, sep, rest = text.partition("://")
    if not sep or scheme.lower() != "etcd":
        raise ConfigError(
            f"bad {CLUSTER_SETTING} {text!r}: expected etcd://host:port[,host:port]/prefix"
        )
    hosts, slash, path = rest.partition("/")
    endpoints: list[tuple[str, int]] = []
    for part in hosts.split(","):
        m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d+)|([A-Za-z0-9_.-]+):(\d+)", part)
        if m is None:
            raise ConfigError(
                f"bad etcd endpoint {part!r} in {CLUSTER_SETTING}: expected host:port"
            )
        host = m[1] if m[1] is not None else m[3]
        port = int(m[2] if m[2] is not None else m[4])
        if not 0 < port <= 65535:
            raise ConfigError(f"bad etcd port in {part!r} ({CLUSTER_SETTING})")
        endpoints.append((host, port))
    prefix = "/" + path.strip("/") if slash and path.strip("/") else "/ailurus"
    if "//" in prefix or any(c.isspace() for c in prefix):
        raise ConfigError(f"bad prefix {prefix!r} in {CLUSTER_SETTING}")
    return tuple(endpoints), prefix


def _resolve_cluster(
    cfg: BrokerConfig,
    pick: Callable[[str, object], object],
    sets: Mapping[str, str],
) -> BrokerConfig:
    """Cluster mode from --cluster, --rack and the cluster --set keys."""
    url = _opt_str(pick("cluster", None))
    if url is None:
        return cfg
    endpoints, prefix = parse_cluster_url(url)
    values: dict[str, int] = {}
    for key, attr in CLUSTER_KEYS.items():
        if key in sets:
            try:
                values[attr] = int(sets[key])
            except ValueError as e:
                raise ConfigError(f"{key} must be an integer, not {sets[key]!r}") from e
            if values[attr] < 1:
                raise ConfigError(f"{key} must be at least 1")
    settings = ClusterSettings(
        endpoints=endpoints,
        prefix=prefix,
        rack=_opt_str(pick("rack", None)),
        **values,
    )
    if settings.session_timeout_ms < 2_000:
        raise ConfigError(
            "broker.session.timeout.ms must be at least 2000 (etcd's shortest lease)"
        )
    if not 0 <= cfg.node_id < MAX_CLUSTER_NODE_ID:
        # producer ids carry the node id in their high bits (broker.producers)
        raise ConfigError(
            f"--node-id must be between 0 and {MAX_CLUSTER_NODE_ID - 1} in a cluster, "
            f"not {cfg.node_id}"
        )
    return replace(cfg, cluster=settings)


def parse_address(text: str, *, default_name: str) -> Address:
    """Parse ``[name://]host:port`` (IPv6 hosts in brackets)."""
    text = text.strip()
    name = default_name
    if "://" in text:
        name, _, text = text.partition("://")
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise ConfigError(f"bad listener name in {text!r}")
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d+)|([^:\[\]]*):(\d+)", text)
    if m is None:
        raise ConfigError(f"bad address {text!r}: expected [name://]host:port")
    host = m[1] if m[1] is not None else m[3]
    port = int(m[2] if m[2] is not None else m[4])
    if not 0 <= port <= 65535:
        raise ConfigError(f"bad port in {text!r}")
    return Address(name=name, host=host or "0.0.0.0", port=port)  # noqa: S104


def parse_listeners(
    kafka_addr: str, advertise: str | None
) -> tuple[ListenerConfig, ...]:
    """Pair bind addresses with advertised ones, by listener name (else by position)."""
    parts = [p for p in kafka_addr.split(",") if p.strip()]
    if not parts:
        raise ConfigError("--kafka-addr needs at least one address")
    binds = [
        parse_address(p, default_name=DEFAULT_LISTENER_NAME if i == 0 else f"l{i}")
        for i, p in enumerate(parts)
    ]
    names = [b.name for b in binds]
    if len(set(names)) != len(names):
        raise ConfigError(f"duplicate listener names in --kafka-addr: {names}")
    advertised: dict[str, Address] = {}
    if advertise:
        adv_parts = [p for p in advertise.split(",") if p.strip()]
        for i, p in enumerate(adv_parts):
            positional = binds[i].name if i < len(binds) else f"l{i}"
            a = parse_address(p, default_name=positional)
            if a.name not in names:
                raise ConfigError(f"advertised listener {a.name!r} has no --kafka-addr")
            advertised[a.name] = a
    return tuple(
        ListenerConfig(name=b.name, bind=b, advertised=advertised.get(b.name))
        for b in binds
    )


def _parse_bool(key: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _BOOL_WORDS:
        return _BOOL_WORDS[text]
    raise ConfigError(f"{key} must be true or false, not {value!r}")


def parse_set(items: list[str] | tuple[str, ...]) -> dict[str, str]:
    """Parse repeated ``key=value`` items."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, not {item!r}")
        out[key.strip()] = value.strip()
    return out


def load_file(path: Path) -> dict[str, object]:
    """Read a YAML (``.yaml``/``.yml``/other) or TOML (``.toml``) config file."""
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from e
    try:
        data: object
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        else:
            data = yaml.safe_load(text) or {}
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = (
            "" if mark is None else f"line {mark.line + 1}, column {mark.column + 1}: "
        )
        raise ConfigError(f"bad config file {path}: {where}{e.problem}") from e
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"bad config file {path}: {' '.join(str(e).split())}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


_FILE_KEYS: Final = frozenset(
    {
        "data_dir",
        "kafka_addr",
        "advertise_kafka_addr",
        "admin_addr",
        "node_id",
        "cluster_id",
        "cluster",
        "rack",
        "log_level",
        "log_format",
        "ready_file",
        "tls_cert",
        "tls_key",
        "tls_ca",
        "tls_client_auth",
        "set",
    }
)


def resolve(
    *,
    flags: Mapping[str, object],
    sets: Mapping[str, str],
    config_file: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> BrokerConfig:
    """Merge flags/env (already merged by click; None = unset), file and defaults.

    Args:
        flags: values of the ``serve`` options, None where neither flag nor env gave one.
        sets: ``--set`` items (flags/env), which win over the file's ``set`` mapping.
        config_file: the optional YAML/TOML file.
        env: where the :data:`SNAPSHOT_KEYS` variables are read (default os.environ).
    """
    file_values: dict[str, object] = load_file(config_file) if config_file else {}
    unknown = set(file_values) - _FILE_KEYS
    if unknown:
        raise ConfigError(f"unknown keys in config file: {sorted(unknown)}")

    def pick(key: str, default: object) -> object:
        value = flags.get(key)
        if value is not None:
            return value
        return file_values.get(key, default)

    file_sets = file_values.get("set") or {}
    if not isinstance(file_sets, dict):
        raise ConfigError("config file key 'set' must be a mapping")
    merged_sets = {str(k): _stringify(v) for k, v in file_sets.items()}
    env = os.environ if env is None else env
    for key in SNAPSHOT_KEYS:
        if env.get(env_name(key), "").strip():
            merged_sets[key] = env[env_name(key)].strip()
    merged_sets.update(sets)

    cfg = BrokerConfig()
    listeners = parse_listeners(
        str(pick("kafka_addr", DEFAULT_KAFKA_ADDR)),
        _opt_str(pick("advertise_kafka_addr", None)),
    )
    admin_text = str(pick("admin_addr", DEFAULT_ADMIN_ADDR))
    admin = (
        None
        if admin_text.lower() in ("", "none", "off")
        else parse_address(admin_text, default_name="admin")
    )
    log_format = str(pick("log_format", "auto")).lower()
    if log_format not in ("auto", "console", "json"):
        raise ConfigError("--log-format must be auto, console or json")
    log_level = str(pick("log_level", "info")).lower()
    if log_level not in ("debug", "info", "warning", "error", "critical"):
        raise ConfigError("--log-level must be debug, info, warning, error or critical")
    ready = _opt_str(pick("ready_file", None))
    try:
        node_id = int(str(pick("node_id", 0)))
    except ValueError as e:
        raise ConfigError("--node-id must be an integer") from e
    cfg = replace(
        cfg,
        data_dir=Path(str(pick("data_dir", "./data"))),
        listeners=listeners,
        admin=admin,
        node_id=node_id,
        cluster_id=str(pick("cluster_id", cfg.cluster_id)),
        log_level=log_level,
        log_format=log_format,
        ready_file=Path(ready) if ready else None,
    )
    cfg = _resolve_security(cfg, pick, merged_sets)
    cfg = _resolve_cluster(cfg, pick, merged_sets)
    broker_values: dict[str, object] = {}
    topic_defaults: dict[str, str] = {}
    for key, value in merged_sets.items():
        if key in SECURITY_KEYS or key in SCHEDULE_KEYS or key in CLUSTER_KEYS:
            continue
        if key in _BROKER_KEYS:
            attr, kind = _BROKER_KEYS[key]
            if kind is bool:
                broker_values[attr] = _parse_bool(key, value)
            else:
                try:
                    broker_values[attr] = int(value)
                except ValueError as e:
                    raise ConfigError(f"{key} must be an integer, not {value!r}") from e
        else:
            try:
                validate_topic_config(key, value)
            except InvalidConfig as e:
                raise ConfigError(f"--set {key}={value}: {e}") from e
            topic_defaults[key] = value
    if "message_max_bytes" in broker_values:
        topic_defaults.setdefault(
            "max.message.bytes", str(merged_sets["message.max.bytes"])
        )
    cfg = replace(cfg, topic_defaults=topic_defaults)
    cfg = replace(cfg, **broker_values)  # type: ignore[arg-type]
    if cfg.default_partitions < 1:
        raise ConfigError("num.partitions must be at least 1")
    if cfg.transaction_max_timeout_ms < 1:
        raise ConfigError("transaction.max.timeout.ms must be at least 1")
    if (
        cfg.transaction_log_partitions is not None
        and cfg.transaction_log_partitions < 1
    ):
        raise ConfigError("transaction.state.log.num.partitions must be at least 1")
    if cfg.transaction_abort_interval_ms < 1:
        raise ConfigError(
            "transaction.abort.timed.out.transaction.cleanup.interval.ms must be "
            "at least 1"
        )
    if cfg.transactional_id_expiration_ms < 1:
        raise ConfigError("transactional.id.expiration.ms must be at least 1")
    if cfg.transaction_remove_expired_interval_ms < 1:
        raise ConfigError(
            "transaction.remove.expired.transaction.cleanup.interval.ms must be "
            "at least 1"
        )
    if cfg.fetch_session_cache_slots < 0:
        raise ConfigError("max.incremental.fetch.session.cache.slots must be >= 0")
    if cfg.fetch_session_eviction_ms < 0:
        raise ConfigError("min.incremental.fetch.session.eviction.ms must be >= 0")
    if cfg.partial_frames_max_bytes < 1:
        raise ConfigError("ailurus.partial.frames.max.bytes must be at least 1")
    for key in (
        "ailurus.max.partitions",
        "ailurus.max.partitions.per.request",
        "ailurus.max.open.segment.files",
    ):
        value = getattr(cfg, _BROKER_KEYS[key][0])
        if value is not None and value < 1:
            raise ConfigError(f"{key} must be at least 1")
    if cfg.auto_create_topics_per_request < 0:
        raise ConfigError("ailurus.auto.create.topics.per.request must be >= 0")
    if cfg.log_cleaner_backoff_ms < 1:
        raise ConfigError("log.cleaner.backoff.ms must be at least 1")
    if cfg.log_cleaner_io_max_bytes_per_second < 0:
        raise ConfigError("log.cleaner.io.max.bytes.per.second must be >= 0")
    if cfg.snapshot_scan_interval_ms < 1:
        raise ConfigError("snapshot.scan.interval.ms must be at least 1")
    if cfg.log_retention_check_interval_ms < 1:
        raise ConfigError("log.retention.check.interval.ms must be at least 1")
    for key in ("snapshot.settle.ms", "snapshot.ingest.bytes.per.sec"):
        if getattr(cfg, _BROKER_KEYS[key][0]) < 0:
            raise ConfigError(f"{key} must be >= 0")
    schedule = ScheduleSettings.from_mapping(
        {k: v for k, v in merged_sets.items() if k in SCHEDULE_KEYS}
    )
    return replace(cfg, snapshot_schedule=schedule)


def _resolve_security(
    cfg: BrokerConfig,
    pick: Callable[[str, object], object],
    sets: Mapping[str, str],
) -> BrokerConfig:
    """Security settings, TLS material and the admin token, checked together."""
    try:
        security = parse_settings({k: v for k, v in sets.items() if k in SECURITY_KEYS})
    except SecurityConfigError as e:
        raise ConfigError(str(e)) from e
    names = {lc.name for lc in cfg.listeners}
    unknown = set(security.protocol_map) - names
    if unknown:
        raise ConfigError(
            f"listener.security.protocol.map names unknown listeners: {sorted(unknown)}"
        )
    cert, key = _opt_str(pick("tls_cert", None)), _opt_str(pick("tls_key", None))
    ca = _opt_str(pick("tls_ca", None))
    client_auth = str(pick("tls_client_auth", "none")).lower()
    if client_auth not in CLIENT_AUTH_MODES:
        raise ConfigError(f"--tls-client-auth must be one of {CLIENT_AUTH_MODES}")
    tls = None
    if cert or key:
        if not (cert and key):
            raise ConfigError("--tls-cert and --tls-key go together")
        tls = TlsSettings(
            cert_file=Path(cert),
            key_file=Path(key),
            ca_file=Path(ca) if ca else None,
            client_auth=client_auth,
        )
    needs_tls = [
        lc.name
        for lc in cfg.listeners
        if security.protocol_of(lc.name) in ("SSL", "SASL_SSL")
    ]
    if needs_tls and tls is None:
        raise ConfigError(
            f"listeners {needs_tls} use TLS: give --tls-cert and --tls-key"
        )
    # click reads --admin-token / AILURUS_ADMIN_TOKEN; the environment is read
    # here too for callers that resolve without click.
    token = _opt_str(pick("admin_token", None)) or os.environ.get("AILURUS_ADMIN_TOKEN")
    token = token or None
    if cfg.admin is not None:
        try:
            check_binding(cfg.admin.host, token)
        except AdminAuthError as e:
            raise ConfigError(str(e)) from e
    return replace(cfg, security=security, tls=tls, admin_token=token)


def _opt_str(value: object) -> str | None:
    return None if value is None or value == "" else str(value)


def _stringify(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)
