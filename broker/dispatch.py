"""Routing of decoded requests to handlers, and the handler registry.

A handler is a plain function registered for one API key::

    @handler(api_key=0, min_version=3)
    def produce(rctx: RequestContext, request: ProduceRequest) -> HandlerResult: ...

It returns one of:

- a response message object: answered at once (the hot path; nothing awaits);
- :class:`Deferred`: wraps a zero-argument coroutine function that produces the
  response later (acks=all produce waiting for fsync, a long-poll Fetch, a JoinGroup
  waiting for its rebalance). The connection runs it in its own task group and still
  writes responses strictly in request order;
- :data:`NO_RESPONSE`: nothing is sent back (acks=0 produce).

Handler modules live in ``broker/handlers/`` and are discovered by
:func:`load_handlers` (every module there is imported), so adding an API is adding a
module. What ApiVersions advertises is the codec's ``supported_versions()`` intersected
with each handler's ``[min_version, max_version]`` (see :func:`advertised_versions`).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from broker.context import BrokerContext
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


HandlerResult = object  # a response message, a Deferred, or NO_RESPONSE


@dataclass(slots=True, kw_only=True)
class RequestContext:
    """What a handler knows about the request beyond its body."""

    broker: BrokerContext
    header: RequestHeader
    listener: str  # name of the listener the client connected to
    peer: str
    received_at: float  # time.perf_counter() when the frame was decoded
    # broker.security.service.ConnectionSecurity when the connection is subject to
    # authentication or authorisation; None otherwise (nothing to check).
    security: object | None = None

    @property
    def api_version(self) -> int:
        return self.header.request_api_version


HandlerFn = Callable[[RequestContext, Any], HandlerResult]


@dataclass(frozen=True, slots=True, kw_only=True)
class HandlerSpec:
    """A registered handler and the versions it implements."""

    api_key: int
    name: str
    fn: HandlerFn
    min_version: int
    max_version: int
    # ApiVersions may have to advertise a lower minimum than we accept (KAFKA-18659:
    # librdkafka requires Produce v0 in the list; Kafka 4 lists it but rejects it).
    advertise_min: int


HANDLERS: dict[int, HandlerSpec] = {}


def handler(
    *,
    api_key: int,
    name: str,
    min_version: int = 0,
    max_version: int = 32767,
    advertise_min: int | None = None,
) -> Callable[[HandlerFn], HandlerFn]:
    """Register ``fn`` as the handler of ``api_key`` for the given versions."""

    def register(fn: HandlerFn) -> HandlerFn:
        if api_key in HANDLERS and HANDLERS[api_key].fn is not fn:
            raise RuntimeError(f"two handlers for api key {api_key}")
        HANDLERS[api_key] = HandlerSpec(
            api_key=api_key,
            name=name,
            fn=fn,
            min_version=min_version,
            max_version=max_version,
            advertise_min=min_version if advertise_min is None else advertise_min,
        )
        return fn

    return register


_loaded = False


def load_handlers() -> dict[int, HandlerSpec]:
    """Import every module of ``broker.handlers`` (each registers its handler)."""
    global _loaded
    if not _loaded:
        import broker.handlers as package

        for info in sorted(
            pkgutil.iter_modules(package.__path__), key=lambda i: i.name
        ):
            if not info.name.startswith("_"):
                importlib.import_module(f"broker.handlers.{info.name}")
        _loaded = True
    return HANDLERS


def advertised_versions() -> dict[int, tuple[int, int]]:
    """API key -> (min, max) the broker advertises: codec support ∩ handlers."""
    from protocol.codec import supported_versions

    out: dict[int, tuple[int, int]] = {}
    for api_key, (low, high) in supported_versions().items():
        spec = load_handlers().get(api_key)
        if spec is None:
            continue
        lo, hi = max(low, spec.advertise_min), min(high, spec.max_version)
        if lo <= hi:
            out[api_key] = (lo, hi)
    return dict(sorted(out.items()))


def api_name(api_key: int) -> str:
    """A readable name for metrics and logs (``produce``, ``fetch``, or ``api_<n>``)."""
    spec = HANDLERS.get(api_key)
    return spec.name if spec is not None else f"api_{api_key}"


def dispatch(rctx: RequestContext, request: object) -> HandlerResult:
    """Run the handler of the request's API key.

    The connection only calls this for versions :func:`is_handled` accepts. On a
    connection with security state, the request first passes the authorisation
    hook (:func:`broker.security.authz.authorize`, which may raise
    ``AuthorizationDenied``: close the connection).
    """
    spec = HANDLERS[rctx.header.request_api_key]
    if rctx.security is not None:
        from broker.security.authz import authorize

        fn = spec.fn
        return authorize(rctx, request, lambda req: fn(rctx, req))
    return spec.fn(rctx, request)


def is_handled(api_key: int, api_version: int) -> bool:
    """Whether a handler exists and accepts this version."""
    spec = HANDLERS.get(api_key)
    return spec is not None and spec.min_version <= api_version <= spec.max_version
