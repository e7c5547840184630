"""The append gate: produce appends wait while a snapshot ingest writes a partition.

The snapshot applier (broker.snapshots.apply) holds a partition's gate while it
appends a snapshot's batches; the produce handler checks the broker's gate
(``BrokerContext.append_gate``) before appending and queues the request behind the
ingest when the partition is held.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field

import anyio

from storage.partition_log import PartitionLog


@dataclass(slots=True, eq=False)
class QueuedAppend:
    """A produce request waiting for ingests to release its partitions.

    ``result`` is what ``run`` returned: the produce handler's result (typed
    ``object`` like ``broker.net.request.HandlerResult``, which this module does not
    import: the request module depends on the broker context, which holds the gate).
    """

    plogs: frozenset[PartitionLog]
    run: Callable[[], object]
    done: anyio.Event = field(default_factory=anyio.Event)
    result: object = None


class AppendGate:
    """Keeps produce appends out of partitions while an ingest writes to them.

    The produce handler appends synchronously on the event-loop thread. When
    :meth:`busy` says a partition of a request is held by an ingest (or has requests
    queued behind one), the handler hands the whole request to :meth:`enqueue`
    instead and answers once ``done`` is set. Queued requests run in arrival order,
    synchronously on the loop thread, as soon as none of their partitions is held; a
    request still blocked also holds back later requests sharing a partition with it.
    So each partition keeps request order, and produced records land after the
    ingested batches, never between them.
    """

    def __init__(self) -> None:
        self._held: set[PartitionLog] = set()
        self._queue: list[QueuedAppend] = []
        self._queued: defaultdict[PartitionLog, int] = defaultdict(int)

    @property
    def active(self) -> bool:
        """Whether any partition is held or any request queued (cheap pre-check)."""
        return bool(self._held or self._queue)

    def busy(self, *plogs: PartitionLog) -> bool:
        """Whether a request appending to ``plogs`` must be queued."""
        return any(p in self._held or self._queued.get(p, 0) for p in plogs)

    def enqueue(
        self, plogs: Iterable[PartitionLog], run: Callable[[], object]
    ) -> QueuedAppend:
        """Queue ``run`` (the request's appends); it runs when its partitions are free."""
        item = QueuedAppend(plogs=frozenset(plogs), run=run)
        self._queue.append(item)
        for p in item.plogs:
            self._queued[p] += 1
        self._drain()
        return item

    @contextlib.asynccontextmanager
    async def hold(self, plog: PartitionLog) -> AsyncIterator[None]:
        """Hold the partition's appends for the duration of an ingest."""
        if plog in self._held:
            raise RuntimeError("partition already held by an ingest")
        self._held.add(plog)
        try:
            yield
        finally:
            self._held.discard(plog)
            self._drain()

    def _drain(self) -> None:
        blocked: set[PartitionLog] = set()
        remaining: list[QueuedAppend] = []
        for item in self._queue:
            if any(p in self._held or p in blocked for p in item.plogs):
                blocked |= item.plogs
                remaining.append(item)
                continue
            for p in item.plogs:
                self._queued[p] -= 1
                if self._queued[p] <= 0:
                    del self._queued[p]
            try:
                item.result = item.run()
            finally:
                item.done.set()
        self._queue = remaining
