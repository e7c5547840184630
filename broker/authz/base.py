"""Shared pieces of the authorisation middleware: the checker and the adapter outcomes.

An adapter (one per API key, in :mod:`broker.authz.topics` and
:mod:`broker.authz.groups`) looks at a request with a :class:`Checker` and
returns :class:`Respond` (answer at once, the handler is not called) or
:class:`Forward` (call the handler with this request, then ``merge`` the denied
parts' errors into its response).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from types import ModuleType
from typing import Any, Final

from broker.net.request import RequestContext
from broker.security.acl import Op, Resource
from broker.security.acl_binding import AclOperation, ResourceType
from broker.security.service import SecurityService
from broker.security.session import ConnectionSecurity
from broker.topics.service import TopicService
from protocol.error_codes import ErrorCode

TOPIC_DENIED: Final = ErrorCode.TOPIC_AUTHORIZATION_FAILED
GROUP_DENIED: Final = ErrorCode.GROUP_AUTHORIZATION_FAILED
CLUSTER_DENIED: Final = ErrorCode.CLUSTER_AUTHORIZATION_FAILED
DENIED_MESSAGE: Final = "Authorization failed."


@dataclass(frozen=True, slots=True)
class Respond:
    response: object


@dataclass(frozen=True, slots=True)
class Forward:
    request: object
    merge: Callable[[Any], object] | None = None


Outcome = Respond | Forward


@dataclass(frozen=True, slots=True)
class Checker:
    svc: SecurityService
    conn: ConnectionSecurity | None
    rctx: RequestContext
    topics: TopicService

    @property
    def version(self) -> int:
        return self.rctx.api_version

    def may(self, op: Op, resource: Resource, name: str = "") -> bool:
        return self.svc.allowed(self.conn, op, resource, name)

    def may_kafka(self, op: AclOperation, rtype: ResourceType, name: str = "") -> bool:
        """``may`` for the operations only Kafka ACLs name (DESCRIBE_CONFIGS, ...)."""
        return self.svc.allows(self.conn, op, rtype, name)

    def super_user(self) -> bool:
        """Whether the principal is a super user (or nothing is enforced)."""
        authorizer = self.svc.authorizer
        if not authorizer.enabled:
            return True
        principal = None if self.conn is None else self.conn.principal
        return principal is not None and principal in authorizer.super_users

    def topic(self, op: Op, name: str | None, topic_id: bytes = b"") -> bool:
        """Topic check by name, or by id (unknown ids pass: the handler answers)."""
        if name is None or (not name and topic_id):
            name = self.topic_name(topic_id)
            if name is None:
                return True
        return self.may(op, Resource.TOPIC, name)

    def topic_name(self, topic_id: bytes) -> str | None:
        meta = self.topics.find_by_id(topic_id)
        return None if meta is None else meta.name


def split(
    items: tuple[Any, ...], allowed: Callable[[Any], bool]
) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    ok = tuple(i for i in items if allowed(i))
    return ok, tuple(i for i in items if not allowed(i))


def partial(
    request: object,
    field: str,
    ok: tuple[Any, ...],
    denied_response: tuple[Any, ...],
    response_field: str,
    all_denied: Callable[[], object],
) -> Outcome:
    """Forward the allowed items and append the denied items' results."""
    if not denied_response:
        return Forward(request)
    if not ok:
        return Respond(all_denied())

    def merge(resp: Any) -> object:
        return replace(
            resp, **{response_field: getattr(resp, response_field) + denied_response}
        )

    return Forward(replace(request, **{field: ok}), merge)  # type: ignore[type-var]


Adapter = Callable[[Checker, Any], Outcome]


class LazyModule:
    """A module imported on first attribute access (message schemas load on first use).

    The adapters name message classes as ``pr.ProduceRequest``; importing every
    message module when the broker starts costs ~150 ms, so the adapter modules bind
    these proxies at run time (the real modules under ``TYPE_CHECKING``).
    """

    __slots__ = ("_module", "_name")

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:
        module = self._module
        if module is None:
            module = self._module = importlib.import_module(self._name)
        return getattr(module, attr)
