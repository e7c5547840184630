"""The dynamic broker configs (KIP-226): held, persisted and applied live.

Two layers of Kafka broker configs (:mod:`broker.configs.keys`) sit above the static
``--set`` ones: the cluster-wide default (Kafka's ``<default>`` entity) and each
broker's own. Changing either recomputes this broker's topic defaults and hands them
to the log manager, so every partition of a topic that does not override the key
follows at once (retention, segment rolling, message size, timestamps, ...).

Where they are kept is a :class:`ConfigStore`'s business: a single node writes
``<data-dir>/broker-configs.json`` atomically (:class:`FileConfigStore`); in cluster
mode etcd holds ``config/brokers/<default>`` and ``config/brokers/<id>`` and every
broker applies what its watch shows (:mod:`broker.cluster.configs`).

``broker-configs.json``::

    {"version": 1, "brokers": {"<default>": {"log.retention.ms": "3600000"},
                               "0": {"message.max.bytes": "2000000"}}}
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Final, Protocol

import anyio
import structlog

from broker.configs.keys import DEFAULT_SCOPE, topic_defaults, validate_broker_config
from broker.configs.ops import Edit
from storage.errors import InvalidConfig
from storage.fileops import FileOps
from storage.log_manager import LogManager

log = structlog.get_logger("broker.configs")

FILE_NAME: Final = "broker-configs.json"


class ConfigStoreError(Exception):
    """The dynamic configs could not be read or written; the message says why."""


class ConfigStore(Protocol):
    """Where the dynamic broker configs are kept."""

    async def save(self, scope: str, edit: Edit) -> dict[str, str]:
        """Replace one scope's configs (``<default>`` or a node id) with ``edit`` of
        the stored ones; the configs written.

        Raises:
            ConfigStoreError: they could not be written.
            ConfigRefused: ``edit`` refused the change.
        """
        ...


def read_config_file(data_dir: Path) -> dict[str, dict[str, str]]:
    """Every scope's configs as ``broker-configs.json`` has them (none: no file).

    Raises:
        ConfigStoreError: the file is unreadable or malformed.
    """
    path = data_dir / FILE_NAME
    try:
        data = json.loads(path.read_bytes())
        return {
            str(scope): {str(k): str(v) for k, v in dict(values).items()}
            for scope, values in dict(data["brokers"]).items()
        }
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigStoreError(f"unreadable {path}: {e}") from e


class FileConfigStore:
    """A single node's dynamic broker configs, in ``broker-configs.json``."""

    def __init__(
        self,
        data_dir: Path,
        fileops: FileOps,
        scopes: Mapping[str, Mapping[str, str]],
    ) -> None:
        """``scopes``: what the file holds now (:func:`read_config_file`)."""
        self.path = data_dir / FILE_NAME
        self._fileops = fileops
        self._scopes = {k: dict(v) for k, v in scopes.items()}

    async def save(self, scope: str, edit: Edit) -> dict[str, str]:
        values = edit(self._scopes.get(scope, {}))
        scopes = {k: dict(v) for k, v in self._scopes.items()}
        if values:
            scopes[scope] = dict(values)
        else:
            scopes.pop(scope, None)
        body = json.dumps({"version": 1, "brokers": scopes}, indent=1, sort_keys=True)
        path = os.fspath(self.path)
        try:
            await anyio.to_thread.run_sync(
                self._fileops.write_file_atomic, path, body.encode()
            )
        except OSError as e:
            raise ConfigStoreError(f"cannot write {self.path}: {e}") from e
        self._scopes = scopes
        return values


class DynamicConfigs:
    """This broker's dynamic configs and the topic defaults they make."""

    def __init__(
        self,
        node_id: int,
        static_topic_defaults: Mapping[str, str],
        logs: LogManager,
        store: ConfigStore,
        *,
        cluster: bool = False,
    ) -> None:
        self.node_id = node_id
        self.static = dict(static_topic_defaults)
        self.cluster = cluster  # other brokers' scopes may be written here
        self._logs = logs
        self._store = store
        self._scopes: dict[str, dict[str, str]] = {}
        # held by whoever reads and changes configs (AlterConfigs), so that
        # concurrent changes on this broker do not undo each other
        self.lock = anyio.Lock()

    @property
    def own_scope(self) -> str:
        return str(self.node_id)

    def layer(self, scope: str) -> dict[str, str]:
        """One scope's configs (``<default>`` or a node id), Kafka broker names."""
        return dict(self._scopes.get(scope, {}))

    def scopes(self) -> dict[str, dict[str, str]]:
        """Every scope known here and its configs."""
        return {k: dict(v) for k, v in self._scopes.items() if v}

    def topic_defaults(self) -> dict[str, str]:
        """The topic defaults this broker applies (static, then dynamic layers)."""
        return topic_defaults(
            self.static, self.layer(DEFAULT_SCOPE), self.layer(self.own_scope)
        )

    async def update(self, scope: str, edit: Edit) -> dict[str, str]:
        """Persist ``edit`` of a scope's stored configs, then apply them; the new
        configs.

        Raises:
            ConfigStoreError: they could not be persisted (nothing changed).
            ConfigRefused: ``edit`` refused the change.
        """
        values = await self._store.save(scope, edit)
        await self.set_layer(scope, values, reason="altered")
        return values

    async def set_layer(
        self, scope: str, values: Mapping[str, str], *, reason: str
    ) -> None:
        """Take a scope's configs as they are now (loaded, altered or watched) and
        apply them if they concern this broker; no-op when nothing changed."""
        new: dict[str, str] = {}
        for name, value in values.items():
            try:
                validate_broker_config(name, value)
            except InvalidConfig as e:  # written by a newer or older version
                log.warning("broker_config_ignored", scope=scope, error=str(e))
                continue
            new[name] = value
        if self._scopes.get(scope, {}) == new:
            return
        self._scopes[scope] = new
        if scope not in (DEFAULT_SCOPE, self.own_scope):
            return
        defaults = self.topic_defaults()
        await anyio.to_thread.run_sync(self._logs.set_defaults, defaults)
        log.info("broker_configs_applied", scope=scope, configs=new, reason=reason)
