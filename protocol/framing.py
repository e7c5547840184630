"""Sans-IO framing: split a byte stream into Kafka frames (a 4-byte size, then a body).

The caller (the broker's connection) feeds whatever the socket gave it to
:meth:`FrameReader.receive_data` and takes the complete frames out with
:meth:`FrameReader.frames` (or one at a time with :meth:`FrameReader.next_frame`).
Nothing here blocks or reads a socket (sans-IO).

Copying: a chunk passed as ``bytes`` is kept by reference, and every frame that lies
inside one chunk is returned as a zero-copy ``memoryview`` slice of it, so a chunk
holding many small frames costs no copying at all. Other buffer types (a
``bytearray`` or ``memoryview`` the caller may reuse) are copied once on receipt. A
frame that spans chunks is assembled into its own ``bytearray``. Returned frames stay
valid for as long as the caller holds them. A caller that can receive into memory may
skip even that copy for large frames: :meth:`FrameReader.assembly_buffer` hands out
the unfilled part of the frame's buffer and :meth:`FrameReader.assembly_received`
records what was written there.

Memory follows what arrives, not what the size prefix claims: a peer can claim
100 MiB in four bytes and then trickle. The assembly buffer is sized at four times
what has arrived of the frame (at least 16 KiB), and sized again the same way when
more must fit, so it grows geometrically; a size within a factor of two of the
claimed size becomes the claimed size (growing again for the last bytes would copy
the frame once more). So it holds at most the largest of 32 KiB, eight times the
bytes that have arrived, and those plus the minimum an in-place receive asks for,
and never more than the claimed size. Measured (``bench/framing_bench.py``), growing
one buffer keeps the in-place receive of large frames; a list of received chunks
joined at completion copies slightly less when chunks are fed, but every in-place
frame would pay a full extra copy. :attr:`FrameReader.assembly_held` is what the partly
received frame holds, for a caller that budgets memory across connections.
"""

from __future__ import annotations

import struct
from collections import deque
from typing import Final

from protocol.errors import FrameTooLarge

_SIZE: Final = struct.Struct(">i")
_EMPTY: Final = memoryview(b"")

DEFAULT_MAX_FRAME_SIZE: Final = 100 * 1024 * 1024
# A frame split across chunks gets a buffer of what has arrived of it, at least
# this much, grown by _ASM_GROWTH whenever more arrives than it holds.
ASSEMBLY_INITIAL: Final = 16 * 1024
_ASM_GROWTH: Final = 4


