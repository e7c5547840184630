"""Topic configs: Kafka's names, defaults and validation (``TopicConfig``).

Values travel as strings (CreateTopics, DescribeConfigs, topic.json) and are parsed
once into typed fields. ``overrides`` keeps what was set explicitly on the topic, so
DescribeConfigs can tell topic overrides from defaults. Deviations from Kafka's
defaults are deliberate for a dev broker and listed here:

- ``write.caching`` (Redpanda's name) = false: an acks=all produce is fsynced before
  it is acknowledged (group commit makes that cheap). true: acknowledge after write().
- ``flush.ms`` = 1000: how often writes that are not yet durable get fsynced anyway.
- ``cleanup.policy``: ``delete`` (retention by time and size), ``compact`` (the log
  cleaner keeps the latest record of each key, storage/log_cleaner.py; no retention
  by time or size) or both, ``compact,delete``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

from storage.errors import InvalidConfig

_LONG_MAX: Final = 9223372036854775807

# name -> default (as Kafka reports it)
DEFAULTS: Final[Mapping[str, str]] = {
    "segment.bytes": "1073741824",
    "segment.ms": "604800000",
    "retention.ms": "604800000",
    "retention.bytes": "-1",
    "max.message.bytes": "1048588",
    "index.interval.bytes": "4096",
    "segment.index.bytes": "10485760",
    "flush.ms": "1000",
    "flush.messages": str(_LONG_MAX),
    "write.caching": "false",
    "cleanup.policy": "delete",
    "message.timestamp.type": "CreateTime",
    "message.timestamp.difference.max.ms": str(_LONG_MAX),
    "message.timestamp.before.max.ms": str(_LONG_MAX),
    "message.timestamp.after.max.ms": str(_LONG_MAX),
    "compression.type": "producer",
    "min.insync.replicas": "1",
    "unclean.leader.election.enable": "false",
    "delete.retention.ms": "86400000",
    "file.delete.delay.ms": "60000",
    "min.compaction.lag.ms": "0",
    "max.compaction.lag.ms": str(_LONG_MAX),
    "min.cleanable.dirty.ratio": "0.5",
    "segment.jitter.ms": "0",
    "preallocate": "false",
    "message.downconversion.enable": "true",
    "leader.replication.throttled.replicas": "",
    "follower.replication.throttled.replicas": "",
}

_COMPRESSION_TYPES: Final = {
    "producer",
    "uncompressed",
    "gzip",
    "snappy",
    "lz4",
    "zstd",
}


def _int_in(lo: int, hi: int = _LONG_MAX) -> Callable[[str], object]:
    def check(value: str) -> object:
        try:
            number = int(value)
        except ValueError:
            raise ValueError(f"{value!r} is not an integer") from None
        if not lo <= number <= hi:
            raise ValueError(f"{number} outside [{lo}, {hi}]")
        return number

    return check


def _choice(*allowed: str) -> Callable[[str], object]:
    def check(value: str) -> object:
        if value not in allowed:
            raise ValueError(f"{value!r} not one of {', '.join(allowed)}")
        return value

    return check


def _bool(value: str) -> object:
    if value.lower() not in ("true", "false"):
        raise ValueError(f"{value!r} is not true or false")
    return value.lower() == "true"


def _policies(value: str) -> set[str]:
    return {p.strip() for p in value.split(",")}


def _cleanup(value: str) -> object:
    parts = _policies(value)
    if not parts or not parts <= {"delete", "compact"}:
        raise ValueError(f"{value!r} is not delete and/or compact")
    return value


def _throttled(value: str) -> object:
    # Kafka's ThrottledReplicaListValidator: "*" or partition:broker pairs
    if value.strip() in ("", "*"):
        return value
    for part in value.split(","):
        partition, sep, broker = part.strip().partition(":")
        if not sep or not partition.isdigit() or not broker.isdigit():
            raise ValueError(
                f"{value!r} is not '*' or a list of partition:broker pairs"
            )
    return value


def _ratio(value: str) -> object:
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a number") from None
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"{number} outside [0, 1]")
    return number


def _compression(value: str) -> object:
    if value not in _COMPRESSION_TYPES:
        raise ValueError(f"{value!r} is not a compression type")
    return value


_VALIDATORS: Final[Mapping[str, Callable[[str], object]]] = {
    "segment.bytes": _int_in(1, 2**31 - 1),
    "segment.ms": _int_in(1),
    "retention.ms": _int_in(-1),
    "retention.bytes": _int_in(-1),
    "max.message.bytes": _int_in(0, 2**31 - 1),
    "index.interval.bytes": _int_in(0, 2**31 - 1),
    "segment.index.bytes": _int_in(4),
    "flush.ms": _int_in(0),
    "flush.messages": _int_in(1),
    "write.caching": _bool,
    "cleanup.policy": _cleanup,
    "delete.retention.ms": _int_in(0),
    "min.compaction.lag.ms": _int_in(0),
    "max.compaction.lag.ms": _int_in(1),
    "min.cleanable.dirty.ratio": _ratio,
    "message.timestamp.type": _choice("CreateTime", "LogAppendTime"),
    "message.timestamp.difference.max.ms": _int_in(0),
    "message.timestamp.before.max.ms": _int_in(0),
    "message.timestamp.after.max.ms": _int_in(0),
    "compression.type": _compression,
    "min.insync.replicas": _int_in(1),
    "unclean.leader.election.enable": _bool,
    "preallocate": _bool,
    "message.downconversion.enable": _bool,
    "leader.replication.throttled.replicas": _throttled,
    "follower.replication.throttled.replicas": _throttled,
}

# The configs whose type is Kafka's LIST (comma-separated): the ones
# IncrementalAlterConfigs may APPEND to and SUBTRACT from.
LIST_KEYS: Final = frozenset(
    {
        "cleanup.policy",
        "leader.replication.throttled.replicas",
        "follower.replication.throttled.replicas",
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class TopicConfig:
    """A topic's effective configuration, parsed."""

    segment_bytes: int
    segment_ms: int
    retention_ms: int
    retention_bytes: int
    max_message_bytes: int
    index_interval_bytes: int
    flush_ms: int
    flush_messages: int
    write_caching: bool
    cleanup_policy: str
    log_append_time: bool
    # acks=all needs this many in-sync replicas (enforced by cluster leaders only)
    min_insync_replicas: int = 1
    # cleanup.policy contains compact: every produced record needs a key
    compacted: bool = False
    # CreateTime records must lie in [now - before, now + after] (KIP-937; each
    # falls back to message.timestamp.difference.max.ms, as Kafka's LogConfig)
    timestamp_before_max_ms: int = _LONG_MAX
    timestamp_after_max_ms: int = _LONG_MAX
    # whether a produced batch is looked at beyond its header (computed once, so
    # the produce path of a topic that needs nothing more pays one attribute read)
    inspects_records: bool = False
    # log compaction (storage/log_cleaner.py), Kafka's defaults
    delete_retention_ms: int = 86_400_000
    min_compaction_lag_ms: int = 0
    max_compaction_lag_ms: int = _LONG_MAX
    min_cleanable_dirty_ratio: float = 0.5
    overrides: Mapping[str, str] = field(default_factory=dict)
    defaults: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULTS))

    @classmethod
    def from_overrides(
        cls,
        overrides: Mapping[str, str] | None = None,
        defaults: Mapping[str, str] | None = None,
    ) -> TopicConfig:
        """Parse topic overrides on top of (broker) defaults.

        Raises:
            InvalidConfig: an unknown key, or a value of the wrong type or range.
        """
        merged_defaults = dict(DEFAULTS)
        for key, value in (defaults or {}).items():
            validate(key, value)
            merged_defaults[key] = value
        own = dict(overrides or {})
        for key, value in own.items():
            validate(key, value)
        values = {**merged_defaults, **own}

        def integer(key: str) -> int:
            return int(values[key])

        def bound(key: str) -> int:
            # Kafka's LogConfig: an unset (LONG_MAX) bound falls back to
            # message.timestamp.difference.max.ms
            value = integer(key)
            if value == _LONG_MAX:
                return integer("message.timestamp.difference.max.ms")
            return value

        compacted = "compact" in {
            p.strip() for p in values["cleanup.policy"].split(",")
        }
        log_append_time = values["message.timestamp.type"] == "LogAppendTime"
        before = bound("message.timestamp.before.max.ms")
        after = bound("message.timestamp.after.max.ms")
        return cls(
            segment_bytes=integer("segment.bytes"),
            segment_ms=integer("segment.ms"),
            retention_ms=integer("retention.ms"),
            retention_bytes=integer("retention.bytes"),
            max_message_bytes=integer("max.message.bytes"),
            index_interval_bytes=integer("index.interval.bytes"),
            flush_ms=integer("flush.ms"),
            flush_messages=integer("flush.messages"),
            write_caching=values["write.caching"].lower() == "true",
            cleanup_policy=values["cleanup.policy"],
            log_append_time=log_append_time,
            min_insync_replicas=integer("min.insync.replicas"),
            compacted=compacted,
            timestamp_before_max_ms=before,
            timestamp_after_max_ms=after,
            inspects_records=compacted
            or (not log_append_time and (before, after) != (_LONG_MAX, _LONG_MAX)),
            delete_retention_ms=integer("delete.retention.ms"),
            min_compaction_lag_ms=integer("min.compaction.lag.ms"),
            max_compaction_lag_ms=integer("max.compaction.lag.ms"),
            min_cleanable_dirty_ratio=float(values["min.cleanable.dirty.ratio"]),
            overrides=own,
            defaults=merged_defaults,
        )

    @property
    def compact(self) -> bool:
        """Whether the log cleaner compacts this topic (``cleanup.policy``)."""
        return "compact" in _policies(self.cleanup_policy)

    @property
    def delete(self) -> bool:
        """Whether retention by time and size applies (``cleanup.policy``)."""
        return "delete" in _policies(self.cleanup_policy)

    def with_overrides(self, overrides: Mapping[str, str]) -> TopicConfig:
        """A copy with ``overrides`` replacing this topic's overrides (AlterConfigs)."""
        return TopicConfig.from_overrides(overrides, self.defaults)

    def describe(self) -> dict[str, tuple[str, bool]]:
        """Every config as ``name -> (value, is_default)`` (DescribeConfigs)."""
        out = {key: (value, True) for key, value in self.defaults.items()}
        for key, value in self.overrides.items():
            out[key] = (value, False)
        return out


def validate(key: str, value: str) -> None:
    """Check one config; raises :class:`InvalidConfig` naming the problem."""
    if key not in DEFAULTS:
        raise InvalidConfig(f"unknown topic config {key!r}")
    check = _VALIDATORS.get(key)
    if check is None:
        return
    try:
        check(value)
    except ValueError as exc:
        raise InvalidConfig(f"invalid value for {key}: {exc}") from exc


DEFAULT_CONFIG: Final = TopicConfig.from_overrides()
