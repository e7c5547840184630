"""An async Kafka client connection from a follower to its leader.

The replica fetcher's one socket: an asyncio connection whose protocol reads each
answer straight into its own buffer (:mod:`broker.replication.frames`), requests
encoded and responses decoded by the sans-IO codec (``protocol.codec``), one
request in flight at a time (a follower sends Fetch, waits, appends, fetches
again). On connect it
negotiates versions with ApiVersions, as Kafka's ``NetworkClient`` does, so each
request goes out in the highest version both sides speak.

Every failure (refused connection, reset, EOF, timeout, a frame the codec refuses)
is raised as :class:`LeaderConnectionError` and the connection is closed: the caller
reconnects with back-off.
"""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from typing import Final, TypeVar

import anyio

from broker.replication.frames import FrameError, FrameProtocol
from protocol.codec import decode_response, encode_request, supported_versions
from protocol.errors import ProtocolError
from protocol.headers import RequestHeader
from protocol.messages.api_versions import ApiVersionsRequest, ApiVersionsResponse
from protocol.schema import message_spec

R = TypeVar("R")

_API_VERSIONS: Final = 18
_MAX_API_VERSIONS_VERSION: Final = 3
_UNSUPPORTED_VERSION: Final = 35


class LeaderConnectionError(Exception):
    """The connection to the leader failed or the leader answered nonsense."""


class LeaderConnection:
    """One TCP connection to a leader, with negotiated API versions."""

    def __init__(
        self,
        frames: FrameProtocol,
        *,
        address: str,
        client_id: str,
        timeout_s: float,
    ) -> None:
        self.address = address
        self.client_id = client_id
        self.timeout_s = timeout_s
        self.versions: dict[int, int] = {}
        self._frames = frames
        self._correlation_id = 0
        self._awaited: deque[tuple[int, int, int]] = deque()  # sent, not answered
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
        loop = asyncio.get_running_loop()
        try:
            with anyio.fail_after(timeout_s):
                transport, frames = await loop.create_connection(
                    lambda: FrameProtocol(max_frame_bytes), host, port
                )
        except (OSError, TimeoutError) as exc:
            raise LeaderConnectionError(f"connecting to {address}: {exc}") from exc
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = cls(frames, address=address, client_id=client_id, timeout_s=timeout_s)
        try:
            await conn._negotiate()
        except BaseException:
            await conn.aclose()
            raise
        return conn

    async def aclose(self) -> None:
        """Close the socket (idempotent)."""
        self._close()

    def _close(self) -> None:
        if not self.closed:
            self.closed = True
            self._frames.close()

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
        self.send(request, version=version)
        return await self.receive(response_type, timeout_s=timeout_s)

    def send(self, request: object, *, version: int) -> None:
        """Send ``request`` in ``version``; :meth:`receive` reads the answers in the
        order the requests went out (a follower may send its next Fetch before it
        has appended the last answer).

        Raises:
            LeaderConnectionError: the connection is closed or failed.
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
            self._frames.write(encode_request(header, request))
        except (OSError, FrameError) as exc:
            self._close()
            raise LeaderConnectionError(
                f"{type(request).__name__} v{version} to {self.address}: "
                f"{type(exc).__name__} {exc}"
            ) from exc
        self._awaited.append((self._correlation_id, api_key, version))

    async def receive(
        self, response_type: type[R], *, timeout_s: float | None = None
    ) -> R:
        """The answer to the oldest request sent and not yet received.

        Raises:
            LeaderConnectionError: the exchange failed; the connection is closed.
        """
        if self.closed or not self._awaited:
            raise LeaderConnectionError(f"connection to {self.address} is closed")
        correlation_id, api_key, version = self._awaited.popleft()
        try:
            with anyio.fail_after(self.timeout_s if timeout_s is None else timeout_s):
                frame = await self._frames.next_frame()
            rheader, response = decode_response(api_key, version, frame)
        except (OSError, TimeoutError, FrameError, ProtocolError) as exc:
            self._close()
            raise LeaderConnectionError(
                f"{response_type.__name__} v{version} from {self.address}: "
                f"{type(exc).__name__} {exc}"
            ) from exc
        if rheader.correlation_id != correlation_id or not isinstance(
            response, response_type
        ):
            self._close()
            raise LeaderConnectionError(f"{self.address} answered out of step")
        return response

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
