"""Group commit of the offset store's fsyncs, and what the group service needs of one.

:class:`Durability` is the broker's group commit
(``broker.durability.group_commit.GroupCommit``) as the group service uses it;
:class:`OwnFlusher` stands in when no broker group commit is given (tests, tools):
one task fsyncs the offset store whenever a commit waits for it.
"""

from __future__ import annotations

from typing import Protocol

import anyio

from storage.errors import StorageError
from storage.offset_store import OffsetStore


class Durability(Protocol):
    """The broker's group commit (broker.durability.group_commit.GroupCommit) as we use it."""

    async def wait_durable(self, lg: OffsetStore, offset: int, /) -> None: ...


class OwnFlusher:
    """Group commit for the offset store alone (when no broker group commit is given)."""

    def __init__(self) -> None:
        self._need = anyio.Event()
        self._done = anyio.Event()
        self._error: StorageError | None = None
        self._store: OffsetStore | None = None

    async def wait_durable(self, lg: OffsetStore, offset: int, /) -> None:
        self._store = lg
        while lg.durable_offset < offset:
            done = self._done
            self._need.set()
            await done.wait()
            if self._error is not None:
                raise self._error

    async def run(self) -> None:
        while True:
            await self._need.wait()
            self._need = anyio.Event()
            store = self._store
            if store is not None:
                try:
                    await anyio.to_thread.run_sync(store.sync)
                except StorageError as e:
                    self._error = e
            done, self._done = self._done, anyio.Event()
            done.set()
