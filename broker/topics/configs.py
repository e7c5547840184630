"""One resource of an AlterConfigs or IncrementalAlterConfigs request, end to end.

:class:`ConfigAlterer` checks a resource's changes the way Kafka does (the
resource, each key, each value, then the whole resulting config) and, unless the
request is ``validate_only``, applies them: a TOPIC's overrides through the topic
service (live on its partitions, persisted in its manifest or cluster record), a
BROKER's dynamic configs through :class:`~broker.configs.dynamic.DynamicConfigs`,
a BROKER_LOGGER's levels (IncrementalAlterConfigs only) through
:mod:`broker.configs.loggers`.
Refusals are :class:`~broker.configs.ops.ConfigRefused` with Kafka's code and
message: UNKNOWN_TOPIC_OR_PARTITION, INVALID_CONFIG (unknown key, bad value, a
static broker config, APPEND/SUBTRACT on a non-list key), INVALID_REQUEST (another
resource type, BROKER_LOGGER in AlterConfigs, a bad broker id, duplicate keys, null
values).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

import structlog

from broker.configs.dynamic import ConfigStoreError, DynamicConfigs
from broker.configs.keys import (
    BROKER_LIST_KEYS,
    DEFAULT_SCOPE,
    TOPIC_DEFAULT_KEYS,
    validate_broker_config,
)
from broker.configs.loggers import alter_loggers
from broker.configs.ops import (
    Change,
    ConfigRefused,
    apply_incremental,
    replace_all,
)
from broker.topics.errors import error_code
from broker.topics.service import TopicService
from protocol.error_codes import ErrorCode
from storage.config import DEFAULTS, LIST_KEYS, TopicConfig
from storage.config import validate as validate_topic_config
from storage.errors import InvalidConfig

log = structlog.get_logger("broker.configs")

TOPIC: Final = 2
BROKER: Final = 4
BROKER_LOGGER: Final = 8
RESOURCE_NAMES: Final = {
    TOPIC: "TOPIC",
    BROKER: "BROKER",
    BROKER_LOGGER: "BROKER_LOGGER",
}


class ConfigAlterer:
    """Checks and applies config changes of this broker's resources."""

    def __init__(
        self, topics: TopicService, dynamic: DynamicConfigs, node_id: int
    ) -> None:
        self.topics = topics
        self.dynamic = dynamic
        self.node_id = node_id

    async def alter(
        self,
        resource_type: int,
        name: str,
        changes: Sequence[Change],
        *,
        incremental: bool,
        validate_only: bool,
    ) -> None:
        """Check ``changes`` to one resource and, unless ``validate_only``, apply them.

        Raises:
            ConfigRefused: the change is refused (nothing was changed).
        """
        if resource_type == BROKER_LOGGER and incremental:
            # in memory and this broker's own: nothing to persist or forward
            alter_loggers(name, self.node_id, changes, validate_only=validate_only)
            return
        # one change at a time on this broker: each edits what the last one left
        async with self.dynamic.lock:
            if resource_type == TOPIC:
                await self._alter_topic(name, changes, incremental, validate_only)
                return
            if resource_type == BROKER:
                await self._alter_broker(name, changes, incremental, validate_only)
                return
            kind = RESOURCE_NAMES.get(resource_type, str(resource_type))
            raise ConfigRefused(
                ErrorCode.INVALID_REQUEST,
                "AlterConfigs is only supported for topics and brokers, but resource "
                f"type is {kind}",
            )

    async def _alter_topic(
        self,
        name: str,
        changes: Sequence[Change],
        incremental: bool,
        validate_only: bool,
    ) -> None:
        meta = self.topics.find(name)
        if meta is None:
            raise ConfigRefused(
                ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"Topic {name} does not exist"
            )
        for c in changes:
            if c.name not in DEFAULTS:
                raise ConfigRefused(
                    ErrorCode.INVALID_CONFIG, f"Unknown topic config name: {c.name}"
                )
        defaults = meta.config.defaults

        def edit(current: Mapping[str, str]) -> dict[str, str]:
            if incremental:
                new = apply_incremental(
                    current,
                    changes,
                    is_list=LIST_KEYS.__contains__,
                    default_of=defaults.get,
                )
            else:
                new = replace_all(changes)
            try:
                for key, value in new.items():
                    validate_topic_config(key, value)
                TopicConfig.from_overrides(new, defaults)
            except InvalidConfig as e:
                raise ConfigRefused(ErrorCode.INVALID_CONFIG, str(e)) from e
            return new

        edit(meta.config.overrides)  # refuses here, before anything is written
        if validate_only:
            return
        # in cluster mode ``edit`` runs again on the stored overrides
        error = await self.topics.alter_configs(meta.name, edit)
        if error is not None:
            raise ConfigRefused(error_code(error), str(error))

    def broker_scope(self, name: str) -> str:
        """The scope a BROKER resource names: ``<default>`` for ``""``, else the
        node id (this broker's; in cluster mode any broker's).

        Raises:
            ConfigRefused: not an id this broker may answer for (INVALID_REQUEST).
        """
        if name == "":
            return DEFAULT_SCOPE
        try:
            node = int(name)
        except ValueError:
            raise ConfigRefused(
                ErrorCode.INVALID_REQUEST, f"Broker id must be an integer, not {name!r}"
            ) from None
        if node < 0 or (node != self.node_id and not self.dynamic.cluster):
            raise ConfigRefused(
                ErrorCode.INVALID_REQUEST,
                f"Unexpected broker id, expected {self.node_id} or empty string, "
                f"but received {name}",
            )
        return str(node)

    def broker_default_of(self, scope: str, key: str) -> str | None:
        """What a dynamic broker config is worth at ``scope`` without its own value
        there (the layers below it)."""
        topic_key = TOPIC_DEFAULT_KEYS.get(key)
        if topic_key is None:
            return None
        if scope != DEFAULT_SCOPE:
            below = self.dynamic.layer(DEFAULT_SCOPE)
            if key in below:
                return below[key]
        return self.dynamic.static.get(topic_key, DEFAULTS.get(topic_key))

    async def _alter_broker(
        self,
        name: str,
        changes: Sequence[Change],
        incremental: bool,
        validate_only: bool,
    ) -> None:
        scope = self.broker_scope(name)
        for c in changes:
            if c.name not in TOPIC_DEFAULT_KEYS:  # static or unknown, whatever the op
                try:
                    validate_broker_config(c.name, "")
                except InvalidConfig as e:
                    raise ConfigRefused(ErrorCode.INVALID_CONFIG, str(e)) from e

        def edit(current: Mapping[str, str]) -> dict[str, str]:
            if incremental:
                new = apply_incremental(
                    current,
                    changes,
                    is_list=BROKER_LIST_KEYS.__contains__,
                    default_of=lambda key: self.broker_default_of(scope, key),
                )
            else:
                new = replace_all(changes)
            try:
                for key, value in new.items():
                    validate_broker_config(key, value)
            except InvalidConfig as e:
                raise ConfigRefused(ErrorCode.INVALID_CONFIG, str(e)) from e
            return new

        edit(self.dynamic.layer(scope))  # refuses here, before anything is written
        if validate_only:
            return
        try:
            new = await self.dynamic.update(scope, edit)
        except ConfigStoreError as e:
            raise ConfigRefused(ErrorCode.UNKNOWN_SERVER_ERROR, str(e)) from e
        log.info("broker_configs_altered", scope=scope, configs=new)
