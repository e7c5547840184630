"""Accept loops that survive accept() errors (the Kafka listeners and the admin API).

When the process runs out of descriptors (EMFILE/ENFILE), or the kernel of buffers,
``accept()`` fails while connections wait in the backlog. The loop-provided servers
handle that badly: uvloop closes the listening server for good, and an anyio
listener's ``serve()`` raises and ends its task group (for the admin API, the
process). Here an accept error is logged (``accept_failed``, with the errno) and
accepting resumes after a short back-off (10 ms, doubling to 1 s while it keeps
failing), so the listener comes back by itself once descriptors are free, as
asyncio's own selector loop does.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Final

import anyio
import anyio.abc
import structlog

log = structlog.get_logger("broker.listener")

BACKOFF_MIN_S: Final = 0.01
BACKOFF_MAX_S: Final = 1.0
BACKLOG: Final = 1024
# Connections that were reset before we got to them: retry at once, not an error.
_TRANSIENT: Final = frozenset({errno.ECONNABORTED, errno.EPROTO, errno.EINTR})


class Backoff:
    """The delay after consecutive accept errors (reset by a success)."""

    def __init__(self, listener: str) -> None:
        self.listener = listener
        self.delay = BACKOFF_MIN_S
        self.failures = 0

    async def failed(self, exc: OSError) -> None:
        """Log the error and wait before the next accept."""
        if exc.errno in _TRANSIENT:
            return
        self.failures += 1
        log.warning(
            "accept_failed",
            listener=self.listener,
            errno=errno.errorcode.get(exc.errno or 0, exc.errno),
            error=exc.strerror or str(exc),
            consecutive=self.failures,
            retry_in_s=self.delay,
        )
        await anyio.sleep(self.delay)
        self.delay = min(self.delay * 2, BACKOFF_MAX_S)

    def succeeded(self) -> None:
        if self.failures:
            log.info("accept_resumed", listener=self.listener, after=self.failures)
        self.delay = BACKOFF_MIN_S
        self.failures = 0


def bind_socket(host: str, port: int) -> socket.socket:
    """A non-blocking listening TCP socket (raises OSError)."""
    infos = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    family, kind, proto, _name, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class Acceptor:
    """Accepts connections on a listening socket until :meth:`close`."""

    def __init__(self, name: str, sock: socket.socket) -> None:
        self.name = name
        self.sock = sock
        self._scope = anyio.CancelScope()

    def close(self) -> None:
        """Stop accepting (the socket is closed when the accept loop ends)."""
        self._scope.cancel()

    async def run(self, connected: Callable[[socket.socket], Awaitable[None]]) -> None:
        """Accept and hand each socket to ``connected``; returns once closed.

        After each wake-up the backlog is drained without returning to the loop (at
        most :data:`BACKLOG` at a time, as asyncio's own servers do), so a burst of
        connections is accepted as fast as the loop-provided servers would.
        ``connected`` owns the socket; if it raises OSError the socket is closed
        and the error logged, and accepting goes on.
        """
        loop = asyncio.get_running_loop()
        backoff = Backoff(self.name)
        with self._scope:
            try:
                while True:
                    try:
                        conn, _peer = await loop.sock_accept(self.sock)
                    except OSError as exc:
                        await backoff.failed(exc)
                        continue
                    backoff.succeeded()
                    batch, error = [conn], None
                    while len(batch) < BACKLOG:
                        try:
                            conn, _peer = self.sock.accept()
                        except (BlockingIOError, InterruptedError):
                            break
                        except OSError as exc:
                            error = exc
                            break
                        batch.append(conn)
                    for conn in batch:
                        await self._hand_over(conn, connected)
                    if error is not None:
                        await backoff.failed(error)
            finally:
                self.sock.close()

    async def _hand_over(
        self,
        conn: socket.socket,
        connected: Callable[[socket.socket], Awaitable[None]],
    ) -> None:
        try:
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await connected(conn)
        except OSError as exc:
            conn.close()
            log.warning(
                "connection_setup_failed",
                listener=self.name,
                error=exc.strerror or str(exc),
            )


async def serve_listener(
    listener: anyio.abc.SocketListener,
    name: str,
    handle: Callable[[anyio.abc.SocketStream], Coroutine[Any, Any, None]],
) -> None:
    """``listener.serve`` for anyio listeners, minus the fatal accept errors; each
    connection runs ``handle`` in a task of its own."""
    backoff = Backoff(name)
    async with anyio.create_task_group() as tg:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                await backoff.failed(exc)
                continue
            backoff.succeeded()
            tg.start_soon(handle, stream)
