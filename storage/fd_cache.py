"""A bounded LRU of open segment file descriptors, shared by every partition.

An idle partition does not need its segment files open: reads of committed bytes go
through an mmap (which outlives its descriptor), index files are written whole and
closed, and appends and fsyncs can reopen the ``.log`` file on demand. Kafka and
Redpanda bound their open index/segment handles the same way, so the number of
partitions a broker can hold is not the number of descriptors it may open.

Each :class:`~storage.segment.Segment` asks the cache for its descriptor around every
use (``with seg.handle() as fd``). The cache keeps at most ``capacity`` descriptors
open, closing the least recently used ones that nobody is using at that moment
(a descriptor in use is *pinned* and never closed under its user). When every open
descriptor is pinned the cache goes over capacity briefly rather than fail; the
excess is closed as soon as pins are released.

Thread safety: the cache has its own lock, held only for bookkeeping and the
``open``/``close`` calls; a segment's own I/O is serialised by its partition's lock,
so two threads never open the same segment at once. The hot active segment of a
partition being written stays open naturally: it is always the most recently used.
Dirty pages survive closing a descriptor, and an fsync through a reopened descriptor
flushes them (fsync is per file, not per descriptor).
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Final, Protocol

DEFAULT_CAPACITY: Final = 1 << 30  # effectively unbounded (tests, tools)


class _Owner(Protocol):
    """What the cache needs from a segment: how to (re)open and close its file."""

    def _open_fd(self) -> int: ...

    def _close_fd(self, fd: int) -> None: ...


class FdCache:
    """At most ``capacity`` open descriptors among all registered owners (LRU)."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError(f"descriptor cache capacity {capacity} must be >= 1")
        self.capacity = capacity
        self._lock = threading.Lock()
        self._open: OrderedDict[_Owner, int] = OrderedDict()  # oldest first
        self._pins: dict[_Owner, int] = {}
        self.reopened = 0  # descriptors opened again after an eviction
        self.evicted = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._open)

    def register(self, owner: _Owner, fd: int) -> None:
        """Take charge of ``owner``'s freshly opened descriptor (most recent)."""
        with self._lock:
            self._open[owner] = fd
            self._evict_locked(keep=owner)

    def acquire(self, owner: _Owner) -> int:
        """The owner's descriptor, reopened if it was evicted; pinned until
        :meth:`release`. Raises what reopening raises (OSError)."""
        with self._lock:
            fd = self._open.get(owner)
            if fd is None:
                fd = owner._open_fd()
                self._open[owner] = fd
                self.reopened += 1
            else:
                self._open.move_to_end(owner)
            self._pins[owner] = self._pins.get(owner, 0) + 1
            self._evict_locked(keep=owner)
            return fd

    def release(self, owner: _Owner) -> None:
        """Unpin (each :meth:`acquire` is matched by one release)."""
        with self._lock:
            n = self._pins.get(owner, 0) - 1
            if n > 0:
                self._pins[owner] = n
            else:
                self._pins.pop(owner, None)
                if len(self._open) > self.capacity:
                    self._evict_locked(keep=None)

    def forget(self, owner: _Owner) -> int | None:
        """Stop tracking ``owner``; its open descriptor (to close), if any."""
        with self._lock:
            self._pins.pop(owner, None)
            return self._open.pop(owner, None)

    def is_open(self, owner: _Owner) -> bool:
        """Whether ``owner`` holds an open descriptor right now."""
        with self._lock:
            return owner in self._open

    def _evict_locked(self, keep: _Owner | None) -> None:
        excess = len(self._open) - self.capacity
        if excess <= 0:
            return
        victims: list[tuple[_Owner, int]] = []
        for owner, fd in self._open.items():
            if len(victims) >= excess:
                break
            if owner is keep or owner in self._pins:
                continue
            victims.append((owner, fd))
        for owner, fd in victims:
            del self._open[owner]
            self.evicted += 1
            _close_quietly(owner._close_fd, fd)


def _close_quietly(close: Callable[[int], None], fd: int) -> None:
    # Nothing was written through it that an fsync on a reopened one misses.
    with contextlib.suppress(OSError):
        close(fd)
