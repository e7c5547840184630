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

Handler modules live in ``broker/handlers/``, one per API, named as the handler.
A module (and the message schemas it imports) is imported on the first request of
its API key through the static index :data:`HANDLER_MODULES`, so start-up imports
none of them; :func:`load_handlers` imports them all (tests, tools). What ApiVersions
advertises is the codec's ``supported_versions()`` intersected with each handler's
``[advertise_min, max_version]``, kept as the static table :data:`ADVERTISED` so that
answering ApiVersions loads nothing; ``tests/broker/test_dispatch_index.py`` checks
both tables against the registered handlers. Adding an API is adding a module and
its rows here.

:class:`Dispatcher` routes a request to its handler, through the middleware the
server gives it (authorisation, when security enforces something); this module
knows nothing of security.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from broker.net.request import Handler, HandlerResult, Middleware, RequestContext
from protocol.codec import supported_versions
from protocol.messages import MODULES


@dataclass(frozen=True, slots=True, kw_only=True)
class HandlerSpec:
    """A registered handler and the versions it implements."""

    api_key: int
    name: str
    fn: Handler
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
) -> Callable[[Handler], Handler]:
    """Register ``fn`` as the handler of ``api_key`` for the given versions."""

    def register(fn: Handler) -> Handler:
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


# api_key -> (min, max) advertised: codec support ∩ [advertise_min, max_version].
ADVERTISED: Final[dict[int, tuple[int, int]]] = {
    0: (0, 13),
    1: (4, 18),
    2: (1, 11),
    3: (0, 13),
    8: (0, 9),
    9: (0, 9),
    10: (0, 6),
    11: (0, 9),
    12: (0, 4),
    13: (0, 5),
    14: (0, 5),
    15: (0, 6),
    16: (0, 5),
    17: (1, 1),
    18: (0, 4),
    19: (0, 7),
    20: (0, 6),
    21: (0, 2),
    22: (0, 5),
    24: (0, 3),
    25: (0, 3),
    26: (0, 3),
    23: (0, 4),
    27: (0, 1),
    28: (0, 4),
    29: (0, 3),
    30: (0, 3),
    31: (0, 3),
    32: (0, 4),
    33: (0, 2),
    35: (0, 4),
    36: (0, 2),
    37: (0, 3),
    42: (0, 2),
    43: (0, 2),
    44: (0, 1),
    45: (0, 0),
    46: (0, 0),
    47: (0, 0),
    48: (0, 1),
    50: (0, 0),
    51: (0, 0),
    60: (0, 2),
    61: (0, 0),
    75: (0, 0),
}

# api_key -> module of broker.handlers registering its handler: each handler module is
# named after the message module of its API (broker/handlers/produce.py serves
# protocol/messages/produce.py), so the table is the messages' index restricted to the
# APIs we advertise.
HANDLER_MODULES: Final[dict[int, str]] = {key: MODULES[key] for key in ADVERTISED}


def _spec(api_key: int) -> HandlerSpec | None:
    """The handler of ``api_key``, importing its module on first use."""
    spec = HANDLERS.get(api_key)
    if spec is None and api_key in HANDLER_MODULES:
        importlib.import_module(f"broker.handlers.{HANDLER_MODULES[api_key]}")
        spec = HANDLERS.get(api_key)
    return spec


_loaded = False


def load_handlers() -> dict[int, HandlerSpec]:
    """Import every handler module of :data:`HANDLER_MODULES` (each registers its handler).

    The server does not call this: a handler module loads on the first request of
    its API key. Tests and tools call it to see the whole registry.
    """
    global _loaded
    if not _loaded:
        for module in sorted(set(HANDLER_MODULES.values())):
            importlib.import_module(f"broker.handlers.{module}")
        _loaded = True
    return HANDLERS


def advertised_versions() -> dict[int, tuple[int, int]]:
    """API key -> (min, max) the broker advertises (the static :data:`ADVERTISED`)."""
    return dict(ADVERTISED)


def computed_advertised_versions() -> dict[int, tuple[int, int]]:
    """What :data:`ADVERTISED` must equal: codec support ∩ every loaded handler."""
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
    if spec is not None:
        return spec.name
    return HANDLER_MODULES.get(api_key, f"api_{api_key}")


class Dispatcher:
    """Routes a request to the handler of its API key, through the middleware if any.

    A middleware is called as ``middleware(rctx, request, call)`` and runs the rest
    of the chain (ending in the handler) with ``call(rctx, request)``; the first in
    the sequence is the outermost. :attr:`route` is a plain function chosen once,
    here: without middleware it is the handler lookup itself, so the hot path pays
    no chain and no extra call (calling an instance's ``__call__`` costs more than a
    function call; the connection calls :attr:`route`). The connection calls it only
    for versions :func:`is_handled` accepts.
    """

    __slots__ = ("middleware", "route")

    def __init__(self, middleware: Sequence[Middleware] = ()) -> None:
        self.middleware: tuple[Middleware, ...] = tuple(middleware)
        self.route: Callable[[RequestContext, object], HandlerResult] = (
            _chain(self.middleware) if self.middleware else _direct
        )

    def __call__(self, rctx: RequestContext, request: object) -> HandlerResult:
        return self.route(rctx, request)


def _direct(rctx: RequestContext, request: object) -> HandlerResult:
    spec = HANDLERS.get(rctx.header.request_api_key) or _spec(
        rctx.header.request_api_key
    )
    assert spec is not None  # the connection checked is_handled first
    return spec.fn(rctx, request)


def _chain(
    middleware: tuple[Middleware, ...],
) -> Callable[[RequestContext, object], HandlerResult]:
    """The first middleware, then the rest, then the handler."""
    outer, rest = middleware[0], middleware[1:]
    # api_key -> what the outermost middleware calls (the rest of the chain)
    inners: dict[int, Handler] = {}

    def chained(rctx: RequestContext, request: object) -> HandlerResult:
        api_key = rctx.header.request_api_key
        inner = inners.get(api_key)
        if inner is None:
            spec = HANDLERS.get(api_key) or _spec(api_key)
            assert spec is not None  # the connection checked is_handled first
            inner = spec.fn
            for m in reversed(rest):
                inner = _wrap(m, inner)
            inners[api_key] = inner
        return outer(rctx, request, inner)

    return chained


def _wrap(middleware: Middleware, call: Handler) -> Handler:
    def wrapped(rctx: RequestContext, request: object) -> HandlerResult:
        return middleware(rctx, request, call)

    return wrapped


def is_handled(api_key: int, api_version: int) -> bool:
    """Whether a handler exists and accepts this version (loading it on first use)."""
    spec = HANDLERS.get(api_key) or _spec(api_key)
    return spec is not None and spec.min_version <= api_version <= spec.max_version
