"""The follower's receive path: a leader's answers read straight into their own buffers.

An ``asyncio.BufferedProtocol`` (the broker's own connections use one too, see
:mod:`broker.net.connection`): the kernel copies received bytes into the buffer
``get_buffer`` hands it, so

- the size prefix and small answers land in a scratch buffer, from which each whole
  frame is copied out;
- a frame larger than the scratch buffer (a Fetch answer of megabytes) gets a buffer
  of its own (the last large one again once nothing refers to it), and once its
  first bytes are there, the kernel copies the rest straight into it: one copy per
  byte, and the waiting task is woken once per frame, not once per socket read
  (with anyio streams each read of at most 64 KiB was a wake-up, a ``bytes``
  object and a second copy).

Requests are written to the transport as they are; a follower has one in flight.
"""

from __future__ import annotations

import asyncio
import struct
from collections import deque
from typing import Final, cast

_SIZE: Final = struct.Struct(">i")
_SCRATCH_BYTES: Final = 64 * 1024
_SPARE_BUFFERS: Final = 3  # large frame buffers kept for reuse


class FrameError(Exception):
    """The connection ended, or the leader sent a frame size out of bounds."""


class FrameProtocol(asyncio.BufferedProtocol):
    """Splits the leader's byte stream into frames (see the module docstring)."""

    def __init__(self, max_frame_bytes: int) -> None:
        self.max_frame_bytes = max_frame_bytes
        self.transport: asyncio.Transport | None = None
        self._scratch = bytearray(_SCRATCH_BYTES)
        self._view = memoryview(self._scratch)
        self._have = 0  # bytes held in the scratch buffer
        self._big: memoryview | None = None  # a large frame being filled
        self._filled = 0
        self._frames: deque[bytearray | memoryview] = deque()
        self._spares: list[bytearray] = []  # the last large frames' buffers
        self._waiter: asyncio.Future[None] | None = None
        self._error: FrameError | None = None

    # -- the transport's side ----------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport; they implement it.
        self.transport = cast("asyncio.Transport", transport)

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._big is not None:
            return self._big[self._filled :]
        return self._view[self._have :]

    def buffer_updated(self, nbytes: int) -> None:
        if self._big is not None:
            self._filled += nbytes
            if self._filled == len(self._big):
                self._frames.append(self._big)
                self._big = None
                self._wake()
            return
        self._have += nbytes
        self._split()

    def eof_received(self) -> bool:
        return False  # close the transport: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        if self._error is None:
            self._error = FrameError(
                "IncompleteRead: the leader closed the connection"
                if exc is None
                else f"{type(exc).__name__} {exc}"
            )
        self._wake()

    # -- the reader's side ---------------------------------------------------------------
    def write(self, data: bytes) -> None:
        """Send a request.

        Raises:
            FrameError: the connection is closed.
        """
        if self._error is not None:
            raise self._error
        if self.transport is None or self.transport.is_closing():
            raise FrameError("the connection is closed")
        self.transport.write(data)

    async def next_frame(self) -> bytearray | memoryview:
        """The next whole frame (without its size prefix).

        Raises:
            FrameError: the connection ended first, or a frame size is out of bounds.
        """
        while not self._frames:
            if self._error is not None:
                raise self._error
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._frames.popleft()

    def close(self) -> None:
        """Close the connection (idempotent)."""
        if self._error is None:
            self._error = FrameError("the connection is closed")
        if self.transport is not None:
            self.transport.close()
        self._wake()

    # -- splitting -----------------------------------------------------------------------
    def _split(self) -> None:
        pos, have, view = 0, self._have, self._view
        while have - pos >= _SIZE.size:
            (size,) = _SIZE.unpack_from(self._scratch, pos)
            if size < 0 or size > self.max_frame_bytes:
                self._error = FrameError(f"the leader sent a frame of {size} bytes")
                if self.transport is not None:
                    self.transport.close()
                self._have = 0
                self._wake()
                return
            start = pos + _SIZE.size
            if have - start >= size:
                self._frames.append(bytearray(view[start : start + size]))
                pos = start + size
                continue
            if _SIZE.size + size > len(self._scratch):
                # Too big for the scratch buffer: the frame gets its own, and the
                # kernel fills the rest of it directly.
                frame = self._large_buffer(size)
                got = have - start
                frame[:got] = view[start:have]
                self._big = frame
                self._filled = got
                pos = have
            break
        rest = have - pos
        if pos and rest:
            self._scratch[:rest] = bytes(view[pos:have])  # same length: views stay
        self._have = rest
        if self._frames:
            self._wake()

    def _large_buffer(self, size: int) -> memoryview:
        """A buffer for a frame of ``size`` bytes: one of the last large frames'
        once nothing refers to that frame any more (the answer was decoded and
        appended), else a new one. Reuse saves the allocation, zero-filling and page
        faults of megabytes per answer; a few are kept because a follower receives
        its next answer while it appends the last. Frames are handed out only as
        memoryviews, so a buffer that can be resized has no reader left."""
        spares = self._spares
        for spare in spares:
            if len(spare) >= size and _unreferenced(spare):
                return memoryview(spare)[:size]
        fresh = bytearray(size)
        if len(spares) < _SPARE_BUFFERS:
            spares.append(fresh)
        else:  # in place of the smallest one that is free
            free = [i for i, b in enumerate(spares) if _unreferenced(b)]
            if free:
                spares[min(free, key=lambda i: len(spares[i]))] = fresh
        return memoryview(fresh)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


def _unreferenced(buf: bytearray) -> bool:
    """Whether no memoryview of ``buf`` is alive (a resize is refused while one
    is)."""
    try:
        buf.append(0)
        del buf[-1]
    except BufferError:
        return False
    return True
