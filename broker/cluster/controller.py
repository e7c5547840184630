"""The controller: the one broker that assigns replicas, elects leaders and writes
partition state (placeholder interface; the decisions land with their tests)."""

from __future__ import annotations

from dataclasses import dataclass

import anyio

from broker.cluster.keys import Keys
from broker.cluster.store import Store


class NotController(Exception):
    """A guarded write failed: another broker holds the controller key now."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ControllerSettings:
    default_replication_factor: int = 1
    offsets_partitions: int = 16
    offsets_replication_factor: int = 3  # capped at the live brokers


class Controller:
    """Runs while this broker holds the controller key at ``epoch``."""

    def __init__(
        self,
        store: Store,
        keys: Keys,
        *,
        node_id: int,
        epoch: int,
        settings: ControllerSettings,
    ) -> None:
        self.store = store
        self.keys = keys
        self.node_id = node_id
        self.epoch = epoch
        self.settings = settings

    async def run(self) -> None:
        """Act on requests and broker changes until cancelled.

        Raises:
            NotController: a write guarded by ``epoch`` failed.
        """
        await anyio.sleep_forever()  # placeholder: holds the office, decides nothing
