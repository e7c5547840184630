"""Group commit: the async driver that fsyncs partitions and advances high watermarks.

The high watermark is the durable offset (the policy, and where acks=all waits, is
described in :mod:`broker.durability.acks`). Group commit keeps the fsync latency
between a produce and its visibility small:

- every append marks its partition dirty and wakes the driver (never a timer);
- each dirty partition is fsynced in a worker thread (``anyio.to_thread.run_sync``),
  partitions in parallel; appends that arrive while a partition's fsync runs are
  covered by its next one, so one fsync covers everything that arrived while the
  previous ran;
- after each fsync, produce requests with acks=all whose last offset is now durable are
  answered, and Fetch long polls waiting on those partitions are woken
  (:class:`PartitionWaiters`), because their high watermark moved.

A failed fsync (``StorageIOError``) fails every waiter of that partition.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import anyio
import structlog

from storage.errors import StorageError

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

log = structlog.get_logger("broker.durability")


class SyncableLog(Protocol):
    """What group commit needs of a partition log (storage's PartitionLog)."""

    @property
    def durable_offset(self) -> int: ...

    def sync(self) -> int: ...


@dataclass(slots=True, eq=False)
class _Waiter:
    target: int  # wait until durable_offset >= target
    event: anyio.Event = field(default_factory=anyio.Event)
    error: StorageError | None = None


class PartitionWaiters:
    """Fetch long polls waiting for a partition's high watermark to move.

    One ``anyio.Event`` per waiting fetch, registered under every partition it reads;
    :meth:`notify` sets them. Never polled on a timer.
    """

    def __init__(self) -> None:
        self._by_log: dict[SyncableLog, set[anyio.Event]] = {}

    def register(self, logs: Sequence[SyncableLog], event: anyio.Event) -> None:
        for lg in logs:
            self._by_log.setdefault(lg, set()).add(event)

    def unregister(self, logs: Sequence[SyncableLog], event: anyio.Event) -> None:
        for lg in logs:
            events = self._by_log.get(lg)
            if events is not None:
                events.discard(event)
                if not events:
                    del self._by_log[lg]

    def notify(self, lg: SyncableLog) -> None:
        events = self._by_log.pop(lg, None)
        if events:
            for event in events:
                event.set()

    def notify_all(self) -> None:
        """Wake every waiter (shutdown, topic deletion)."""
        by_log, self._by_log = self._by_log, {}
        for events in by_log.values():
            for event in events:
                event.set()


class GroupCommit:
    """The group-commit driver; :meth:`run` lives in the server's root task group.

    Each dirty log gets its own sync task, so partitions are fsynced in parallel
    worker threads (fdatasync on different files overlaps; measured ~1.7x faster
    than one after the other for 6 partitions). Per log, at most one fsync runs at a
    time; appends that arrive meanwhile set ``again`` and are covered by the next.
    """

    def __init__(
        self,
        waiters: PartitionWaiters,
        *,
        on_round: Callable[[int], None] | None = None,
    ) -> None:
        self._syncing: dict[SyncableLog, bool] = {}  # log -> dirty again since start
        self._early: dict[SyncableLog, None] = {}  # dirty before run() started
        self._pending: dict[SyncableLog, list[_Waiter]] = {}
        self._waiters = waiters
        self._on_round = on_round
        self._tg: TaskGroup | None = None

    def mark_dirty(self, lg: SyncableLog) -> None:
        """An append happened: make sure an fsync of ``lg`` starts (or runs again)."""
        if lg in self._syncing:
            self._syncing[lg] = True
            return
        if self._tg is None:
            self._early[lg] = None
            return
        self._syncing[lg] = False
        self._tg.start_soon(self._sync_loop, lg)

    async def wait_durable(self, lg: SyncableLog, offset: int) -> None:
        """Return once every record below ``offset`` in ``lg`` is fsynced.

        Raises:
            StorageError: the fsync failed (the broker answers KAFKA_STORAGE_ERROR).
        """
        if lg.durable_offset >= offset:
            return
        waiter = _Waiter(target=offset)
        self._pending.setdefault(lg, []).append(waiter)
        self.mark_dirty(lg)
        await waiter.event.wait()
        if waiter.error is not None:
            raise waiter.error

    async def run(self) -> None:
        """Host the per-log sync tasks until cancelled."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            early, self._early = list(self._early), {}
            for lg in early:
                self.mark_dirty(lg)
            try:
                await anyio.sleep_forever()
            finally:
                self._tg = None

    async def sync_round(self) -> None:
        """Fsync every log dirty before :meth:`run` started, now (tests, shutdown)."""
        logs, self._early = list(self._early), {}
        for lg in logs:
            await self._sync_once(lg)

    async def _sync_loop(self, lg: SyncableLog) -> None:
        try:
            while True:
                self._syncing[lg] = False
                await self._sync_once(lg)
                if not self._syncing.get(lg, False):
                    return
        finally:
            self._syncing.pop(lg, None)

    async def _sync_once(self, lg: SyncableLog) -> None:
        result = await anyio.to_thread.run_sync(_sync_one, lg)
        if self._on_round is not None:
            self._on_round(1)
        waiters = self._pending.get(lg)
        if isinstance(result, StorageError):
            log.error("fsync_failed", error=str(result))
            if waiters:
                for w in waiters:
                    w.error = result
                    w.event.set()
                del self._pending[lg]
            return
        if waiters:
            remaining = []
            for w in waiters:
                if result >= w.target:
                    w.event.set()
                else:
                    remaining.append(w)
            if remaining:
                self._pending[lg] = remaining
                self.mark_dirty(lg)  # sync again: a waiter is still short
            else:
                del self._pending[lg]
        self._waiters.notify(lg)

    def fail_log(self, lg: SyncableLog, error: StorageError) -> None:
        """Fail every waiter of a log that goes away (topic deleted)."""
        self._early.pop(lg, None)
        if lg in self._syncing:
            self._syncing[lg] = False
        for w in self._pending.pop(lg, []):
            w.error = error
            w.event.set()
        self._waiters.notify(lg)


def _sync_one(lg: SyncableLog) -> int | StorageError:
    """Worker thread: fsync one log; a failure is returned, not raised."""
    try:
        return lg.sync()
    except StorageError as e:
        return e
