"""The follower's connection to its leader reads whole frames however the bytes
arrive, and reports a leader that hangs up mid-frame or sends a size out of bounds."""

from __future__ import annotations

import pytest

from broker.replication.frames import FrameProtocol
from broker.replication.leader_client import LeaderConnection, LeaderConnectionError
from protocol.codec import encode_response
from protocol.headers import RequestHeader
from protocol.messages.api_versions import (
    ApiVersion,
    ApiVersionsRequest,
    ApiVersionsResponse,
)

_FETCH = 1


class FakeTransport:
    """What FrameProtocol needs of a transport: writes and closing, recorded."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.sent.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


def _feed(frames: FrameProtocol, data: bytes, chunk: int) -> None:
    """Hand ``data`` to the protocol as the event loop would: into the buffers it
    asks for, at most ``chunk`` bytes a read."""
    pos = 0
    while pos < len(data):
        buf = frames.get_buffer(-1)
        n = min(len(buf), chunk, len(data) - pos)
        assert n > 0
        buf[:n] = data[pos : pos + n]
        frames.buffer_updated(n)
        pos += n


def _answer(correlation_id: int, keys: int) -> bytes:
    """An ApiVersions v3 answer listing ``keys`` API keys, with its size prefix."""
    header = RequestHeader(
        request_api_key=18,
        request_api_version=3,
        correlation_id=correlation_id,
        client_id="t",
    )
    body = ApiVersionsResponse(
        error_code=0,
        api_keys=tuple(
            ApiVersion(api_key=k, min_version=0, max_version=k % 13)
            for k in range(keys)
        ),
        throttle_time_ms=0,
    )
    return b"".join(bytes(b) for b in encode_response(header, body))


def _connection(
    max_frame_bytes: int = 1 << 20,
) -> tuple[LeaderConnection, FrameProtocol, FakeTransport]:
    frames = FrameProtocol(max_frame_bytes)
    transport = FakeTransport()
    frames.connection_made(transport)  # type: ignore[arg-type]
    conn = LeaderConnection(
        frames, address="leader:9092", client_id="ailurus-replica-2", timeout_s=5
    )
    return conn, frames, transport


@pytest.mark.anyio
@pytest.mark.parametrize("chunk", [1, 7, 4096, 1 << 20])
async def test_answer_split_in_any_chunks_is_read_whole(chunk: int) -> None:
    """Answers arriving a byte, a few bytes, a page or all at once decode to the
    same responses, in order, a large one (past the 64 KiB scratch buffer) too."""
    conn, frames, transport = _connection()
    _feed(frames, _answer(1, 300) + _answer(2, 3) + _answer(3, 20_000), chunk)
    first = await conn.request(ApiVersionsRequest(), ApiVersionsResponse, version=3)
    assert len(first.api_keys) == 300
    assert first.api_keys[_FETCH].max_version == 1
    second = await conn.request(ApiVersionsRequest(), ApiVersionsResponse, version=3)
    assert [k.api_key for k in second.api_keys] == [0, 1, 2]
    third = await conn.request(ApiVersionsRequest(), ApiVersionsResponse, version=3)
    assert len(third.api_keys) == 20_000
    assert len(transport.sent) == 3
    assert not transport.closed


@pytest.mark.anyio
async def test_leader_hanging_up_mid_answer_closes_the_connection() -> None:
    """A leader that closes the connection halfway through an answer raises
    LeaderConnectionError, and the connection is closed."""
    conn, frames, transport = _connection()
    whole = _answer(1, 300)
    _feed(frames, whole[: len(whole) // 2], 512)
    frames.connection_lost(None)
    with pytest.raises(LeaderConnectionError, match="IncompleteRead"):
        await conn.request(ApiVersionsRequest(), ApiVersionsResponse, version=3)
    assert transport.closed
    assert conn.closed


@pytest.mark.anyio
async def test_frame_size_past_the_bound_closes_the_connection() -> None:
    """A size prefix beyond ``max_frame_bytes`` is refused before any buffer of
    that size is made."""
    conn, frames, transport = _connection(max_frame_bytes=1000)
    _feed(frames, _answer(1, 300), 4096)
    with pytest.raises(LeaderConnectionError, match="frame of"):
        await conn.request(ApiVersionsRequest(), ApiVersionsResponse, version=3)
    assert transport.closed
    assert conn.closed


@pytest.mark.anyio
async def test_large_frame_buffers_are_reused_only_once_released() -> None:
    """Large frames still held keep their bytes when the next ones arrive (new
    buffers are used, a few kept); once released, a buffer takes the next large
    frame."""
    _, frames, _ = _connection(max_frame_bytes=1 << 22)
    big = [bytes([i]) * 200_000 for i in range(1, 6)]
    _feed(frames, b"".join(len(b).to_bytes(4, "big") + b for b in big[:4]), 65536)
    held = [await frames.next_frame() for _ in range(4)]
    assert [bytes(f) for f in held] == big[:4]  # none overwritten
    assert all(isinstance(f, memoryview) for f in held)
    assert len({id(f.obj) for f in held}) == 4
    kept = [f.obj for f in held[:3]]  # the pool keeps the first three
    del held[1]
    _feed(frames, len(big[4]).to_bytes(4, "big") + big[4], 65536)
    fifth = await frames.next_frame()
    assert bytes(fifth) == big[4]
    assert isinstance(fifth, memoryview)
    assert fifth.obj is kept[1]  # the released one
    assert [bytes(f) for f in held] == [big[0], big[2], big[3]]
