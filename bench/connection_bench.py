"""The connection byte path: asyncio Protocol vs anyio streams, same sans-IO framing.

    python bench/connection_bench.py

Three servers answer every frame with a tiny response (no dispatch, no codec), so
only the byte path is measured: (a) ``asyncio.Protocol`` feeding ``FrameReader``
from ``data_received`` and writing with ``writelines`` (what broker/net/connection.py
does); (b) anyio ``receive()`` of big chunks into the same ``FrameReader`` plus one
``send`` per chunk; (c) anyio ``receive_exactly`` per frame plus ``send`` per frame.
A client in another process pipelines 1 KiB frames (µs per frame) and 1 MiB frames
(MB/s). uvloop in every case.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import socket
import struct
import sys
import time
from pathlib import Path

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from protocol.framing import FrameReader

REPLY = struct.pack(">ii", 4, 0)


class ProtoServer(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.t = transport
        self.r = FrameReader(max_frame_size=64 << 20)

    def data_received(self, data: bytes) -> None:
        self.r.receive_data(data)
        frames = self.r.frames()
        if frames:
            self.t.writelines([REPLY] * len(frames))  # type: ignore[attr-defined]


async def serve_protocol(port_q: multiprocessing.Queue) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(ProtoServer, "127.0.0.1", 0)
    port_q.put(server.sockets[0].getsockname()[1])
    await anyio.sleep_forever()


async def chunked(stream: anyio.abc.SocketStream) -> None:
    r = FrameReader(max_frame_size=64 << 20)
    async for chunk in stream:
        r.receive_data(chunk)
        frames = r.frames()
        if frames:
            await stream.send(REPLY * len(frames))


async def per_frame(stream: anyio.abc.SocketStream) -> None:
    buffered = BufferedByteReceiveStream(stream)
    try:
        while True:
            size = struct.unpack(">i", await buffered.receive_exactly(4))[0]
            await buffered.receive_exactly(size)
            await stream.send(REPLY)
    except (anyio.EndOfStream, anyio.IncompleteRead):
        return


async def serve_anyio(port_q: multiprocessing.Queue, mode: str) -> None:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port_q.put(listener.extra(anyio.abc.SocketAttribute.local_port))
    await listener.serve(chunked if mode == "chunked" else per_frame)


def server_main(mode: str, port_q: multiprocessing.Queue) -> None:
    if mode == "protocol":
        anyio.run(serve_protocol, port_q, backend_options={"use_uvloop": True})
    else:
        anyio.run(serve_anyio, port_q, mode, backend_options={"use_uvloop": True})


def client(port: int, frame_size: int, n: int) -> float:
    frame = struct.pack(">i", frame_size) + b"x" * frame_size
    batch = max(1, min(1000, (4 << 20) // len(frame)))
    with socket.create_connection(("127.0.0.1", port)) as sock:
        started = time.perf_counter()
        sent = 0
        while sent < n:
            k = min(batch, n - sent)
            sock.sendall(frame * k)
            want = 8 * k
            got = 0
            while got < want:
                got += len(sock.recv(1 << 20))
            sent += k
        return time.perf_counter() - started


def main() -> None:
    ctx = multiprocessing.get_context("spawn")
    print(f"{'server':<10} {'1 KiB µs/frame':>15} {'1 MiB MB/s':>12}")
    for mode in ("protocol", "chunked", "per_frame"):
        q: multiprocessing.Queue = ctx.Queue()
        proc = ctx.Process(target=server_main, args=(mode, q), daemon=True)
        proc.start()
        port = q.get(timeout=10)
        client(port, 1024, 2000)  # warm-up
        small = client(port, 1024, 100_000) / 100_000 * 1e6
        big = 256 * (1 << 20) / client(port, 1 << 20, 256) / 1e6
        print(f"{mode:<10} {small:>15.2f} {big:>12.0f}")
        proc.terminate()
        proc.join()


if __name__ == "__main__":
    main()
