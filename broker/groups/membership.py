"""Stored group membership: the group service's part that writes and reloads it.

:class:`StoredMembership` is a mixin of :class:`~broker.groups.service.GroupService`
(its attributes are the service's). After each coordinator call the groups whose
generation completed, that emptied or whose static member changed id
(``GroupCoordinator.changed``, Kafka's ``storeGroup`` points) are stored: single
node, a ``group`` line of the offset store, fsynced through the group commit when a
SyncGroup waits for it (never per heartbeat); cluster mode, a GroupMetadata record
appended to the group's ``__consumer_offsets`` partition, which the member's
SyncGroup waits to see replicated (others go from a background task). On open
(single node) or on leadership of an offsets partition (cluster) the stored groups
are loaded: Stable with their members (Empty without), each member with a fresh
session, so a member that heartbeats in time carries on in the same generation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import anyio
import structlog

from broker.groups.coordinator import GroupCoordinator
from broker.groups.flusher import Durability
from broker.groups.model import Effect
from broker.groups.persisted import (
    from_record,
    group_record,
    loaded_group,
    stored_group,
)
from protocol.error_codes import ErrorCode
from protocol.group_metadata_records import GroupMetadataValue
from storage.errors import StorageError
from storage.group_meta import StoredGroup
from storage.offset_store import OffsetStore

if TYPE_CHECKING:
    from broker.groups.replicated import ReplicatedOffsets

log = structlog.get_logger("broker.groups")


class StoredMembership:
    """The stored membership of a :class:`GroupService`'s groups (a mixin)."""

    store: OffsetStore
    replicated: ReplicatedOffsets | None
    coordinator: GroupCoordinator
    _durability: Durability
    _clock: Callable[[], int]
    _wall: Callable[[], int]
    _group_seq: int  # single node: write sequence of the last stored membership
    _unstored: dict[str, StoredGroup]  # cluster mode: not yet appended
    _store_wake: anyio.Event

    def _apply(self, effects: list[Effect]) -> None:
        raise NotImplementedError

    def _load_stored(self, groups: Iterable[StoredGroup]) -> int:
        """Take stored groups into the coordinator (those it does not know yet);
        returns how many members came back."""
        now = self._clock()
        members = 0
        effects: list[Effect] = []
        for stored in groups:
            if stored.group in self.coordinator.groups:
                continue
            effects += self.coordinator.load_group(loaded_group(stored, now), now)
            members += len(stored.members)
        self._apply(effects)
        return members

    def _load_records(self, metadata: dict[str, GroupMetadataValue]) -> None:
        """Cluster mode: the memberships an offsets partition's log holds."""
        members = self._load_stored(from_record(g, v) for g, v in metadata.items())
        if metadata:
            log.info("groups_loaded", groups=len(metadata), members=members)

    def _store_changed(self) -> None:
        """Store the membership of the coordinator's changed groups."""
        changed = self.coordinator.changed
        self.coordinator.changed = set()
        for group_id in changed:
            group = self.coordinator.groups.get(group_id)
            stored = None if group is None else stored_group(group, self._wall())
            if stored is None:
                continue
            if self.replicated is not None:
                self._unstored[group_id] = stored
                self._store_wake.set()
                continue
            try:
                self._group_seq = self.store.store_group(stored)
            except StorageError as e:
                log.error("group_store_failed", group_id=group_id, error=str(e))

    async def _stored(self, group_id: str) -> ErrorCode:
        """Wait until the group's last membership is durable (single node: fsynced;
        cluster mode: appended and replicated)."""
        if self.replicated is not None:
            stored = self._unstored.pop(group_id, None)
            if stored is None:
                return ErrorCode.NONE
            return await self._append_stored(stored)
        if self._group_seq <= self.store.durable_seq:
            return ErrorCode.NONE
        try:
            await self._durability.wait_durable(self.store, self._group_seq)
        except StorageError as e:
            log.error("group_store_failed", group_id=group_id, error=str(e))
            return ErrorCode.COORDINATOR_NOT_AVAILABLE
        return ErrorCode.NONE

    async def _append_stored(self, stored: StoredGroup) -> ErrorCode:
        assert self.replicated is not None
        code = await self.replicated.store_group(stored.group, group_record(stored))
        if code != ErrorCode.NONE:
            log.warning("group_store_failed", group_id=stored.group, error=code.name)
        return code

    async def _store_loop(self) -> None:
        """Cluster mode: append the memberships no SyncGroup waits for (a group
        that emptied)."""
        while True:
            await self._store_wake.wait()
            self._store_wake = anyio.Event()
            while self._unstored:
                _, stored = self._unstored.popitem()
                await self._append_stored(stored)

    def _forget_stored(self, gone: Iterable[str]) -> None:
        """Single node: empty groups without offsets went from the coordinator;
        their stored membership goes too (Kafka's ``cleanupGroupMetadata``)."""
        stored = {s.group for s in self.store.stored_groups()}
        for group_id in stored.intersection(gone):
            try:
                self.store.delete_group(group_id)
            except StorageError as e:
                log.error("group_store_failed", group_id=group_id, error=str(e))
