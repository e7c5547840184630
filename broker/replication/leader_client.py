"""An async Kafka client connection from a follower to its leader.

The replica fetcher's one socket: anyio ``connect_tcp``, requests encoded and
responses decoded by the sans-IO codec (``protocol.codec``), one request in flight
at a time (a follower sends Fetch, waits, appends, fetches again). On connect it
negotiates versions with ApiVersions, as Kafka's ``NetworkClient`` does, so each
request goes out in the highest version both sides speak.

Every failure (refused connection, reset, EOF, timeout, a frame the codec refuses)
is raised as :class:`LeaderConnectionError` and the connection is closed: the caller
reconnects with back-off.
"""

from __future__ import annotations

import struct
from typing import Final, TypeVar

import anyio
from anyio.abc import SocketStream

from protocol.codec import decode_response, encode_request, supported_versions
from protocol.errors import ProtocolError
from protocol.headers import RequestHeader
from protocol.messages.api_versions import ApiVersionsRequest, ApiVersionsResponse
from protocol.schema import message_spec

R = TypeVar("R")

_SIZE: Final = struct.Struct(">i")
_API_VERSIONS: Final = 18
_MAX_API_VERSIONS_VERSION: Final = 3
_UNSUPPORTED_VERSION: Final = 35


class LeaderConnectionError(Exception):
    """The connection to the leader failed or the leader answered nonsense."""


class LeaderConnection:
    """One TCP connection to a leader, with negotiated API versions."""

    def __init__(
        self,
        stream: SocketStream,
        *,
        address: str,
        client_id: str,
        timeout_s: float,
        max_frame_bytes: int,
    ) -> None:
        self.address = address
        self.client_id = client_id
        self.timeout_s = timeout_s
        self.max_frame_bytes = max_frame_bytes
        self.versions: dict[int, int] = {}
        self._stream = stream
        self._correlation_id = 0
        self.closed = False

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        *,
        client_id: str,
        timeout_s: float = 10.0,
        max_frame_bytes: int = 256 * 1024 * 1024,
    ) -> LeaderConnection:
        """Connect and negotiate API versions.

        Raises:
            LeaderConnectionError: the connection or the negotiation failed.
        """
        address = f"{host}:{port}"
        try:
            with anyio.fail_after(timeout_s):
                stream = await anyio.connect_tcp(host, port)
        except (OSError, TimeoutError) as exc:
            raise LeaderConnectionError(f"connecting to {address}: {exc}") from exc
        conn = cls(
            stream,
            address=address,
            client_id=client_id,
            timeout_s=timeout_s,
            max_frame_bytes=max_frame_bytes,
        )
        try:
            await conn._negotiate()
        except BaseException:
            await conn.aclose()
            raise
        return conn

    async def aclose(self) -> None:
        """Close the socket (idempotent)."""
        if not self.closed:
            self.closed = True
            with anyio.CancelScope(shield=True):
                await self._stream.aclose()

    def version(self, api_key: int) -> int | None:
        """The highest version of ``api_key`` both sides speak (None: none)."""
        return self.versions.get(api_key)

    async def request(
        self,
        request: object,
        response_type: type[R],
        *,
        version: int,
        timeout_s: float | None = None,
    ) -> R:
        """Send ``request`` in ``version`` and return its decoded response.

        ``timeout_s`` bounds the exchange (default: the connection's timeout; a
        Fetch long poll passes its max wait plus the connection timeout).

        Raises:
            LeaderConnectionError: the exchange failed; the connection is closed.
        """
        if self.closed:
            raise LeaderConnectionError(f"connection to {self.address} is closed")
        api_key = message_spec(type(request)).api_key
        self._correlation_id += 1
        header = RequestHeader(
            request_api_key=api_key,
            request_api_version=version,
            correlation_id=self._correlation_id,
            client_id=self.client_id,
        )
        try:
            with anyio.fail_after(self.timeout_s if timeout_s is None else timeout_s):
                await self._stream.send(encode_request(header, request))
                (size,) = _SIZE.unpack(await self._receive_exactly(4))
                if size < 0 or size > self.max_frame_bytes:
                    raise LeaderConnectionError(
                        f"{self.address} sent a frame of {size} bytes"
                    )
                frame = await self._receive_exactly(size)
            rheader, response = decode_response(api_key, version, frame)
        except LeaderConnectionError:
            await self.aclose()
            raise
        except (
            OSError,
            TimeoutError,
            anyio.EndOfStream,
            anyio.BrokenResourceError,
            anyio.ClosedResourceError,
            anyio.IncompleteRead,
            ProtocolError,
        ) as exc:
            await self.aclose()
            raise LeaderConnectionError(
                f"{type(request).__name__} v{version} to {self.address}: "
                f"{type(exc).__name__} {exc}"
            ) from exc
        if rheader.correlation_id != self._correlation_id or not isinstance(
            response, response_type
        ):
            await self.aclose()
            raise LeaderConnectionError(f"{self.address} answered out of step")
        return response

    async def _receive_exactly(self, size: int) -> bytearray:
        """The next ``size`` bytes of the stream, copied once into one buffer (a
        Fetch answer is megabytes: growing a buffer chunk by chunk and slicing it
        off copied each byte three times).

        Raises:
            anyio.IncompleteRead: the leader closed the connection first.
        """
        frame = bytearray(size)
        view = memoryview(frame)
        got = 0
        while got < size:
            try:
                chunk = await self._stream.receive(size - got)
            except anyio.EndOfStream as exc:
                raise anyio.IncompleteRead from exc
            view[got : got + len(chunk)] = chunk
            got += len(chunk)
        return frame

    async def _negotiate(self) -> None:
        ours = supported_versions()
        low, high = ours[_API_VERSIONS]
        version = min(high, _MAX_API_VERSIONS_VERSION)
        response = await self.request(
            ApiVersionsRequest(
                client_software_name="ailurus-replica", client_software_version="1"
            ),
            ApiVersionsResponse,
            version=version,
        )
        if response.error_code == _UNSUPPORTED_VERSION and version > low:
            # KIP-511: an unknown ApiVersions version is answered in v0's format.
            response = await self.request(
                ApiVersionsRequest(), ApiVersionsResponse, version=0
            )
        if response.error_code:
            await self.aclose()
            raise LeaderConnectionError(
                f"ApiVersions to {self.address}: error {response.error_code}"
            )
        for entry in response.api_keys:
            if entry.api_key in ours:
                our_low, our_high = ours[entry.api_key]
                best = min(our_high, entry.max_version)
                if best >= max(our_low, entry.min_version):
                    self.versions[entry.api_key] = best