class NeedData:
    """The sentinel type :meth:`FrameReader.next_frame` returns when it needs bytes."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = NeedData()


class FrameReader:
    """Split a byte stream into Kafka frames (bodies without their size prefix)."""

    __slots__ = (
        "_asm",
        "_asm_filled",
        "_asm_initial",
        "_asm_size",
        "_asm_view",
        "_buffered",
        "_chunks",
        "_cur",
        "_eof",
        "_header",
        "_pos",
        "max_frame_size",
    )

    def __init__(
        self,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        *,
        assembly_initial: int = ASSEMBLY_INITIAL,
    ) -> None:
        self.max_frame_size = max_frame_size
        self._asm_initial = max(1, assembly_initial)
        self._cur: memoryview = _EMPTY  # the chunk being split
        self._pos = 0  # where the unconsumed part of _cur starts
        self._chunks: deque[memoryview] = deque()  # chunks received after _cur
        self._header = bytearray()  # a size prefix split across chunks
        self._asm: bytearray | None = None  # a frame split across chunks (capacity)
        self._asm_view: memoryview = _EMPTY
        self._asm_size = 0  # its claimed size
        self._asm_filled = 0
        self._buffered = 0
        self._eof = False

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned in a frame."""
        return self._buffered

    @property
    def assembly_held(self) -> int:
        """Bytes allocated for the partly received frame (0 when there is none)."""
        asm = self._asm
        return 0 if asm is None else len(asm)

    @property
    def assembly_size(self) -> int:
        """The claimed size of the partly received frame (0 when there is none)."""
        return 0 if self._asm is None else self._asm_size

    @property
    def assembly_missing(self) -> int:
        """Bytes of the partly received frame not yet received (0 when none)."""
        return 0 if self._asm is None else self._asm_size - self._asm_filled

    @property
    def at_eof(self) -> bool:
        """Whether EOF was received (``buffered > 0`` then means a truncated frame)."""
        return self._eof

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes from the stream; ``b""`` means the peer closed it."""
        if not data:
            self._eof = True
            return
        # A bytearray or memoryview may be the caller's reused buffer: copy it.
        view = memoryview(data if isinstance(data, bytes) else bytes(data))
        self._buffered += len(view)
        if self._pos >= len(self._cur) and not self._chunks:
            self._cur, self._pos = view, 0
        else:
            self._chunks.append(view)

    def _advance(self) -> bool:
        """Move to the next chunk; False if there is none."""
        if not self._chunks:
            self._cur, self._pos = _EMPTY, 0
            return False
        self._cur, self._pos = self._chunks.popleft(), 0
        return True

    def _check(self, size: int) -> None:
        if size < 0 or size > self.max_frame_size:
            raise FrameTooLarge(size, self.max_frame_size)

    def _start_assembly(self, size: int) -> None:
        # Sized by what has arrived of the body so far (the buffered bytes after
        # this frame's size prefix), not by what the prefix claims; a frame arriving
        # at full speed is usually allocated once.
        self._asm_size = size
        self._asm_filled = 0
        self._asm = bytearray(self._capacity(self._buffered - 4))
        self._asm_view = memoryview(self._asm)

    def _capacity(self, need: int) -> int:
        """The buffer size for a frame of which ``need`` bytes must fit now.

        Room for ``_ASM_GROWTH`` times that (at least ``assembly_initial``); within
        a factor of two of the claimed size, all of it (growing again for the last
        few bytes would copy the whole frame once more).
        """
        size = self._asm_size
        cap = max(self._asm_initial, need * _ASM_GROWTH)
        return size if cap * 2 > size else cap

    def _grow(self, need: int, arrived: int) -> None:
        """Grow the assembly buffer to hold ``need`` bytes, with room for
        ``_ASM_GROWTH`` times the ``arrived`` ones (geometric growth, O(n) copying)."""
        asm = self._asm
        assert asm is not None
        filled = self._asm_filled
        grown = bytearray(max(need, self._capacity(arrived)))
        grown[:filled] = self._asm_view[:filled]
        self._asm = grown
        self._asm_view = memoryview(grown)

    def next_frame(self) -> memoryview | NeedData:
        """The next complete frame's body, or ``NEED_DATA``.

        Raises:
            FrameTooLarge: a size prefix is negative or above ``max_frame_size``
                (raised before anything is allocated for it).
        """
        while True:
            if self._asm is not None:
                return self._fill()
            cur, pos = self._cur, self._pos
            avail = len(cur) - pos
            if avail == 0:
                if not self._advance():
                    return NEED_DATA
                continue
            if avail < 4 or self._header:
                take = min(4 - len(self._header), avail)
                self._header += cur[pos : pos + take]
                self._pos = pos + take
                if len(self._header) < 4:
                    continue
                (size,) = _SIZE.unpack(self._header)
                self._check(size)
                self._header.clear()
                self._start_assembly(size)
                continue
            (size,) = _SIZE.unpack_from(cur, pos)
            self._check(size)
            end = pos + 4 + size
            if end <= len(cur):
                self._pos = end
                self._buffered -= 4 + size
                return cur[pos + 4 : end]
            self._pos = pos + 4
            self._start_assembly(size)

    def _fill(self) -> memoryview | NeedData:
        """Copy what has arrived of a frame split across chunks into its buffer."""
        assert self._asm is not None
        size = self._asm_size
        while self._asm_filled < size:
            cur, pos = self._cur, self._pos
            take = min(size - self._asm_filled, len(cur) - pos)
            if take == 0:
                if not self._advance():
                    return NEED_DATA
                continue
            filled = self._asm_filled
            if filled + take > len(self._asm):
                # Room for every body byte buffered now (-4: the size prefix).
                arrived = min(size, self._buffered - 4)
                self._grow(arrived, arrived)
            self._asm_view[filled : filled + take] = cur[pos : pos + take]
            self._asm_filled = filled + take
            self._pos = pos + take
        asm = self._asm
        self._asm, self._asm_view = None, _EMPTY
        self._buffered -= 4 + size
        return memoryview(asm)

    def assembly_buffer(self, min_size: int) -> memoryview | None:
        """Where the next bytes of a large frame can be received in place, or None.

        While a frame of which at least ``min_size`` bytes are still missing is
        being assembled and nothing else is buffered, this is the unfilled tail of
        its buffer (grown first if less than ``min_size`` is left): a caller that
        can receive into memory (an ``asyncio.BufferedProtocol``) reads the socket
        straight into it and then calls :meth:`assembly_received`, so the frame is
        not copied again until the buffer grows. Bytes of the next frame cannot
        land there: the buffer never extends past this frame.
        """
        asm = self._asm
        if asm is None or self._chunks or self._pos < len(self._cur):
            return None
        filled = self._asm_filled
        if self._asm_size - filled < min_size:
            return None
        if len(asm) - filled < min_size:
            self._grow(filled + min_size, filled)
        return self._asm_view[filled:]

    def assembly_received(self, nbytes: int) -> None:
        """``nbytes`` were written at the start of the last :meth:`assembly_buffer`."""
        assert self._asm is not None
        assert 0 < nbytes <= len(self._asm) - self._asm_filled
        self._asm_filled += nbytes
        self._buffered += nbytes

    def frames(self) -> list[memoryview]:
        """Every complete frame received so far, in order (the broker's hot path)."""
        out: list[memoryview] = []
        while True:
            frame = self.next_frame()
            if isinstance(frame, NeedData):
                return out
            out.append(frame)
