"""The request contract between the connection, dispatch and the handlers.

A handler is a plain function of a :class:`RequestContext` and the decoded request.
It returns one of:

- a response message object: answered at once (the hot path; nothing awaits);
- :class:`Deferred`: wraps a zero-argument coroutine function that produces the
  response later (acks=all produce waiting for fsync, a long-poll Fetch, a JoinGroup
  waiting for its rebalance). The connection runs it in its own task group and still
  writes responses strictly in request order;
- :data:`NO_RESPONSE`: nothing is sent back (acks=0 produce).

A :data:`Middleware` wraps every handler call (the server composes them into the
dispatcher: authorisation when security enforces something). A handler or a
middleware raises :class:`CloseConnection` for a request that has no error response:
the connection logs the exception's ``event`` and closes.

This module is a leaf: it imports only the standard library, the error codes and
the request header, so every layer that needs these types can import it without closing a cycle.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Final, TypeAlias

from protocol.error_codes import ErrorCode

if TYPE_CHECKING:
    from broker.context import BrokerContext
    from broker.security.session import ConnectionSecurity
    from protocol.headers import RequestHeader


class _NoResponse:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NO_RESPONSE"


NO_RESPONSE: Final = _NoResponse()


@dataclass(frozen=True, slots=True)
class Deferred:
    """A response that needs awaiting; ``run`` is called once, in the connection's task group."""

    run: Callable[[], Awaitable[object]]
    # True: run after this connection's earlier serial deferreds, one at a time on one
    # runner task (acks=all produce), so appends to a partition keep request order.
    serial: bool = False


HandlerResult: TypeAlias = object  # a response message, a Deferred, or NO_RESPONSE


@dataclass(slots=True, kw_only=True)
class RequestContext:
    """What a handler knows about the request beyond its body."""

    broker: BrokerContext
    header: RequestHeader
    listener: str  # name of the listener the client connected to
    peer: str
    received_at: float  # time.perf_counter() when the frame was decoded
    # Set when the connection is subject to authentication or authorisation;
    # None otherwise (nothing to check).
    security: ConnectionSecurity | None = None

    @property
    def api_version(self) -> int:
        return self.header.request_api_version

    def coordinates(self, group_id: str) -> bool:
        """Whether this broker coordinates ``group_id`` (always on a single node; in
        cluster mode when it leads the group's ``__consumer_offsets`` partition).
        The group APIs answer NOT_COORDINATOR (16) when it does not: the one check
        they share."""
        view = self.broker.cluster
        return view.group_coordinator(group_id) == view.node_id

    def group_refusal(self, group_id: str) -> ErrorCode:
        """Why the group APIs cannot serve ``group_id`` here, NONE when they can:
        NOT_COORDINATOR (16) when another broker coordinates it,
        COORDINATOR_LOAD_IN_PROGRESS (14) while this broker, its new coordinator,
        loads its committed offsets (cluster mode)."""
        if not self.coordinates(group_id):
            return ErrorCode.NOT_COORDINATOR
        return self.broker.groups.refusal(group_id)


Handler: TypeAlias = Callable[[RequestContext, Any], HandlerResult]
Middleware: TypeAlias = Callable[[RequestContext, Any, Handler], HandlerResult]


class CloseConnection(Exception):
    """The request has no error response: log ``event`` and close (Kafka does the same)."""

    event: ClassVar[str] = "request_refused"
