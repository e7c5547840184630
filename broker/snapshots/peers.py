"""Calls to another broker's admin API (cluster mode): JSON requests and uploads.

A broker finds a peer's admin address (``host:port``) in the peer's registration
(``brokers/{id}`` in etcd, :class:`broker.cluster.model.BrokerInfo`) and speaks the
same HTTP/1.1 the admin server does: one request per connection, ``Connection:
close``, the broker's own admin token as bearer (a cluster shares one token). Used
for snapshots: ``create`` asks each partition's leader to cut it
(broker.snapshots.routing) and a non-leader hands a dropped-in snapshot to the
leader (broker.snapshots.handover).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import anyio
import anyio.abc

_MAX_RESPONSE = 64 * 1024 * 1024


class PeerError(Exception):
    """A peer's admin API refused or could not be reached; ``status`` 0 when no
    HTTP answer came."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _split(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise PeerError(0, f"bad admin address {address!r}")
    return host.strip("[]"), int(port)


def _head(
    method: str, path: str, address: str, length: int, token: str | None, kind: str
) -> bytes:
    lines = [
        f"{method} {path} HTTP/1.1",
        f"Host: {address}",
        f"Content-Type: {kind}",
        f"Content-Length: {length}",
        "Connection: close",
    ]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _response(stream: anyio.abc.ByteStream) -> object:
    buf = bytearray()
    while True:
        try:
            buf += await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            break
        if len(buf) > _MAX_RESPONSE:
            raise PeerError(0, "answer too large")
    head, sep, body = bytes(buf).partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split(b" ")
    if not sep or len(status_line) < 2 or not status_line[1].isdigit():
        raise PeerError(0, "the peer does not speak the admin API")
    status = int(status_line[1])
    try:
        value = json.loads(body or b"null")
    except ValueError:
        value = None
    if status != 200:
        message = value.get("error") if isinstance(value, dict) else None
        raise PeerError(status, str(message or f"HTTP {status}"))
    return value


async def peer_request(
    address: str,
    method: str,
    path: str,
    body: object | None = None,
    *,
    token: str | None,
    timeout_s: float = 60,
) -> object:
    """One JSON call to the admin API at ``address``; the decoded answer.

    Raises:
        PeerError: unreachable, timed out, or answered other than 200.
    """
    host, port = _split(address)
    data = b"" if body is None else json.dumps(body).encode()
    try:
        with anyio.fail_after(timeout_s):
            async with await anyio.connect_tcp(host, port) as stream:
                head = _head(
                    method, path, address, len(data), token, "application/json"
                )
                await stream.send(head + data)
                return await _response(stream)
    except TimeoutError:
        raise PeerError(0, f"{address}: no answer within {timeout_s:g}s") from None
    except OSError as exc:
        raise PeerError(0, f"{address} unreachable: {exc}") from None


async def peer_upload(
    address: str,
    path: str,
    length: int,
    parts: AsyncIterator[bytes],
    *,
    token: str | None,
    timeout_s: float,
) -> object:
    """Stream a body of exactly ``length`` bytes from ``parts``; the decoded answer.

    Raises:
        PeerError: unreachable, timed out, or answered other than 200.
    """
    host, port = _split(address)
    try:
        with anyio.fail_after(timeout_s):
            async with await anyio.connect_tcp(host, port) as stream:
                head = _head(
                    "PUT", path, address, length, token, "application/octet-stream"
                )
                await stream.send(head)
                sent = 0
                async for chunk in parts:
                    sent += len(chunk)
                    if sent > length:
                        raise PeerError(0, "upload longer than announced")
                    await stream.send(chunk)
                if sent != length:
                    raise PeerError(0, "upload shorter than announced")
                return await _response(stream)
    except TimeoutError:
        raise PeerError(0, f"{address}: no answer within {timeout_s:g}s") from None
    except (OSError, anyio.BrokenResourceError) as exc:
        raise PeerError(0, f"{address} unreachable: {exc}") from None
