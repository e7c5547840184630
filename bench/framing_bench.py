"""FrameReader micro-benchmarks: the sans-IO framing alone, no sockets.

Run: ``python bench/framing_bench.py``. Prints one row per case with the mean time per
operation (the fastest of 25 short rounds of perf_counter loops):

- many small frames: 1 KiB frames in 256 KiB chunks (what the connection's scratch
  buffer delivers), so a few frames per chunk straddle a chunk boundary;
- one 1 MiB frame fed in 64 KiB ``bytes`` pieces (``receive_data``, frames taken
  after each piece);
- one 1 MiB frame received in place in 64 KiB pieces (``assembly_buffer`` /
  ``assembly_received``, the BufferedProtocol path of broker/net/connection.py), after a
  first read into the connection's 256 KiB scratch buffer (what a client streaming
  produce requests delivers) or after a first read of only 4 KiB (the worst case for
  a buffer grown as data arrives).
"""

from __future__ import annotations

import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from protocol.framing import FrameReader

KIB = 1024
MIB = 1024 * KIB


def best_of(fn: Callable[[], object], loops: int, rounds: int = 25) -> float:
    """Mean seconds per call of the fastest round (short rounds dodge preemption)."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(loops):
            fn()
        best = min(best, (time.perf_counter() - start) / loops)
    return best


def frame(body: bytes) -> bytes:
    return struct.pack(">i", len(body)) + body


def small_frames() -> tuple[Callable[[], object], int]:
    """1 KiB frames in 256 KiB chunks; returns the case and frames per call."""
    stream = frame(b"s" * KIB) * 1024  # ~1 MiB: 1024 frames
    chunks = [stream[i : i + 256 * KIB] for i in range(0, len(stream), 256 * KIB)]

    def run() -> int:
        reader = FrameReader()
        n = 0
        for chunk in chunks:
            reader.receive_data(chunk)
            n += len(reader.frames())
        assert n == 1024
        return n

    return run, 1024


def large_fed() -> Callable[[], object]:
    data = frame(bytes(range(256)) * (MIB // 256))
    pieces = [data[i : i + 64 * KIB] for i in range(0, len(data), 64 * KIB)]

    def run() -> int:
        reader = FrameReader()
        got: list[memoryview] = []
        for piece in pieces:  # frames taken after each piece, as the broker does
            reader.receive_data(piece)
            got += reader.frames()
        assert len(got) == 1
        return len(got[0])

    return run


def large_in_place(first: int) -> Callable[[], object]:
    data = frame(bytes(range(256)) * (MIB // 256))
    src = memoryview(data)

    def run() -> int:
        reader = FrameReader()
        reader.receive_data(data[:first])  # the first recv lands in the scratch buffer
        assert reader.frames() == []
        pos = first
        while pos < len(data):
            view = reader.assembly_buffer(16 * KIB)
            if view is None:  # under 16 KiB missing: read into the scratch buffer
                reader.receive_data(data[pos:])
                break
            n = min(64 * KIB, len(view), len(data) - pos)
            view[:n] = src[pos : pos + n]  # what recv_into does
            reader.assembly_received(n)
            pos += n
        (got,) = reader.frames()
        return len(got)

    return run


def main() -> None:
    print(f"python {sys.version.split()[0]}")
    print(f"{'case':<52} {'µs/op':>9}")
    run, n = small_frames()
    per_call = best_of(run, 20)
    print(
        f"{'1 KiB frames in 256 KiB chunks (per frame)':<52} {per_call / n * 1e6:>9.3f}"
    )
    fed = best_of(large_fed(), 20) * 1e6
    print(f"{'1 MiB frame fed in 64 KiB pieces (per frame)':<52} {fed:>9.1f}")
    for first in (256 * KIB, 4 * KIB):
        in_place = best_of(large_in_place(first), 20) * 1e6
        name = f"1 MiB frame in place after {first // KIB} KiB (per frame)"
        print(f"{name:<52} {in_place:>9.1f}")


if __name__ == "__main__":
    main()
