"""The follower's connection to its leader reads whole frames however the bytes
arrive, and reports a leader that hangs up mid-frame."""

from __future__ import annotations

import anyio
import pytest

from broker.replication.leader_client import LeaderConnection, LeaderConnectionError
from protocol.codec import encode_response
from protocol.headers import RequestHeader
from protocol.messages.api_versions import (
    ApiVersion,
    ApiVersionsRequest,
    ApiVersionsResponse,
)

_FETCH = 1


class ChunkedStream:
    """A byte stream that hands out prepared bytes at most ``chunk`` at a time."""

    def __init__(self, data: bytes, chunk: int) -> None:
        self.data = data
        self.chunk = chunk
        self.sent: list[bytes] = []
        self.closed = False

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if not self.data:
            raise anyio.EndOfStream
        n = min(max_bytes, self.chunk, len(self.data))
        out, self.data = self.data[:n], self.data[n:]
        return out

    async def send(self, item: bytes) -> None:
        self.sent.append(item)

    async def aclose(self) -> None:
        self.closed = True


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


def _connection(stream: ChunkedStream) -> LeaderConnection:
    return LeaderConnection(
        stream,  # type: ignore[arg-type]
        address="leader:9092",
        client_id="ailurus-replica-2",
        timeout_s=5,
        max_frame_bytes=1 << 20,
    )


@pytest.mark.anyio
@pytest.mark.parametrize("chunk", [1, 7, 4096])
async def test_answer_split_in_any_chunks_is_read_whole(chunk: int) -> None:
    """An answer arriving a byte, a few bytes or a page at a time decodes to the
    same response, and the bytes after it stay for the next one."""
    stream = ChunkedStream(_answer(1, 300) + _answer(2, 3), chunk)
    conn = _connection(stream)
    first = await conn.request(ApiVersionsRequest(), ApiVersionsResponse, version=3)
    assert len(first.api_keys) == 300
    assert first.api_keys[_FETCH].max_version == 1
    second = await conn.request(ApiVersionsRequest(), ApiVersionsResponse, version=3)
    assert [k.api_key for k in second.api_keys] == [0, 1, 2]
    assert len(stream.sent) == 2
    assert not stream.closed


@pytest.mark.anyio
async def test_leader_hanging_up_mid_answer_closes_the_connection() -> None:
    """A leader that closes the connection halfway through an answer raises
    LeaderConnectionError, and the connection is closed."""
    whole = _answer(1, 300)
    stream = ChunkedStream(whole[: len(whole) // 2], 512)
    conn = _connection(stream)
    with pytest.raises(LeaderConnectionError, match="IncompleteRead"):
        await conn.request(ApiVersionsRequest(), ApiVersionsResponse, version=3)
    assert stream.closed
    assert conn.closed
