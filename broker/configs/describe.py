"""What DescribeConfigs reports of a topic or broker: each config's value, where
it comes from and the lower-precedence values it hides (Kafka's synonyms).

Sources (DescribeConfigs v1+ ``ConfigSource``): DYNAMIC_TOPIC_CONFIG (1) a topic's
override, DYNAMIC_BROKER_CONFIG (2) a broker's own dynamic value,
DYNAMIC_DEFAULT_BROKER_CONFIG (3) the cluster-wide dynamic default,
STATIC_BROKER_CONFIG (4) ``--set`` or the config file, DEFAULT_CONFIG (5) built in.
A topic config's synonyms below the topic level carry the broker's name of the key
(``log.retention.ms`` for ``retention.ms``), as Kafka's do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from broker.configs.dynamic import DynamicConfigs
from broker.configs.keys import (
    BROKER_NAME_OF,
    DEFAULT_SCOPE,
    TOPIC_DEFAULT_KEYS,
    is_sensitive,
)
from storage.config import DEFAULTS, LIST_KEYS

DYNAMIC_TOPIC: Final = 1
DYNAMIC_BROKER: Final = 2
DYNAMIC_DEFAULT: Final = 3
STATIC_BROKER: Final = 4
DEFAULT: Final = 5

# ConfigType (v3+): BOOLEAN 1, STRING 2, INT 3, SHORT 4, LONG 5, DOUBLE 6, LIST 7
_INT_KEYS: Final = frozenset(
    {
        "segment.bytes",
        "max.message.bytes",
        "index.interval.bytes",
        "segment.index.bytes",
        "min.insync.replicas",
    }
)


@dataclass(frozen=True, slots=True)
class Synonym:
    name: str
    value: str | None
    source: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    """One config as DescribeConfigs reports it."""

    name: str
    value: str | None
    source: int
    read_only: bool
    sensitive: bool
    synonyms: tuple[Synonym, ...]
    config_type: int
    documentation: str | None = None

    @property
    def is_default(self) -> bool:
        return self.source == DEFAULT


def config_type(topic_key: str, value: str) -> int:
    """Kafka's ConfigType of a config (by its topic name where it has one)."""
    default = DEFAULTS.get(topic_key, value)
    if topic_key in LIST_KEYS:
        return 7
    if default in ("true", "false"):
        return 1
    if topic_key in _INT_KEYS:
        return 3
    if default.lstrip("-").isdigit():
        return 5
    if topic_key == "min.cleanable.dirty.ratio":
        return 6
    return 2


def _chain(topic_key: str, dynamic: DynamicConfigs, scope: str) -> list[Synonym]:
    """The broker-level values of a topic config, highest precedence first."""
    name = BROKER_NAME_OF.get(topic_key, topic_key)
    out = []
    if topic_key in BROKER_NAME_OF:
        if scope != DEFAULT_SCOPE:
            own = dynamic.layer(scope)
            if name in own:
                out.append(Synonym(name, own[name], DYNAMIC_BROKER))
        cluster_default = dynamic.layer(DEFAULT_SCOPE)
        if name in cluster_default:
            out.append(Synonym(name, cluster_default[name], DYNAMIC_DEFAULT))
    if topic_key in dynamic.static:
        out.append(Synonym(name, dynamic.static[topic_key], STATIC_BROKER))
    if topic_key in DEFAULTS:
        out.append(Synonym(name, DEFAULTS[topic_key], DEFAULT))
    return out


def topic_entries(overrides: Mapping[str, str], dynamic: DynamicConfigs) -> list[Entry]:
    """Every config of a topic with these overrides, by name."""
    out = []
    for key in sorted(DEFAULTS):
        chain = _chain(key, dynamic, dynamic.own_scope)
        if key in overrides:
            chain.insert(0, Synonym(key, overrides[key], DYNAMIC_TOPIC))
        out.append(
            Entry(
                name=key,
                value=chain[0].value,
                source=chain[0].source,
                read_only=False,
                sensitive=False,
                synonyms=tuple(chain),
                config_type=config_type(key, chain[0].value or ""),
            )
        )
    return out


def broker_entries(
    scope: str, dynamic: DynamicConfigs, static_settings: Mapping[str, str]
) -> list[Entry]:
    """Every config of a broker (``scope``: its id), or the cluster-wide dynamic
    defaults (``<default>``: only the ones set), by name. ``static_settings``: the
    read-only broker settings and their values."""
    out = []
    for name in sorted(TOPIC_DEFAULT_KEYS):
        topic_key = TOPIC_DEFAULT_KEYS[name]
        chain = _chain(topic_key, dynamic, scope)
        if scope == DEFAULT_SCOPE:
            chain = [s for s in chain if s.source == DYNAMIC_DEFAULT]
            if not chain:
                continue
        out.append(
            Entry(
                name=name,
                value=chain[0].value,
                source=chain[0].source,
                read_only=False,
                sensitive=is_sensitive(name),
                synonyms=tuple(chain),
                config_type=config_type(topic_key, chain[0].value or ""),
                documentation=f"The default of the topic config {topic_key}; "
                "dynamic (per broker or cluster-wide).",
            )
        )
    if scope != DEFAULT_SCOPE:
        for name, value in sorted(static_settings.items()):
            sensitive = is_sensitive(name)
            shown = None if sensitive else value
            out.append(
                Entry(
                    name=name,
                    value=shown,
                    source=STATIC_BROKER,
                    read_only=True,
                    sensitive=sensitive,
                    synonyms=(Synonym(name, shown, STATIC_BROKER),),
                    config_type=config_type(name, value),
                    documentation="A static broker setting (--set, the config "
                    "file or a flag); read-only.",
                )
            )
    return sorted(out, key=lambda e: e.name)
