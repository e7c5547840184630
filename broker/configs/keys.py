"""The broker configs Kafka clients may read and change, by their Kafka names.

Kafka's broker-level names of the topic defaults (``log.retention.ms`` is the default
of a topic's ``retention.ms``, KIP-226) are the dynamic broker configs: set on one
broker (``BROKER`` resource named by its id) or cluster-wide (the resource named
``""``), they change the default of every topic that does not override the key,
live. The other broker settings are static (``--set``, the config file) and
DescribeConfigs reports them read-only.

Precedence of a topic config, highest first (Kafka's synonyms order): the topic's
own override, the dynamic per-broker value, the dynamic cluster-wide default, the
static ``--set`` topic default, the built-in default.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from storage.config import LIST_KEYS as TOPIC_LIST_KEYS
from storage.config import validate as validate_topic_config
from storage.errors import InvalidConfig

# broker name -> the topic config it is the default of
TOPIC_DEFAULT_KEYS: Final[Mapping[str, str]] = {
    "log.segment.bytes": "segment.bytes",
    "log.roll.ms": "segment.ms",
    "log.roll.jitter.ms": "segment.jitter.ms",
    "log.retention.ms": "retention.ms",
    "log.retention.bytes": "retention.bytes",
    "message.max.bytes": "max.message.bytes",
    "log.index.interval.bytes": "index.interval.bytes",
    "log.index.size.max.bytes": "segment.index.bytes",
    "log.flush.interval.ms": "flush.ms",
    "log.flush.interval.messages": "flush.messages",
    "write.caching": "write.caching",
    "log.cleanup.policy": "cleanup.policy",
    "log.message.timestamp.type": "message.timestamp.type",
    "log.message.timestamp.difference.max.ms": "message.timestamp.difference.max.ms",
    "log.message.timestamp.before.max.ms": "message.timestamp.before.max.ms",
    "log.message.timestamp.after.max.ms": "message.timestamp.after.max.ms",
    "compression.type": "compression.type",
    "min.insync.replicas": "min.insync.replicas",
    "unclean.leader.election.enable": "unclean.leader.election.enable",
    "log.cleaner.delete.retention.ms": "delete.retention.ms",
    "log.segment.delete.delay.ms": "file.delete.delay.ms",
    "log.cleaner.min.compaction.lag.ms": "min.compaction.lag.ms",
    "log.cleaner.max.compaction.lag.ms": "max.compaction.lag.ms",
    "log.cleaner.min.cleanable.ratio": "min.cleanable.dirty.ratio",
    "log.preallocate": "preallocate",
    "log.message.downconversion.enable": "message.downconversion.enable",
}
# topic config -> its broker name (the synonym DescribeConfigs reports)
BROKER_NAME_OF: Final[Mapping[str, str]] = {
    topic: broker for broker, topic in TOPIC_DEFAULT_KEYS.items()
}
BROKER_LIST_KEYS: Final = frozenset(
    k for k, topic in TOPIC_DEFAULT_KEYS.items() if topic in TOPIC_LIST_KEYS
)
# Substrings that mark a value as a secret (DescribeConfigs ``is_sensitive``).
_SENSITIVE: Final = ("password", "secret", "token", "sasl.jaas")

DEFAULT_SCOPE: Final = "<default>"  # Kafka's name of the cluster-wide default


def is_sensitive(name: str) -> bool:
    """Whether a broker config holds a secret (its value is never shown)."""
    return any(part in name for part in _SENSITIVE)


def validate_broker_config(name: str, value: str) -> None:
    """Check one dynamic broker config.

    Raises:
        InvalidConfig: not a dynamic broker config, or a bad value (the message
            says which, as Kafka's does).
    """
    topic_key = TOPIC_DEFAULT_KEYS.get(name)
    if topic_key is None:
        hint = BROKER_NAME_OF.get(name)
        more = f" (the broker default of this topic config is {hint})" if hint else ""
        raise InvalidConfig(f"Cannot update these configs dynamically: {name}{more}")
    try:
        validate_topic_config(topic_key, value)
    except InvalidConfig as e:
        raise InvalidConfig(
            f"Invalid value {value} for configuration {name}: {e}"
        ) from e


def topic_defaults(
    static: Mapping[str, str],
    cluster_default: Mapping[str, str],
    own: Mapping[str, str],
) -> dict[str, str]:
    """The topic defaults a broker applies: its static ``--set`` topic defaults,
    overridden by the dynamic cluster-wide ones, overridden by its own."""
    out = dict(static)
    for layer in (cluster_default, own):
        for name, value in layer.items():
            topic_key = TOPIC_DEFAULT_KEYS.get(name)
            if topic_key is not None:
                out[topic_key] = value
    return out
