"""Simple per-user ACLs and the authorizer.

The authorizer decides from two sources: the ACLs of the ACL APIs (Kafka's
bindings, :mod:`broker.security.acl_binding`, kept by an
:class:`~broker.security.acl_store.AclStore`) and the per-user rules below, each of
which stands for ALLOW bindings of ``User:<name>`` from any host.

A rule allows a user some operations on resources of one type whose name matches::

    {"resource": "topic", "name": "orders", "pattern": "literal", "operations": ["read"]}
    {"resource": "topic", "name": "logs-", "pattern": "prefixed", "operations": ["all"]}
    {"resource": "group", "name": "*", "pattern": "literal", "operations": ["read"]}

Rules live with the user in the users file (:mod:`broker.security.credentials`) and
are written by ``ailurus user grant/revoke``; the CLI spelling is
``topic:orders:read,write``, ``topic:logs-*:all`` (trailing ``*``: prefix),
``group:*:read`` (lone ``*``: any name).

Decisions, as Kafka's ``AclAuthorizer`` makes them: super users may do anything;
a matching DENY wins over any ALLOW; deny by default when authorisation is on (no
ACL, no access); DESCRIBE is implied by READ, WRITE, DELETE and ALTER, and
DESCRIBE_CONFIGS by ALTER_CONFIGS; a literal ``*`` name, the ``User:*`` principal and
the ``*`` host match any; a PREFIXED name matches every resource name that starts
with it; CREATE on the cluster implies CREATE on every topic. When authorisation is
off every request is allowed.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from broker.security.acl_binding import (
    CLUSTER_NAME,
    IMPLIED_BY,
    SUPPORTED_OPERATIONS,
    WILDCARD,
    AclBinding,
    AclOperation,
    PatternType,
    Permission,
    ResourceType,
    operations_bitfield,
)


class AclError(ValueError):
    """An ACL rule or rule spec is malformed."""


class Op(enum.StrEnum):
    READ = "read"
    WRITE = "write"
    CREATE = "create"
    DESCRIBE = "describe"
    DELETE = "delete"
    ALTER = "alter"
    ALTER_CONFIGS = "alter_configs"
    ALL = "all"


class Resource(enum.StrEnum):
    TOPIC = "topic"
    GROUP = "group"
    CLUSTER = "cluster"


@dataclass(frozen=True, slots=True, kw_only=True)
class AclRule:
    """Allow ``operations`` on ``resource`` names matching ``name``/``pattern``."""

    resource: Resource
    name: str
    pattern: str  # "literal" ("*" = any) or "prefixed"
    operations: frozenset[Op]

    def as_json(self) -> dict[str, object]:
        return {
            "resource": self.resource.value,
            "name": self.name,
            "pattern": self.pattern,
            "operations": sorted(o.value for o in self.operations),
        }

    def spec(self) -> str:
        """The CLI spelling (``topic:orders:read,write``)."""
        name = self.name + "*" if self.pattern == "prefixed" else self.name
        ops = ",".join(sorted(o.value for o in self.operations))
        return f"{self.resource.value}:{name}:{ops}"


def parse_rule(data: Mapping[str, object]) -> AclRule:
    """A rule from its stored JSON form."""
    try:
        resource = Resource(str(data["resource"]))
        name = str(data["name"])
        pattern = str(data.get("pattern", "literal"))
        raw_ops = data["operations"]
        if not isinstance(raw_ops, list | tuple):
            raise AclError("operations must be a list")
        ops = frozenset(Op(str(o)) for o in raw_ops)
    except (KeyError, ValueError) as e:
        raise AclError(f"bad ACL rule {dict(data)!r}: {e}") from e
    if pattern not in ("literal", "prefixed"):
        raise AclError(f"bad ACL pattern {pattern!r}: literal or prefixed")
    if not ops:
        raise AclError("an ACL rule needs at least one operation")
    if resource is Resource.CLUSTER:
        name, pattern = "kafka-cluster", "literal"
    elif not name:
        raise AclError("an ACL rule needs a resource name")
    return AclRule(resource=resource, name=name, pattern=pattern, operations=ops)


def parse_spec(text: str) -> AclRule:
    """A rule from its CLI spelling: ``RESOURCE:NAME:OP[,OP...]`` (``cluster:OPS`` too)."""
    parts = text.split(":")
    if len(parts) == 2 and parts[0] == "cluster":
        parts = ["cluster", "kafka-cluster", parts[1]]
    if len(parts) != 3:
        raise AclError(
            f"bad ACL {text!r}: expected resource:name:ops, e.g. topic:orders:read"
        )
    resource, name, ops = parts
    pattern = "literal"
    if name.endswith("*") and name != "*":
        name, pattern = name[:-1], "prefixed"
    return parse_rule(
        {
            "resource": resource,
            "name": name,
            "pattern": pattern,
            "operations": [o.strip().lower() for o in ops.split(",") if o.strip()],
        }
    )


class UserLookup(Protocol):
    """What the authorizer needs from the user store."""

    def get(self, name: str) -> _HasAcls | None: ...


class _HasAcls(Protocol):
    @property
    def acls(self) -> tuple[Mapping[str, object], ...]: ...


class AclSource(Protocol):
    """What the authorizer needs from the ACL store (:mod:`broker.security.acl_store`)."""

    @property
    def version(self) -> int: ...

    def bindings(self) -> Sequence[AclBinding]: ...


_OPS: Final = {
    Op.READ: AclOperation.READ,
    Op.WRITE: AclOperation.WRITE,
    Op.CREATE: AclOperation.CREATE,
    Op.DESCRIBE: AclOperation.DESCRIBE,
    Op.DELETE: AclOperation.DELETE,
    Op.ALTER: AclOperation.ALTER,
    Op.ALTER_CONFIGS: AclOperation.ALTER_CONFIGS,
    Op.ALL: AclOperation.ALL,
}
_RESOURCES: Final = {
    Resource.TOPIC: ResourceType.TOPIC,
    Resource.GROUP: ResourceType.GROUP,
    Resource.CLUSTER: ResourceType.CLUSTER,
}


def rule_bindings(user: str, rule: AclRule) -> list[AclBinding]:
    """A users-file rule as the ALLOW bindings it stands for (any host)."""
    return [
        AclBinding(
            resource_type=_RESOURCES[rule.resource],
            name=rule.name,
            pattern=PatternType.PREFIXED
            if rule.pattern == "prefixed"
            else PatternType.LITERAL,
            principal=f"User:{user}",
            host=WILDCARD,
            operation=_OPS[op],
            permission=Permission.ALLOW,
        )
        for op in sorted(rule.operations)
    ]


class _Index:
    """The bindings of one version of the ACL store, by resource."""

    __slots__ = ("literal", "prefixed")

    def __init__(self, bindings: Iterable[AclBinding]) -> None:
        self.literal: dict[tuple[ResourceType, str], list[AclBinding]] = {}
        self.prefixed: dict[ResourceType, list[AclBinding]] = {}
        for b in bindings:
            if b.pattern is PatternType.PREFIXED:
                self.prefixed.setdefault(b.resource_type, []).append(b)
            else:
                self.literal.setdefault((b.resource_type, b.name), []).append(b)

    def matching(self, rtype: ResourceType, name: str) -> list[AclBinding]:
        out = list(self.literal.get((rtype, name), ()))
        if name != WILDCARD:
            out += self.literal.get((rtype, WILDCARD), ())
        out += (b for b in self.prefixed.get(rtype, ()) if name.startswith(b.name))
        return out


def decide(
    bindings: Iterable[AclBinding], principal: str, host: str, op: AclOperation
) -> bool:
    """Kafka's decision over the bindings that cover a resource: a matching DENY
    (of ``op`` or ALL) wins; else allowed when a matching ALLOW grants ``op``, ALL
    or an operation that implies ``op``; else denied (no ACL, no access)."""
    granting = {op, AclOperation.ALL} | IMPLIED_BY.get(op, frozenset())
    allowed = False
    for b in bindings:
        if not b.applies_to_principal(principal, host):
            continue
        if b.permission is Permission.DENY:
            if b.operation is op or b.operation is AclOperation.ALL:
                return False
        elif b.operation in granting:
            allowed = True
    return allowed


class Authorizer:
    """Answers "may this user do this?" from the users file's rules and the ACL
    store's bindings; rules are parsed once per users-file version, bindings
    indexed once per store version."""

    def __init__(
        self,
        *,
        enabled: bool,
        users: UserLookup | None = None,
        super_users: Iterable[str] = (),
        acls: AclSource | None = None,
    ) -> None:
        self.enabled = enabled
        self.super_users = frozenset(super_users)
        self._users = users
        self.acls = acls
        self._cache: dict[str, tuple[object, tuple[AclBinding, ...]]] = {}
        self._index: tuple[int, _Index] | None = None

    def rules(self, user: str) -> tuple[AclBinding, ...]:
        """The ALLOW bindings of ``user``'s rules in the users file."""
        if self._users is None:
            return ()
        record = self._users.get(user)
        if record is None:
            self._cache.pop(user, None)
            return ()
        cached = self._cache.get(user)
        if cached is not None and cached[0] is record:
            return cached[1]
        parsed: list[AclBinding] = []
        for raw in record.acls:
            try:
                parsed += rule_bindings(user, parse_rule(raw))
            except AclError:
                continue  # a hand-edited bad rule grants nothing
        rules = tuple(parsed)
        self._cache[user] = (record, rules)
        return rules

    def _store_index(self) -> _Index | None:
        if self.acls is None:
            return None
        if self._index is None or self._index[0] != self.acls.version:
            bindings = self.acls.bindings()  # may load the store, bumping its version
            self._index = (self.acls.version, _Index(bindings))
        return self._index[1]

    def allows(
        self,
        user: str | None,
        host: str,
        op: AclOperation,
        rtype: ResourceType,
        name: str,
    ) -> bool:
        """Whether ``user`` (None: unauthenticated) connected from ``host`` may do
        ``op`` on the resource (Kafka's codes)."""
        if not self.enabled:
            return True
        if user is None:
            return False
        if user in self.super_users:
            return True
        if rtype is ResourceType.CLUSTER:
            name = CLUSTER_NAME
        principal = f"User:{user}"
        index = self._store_index()
        matching = [] if index is None else index.matching(rtype, name)
        matching += (b for b in self.rules(user) if b.applies_to(rtype, name))
        return decide(matching, principal, host, op)

    def allowed(
        self,
        user: str | None,
        op: Op,
        resource: Resource,
        name: str = "",
        host: str = "",
    ) -> bool:
        """Whether ``user`` (None: unauthenticated) may do ``op`` on the resource;
        CREATE on the cluster allows creating any topic (Kafka's CreateTopics)."""
        if not self.enabled:
            return True
        rtype = _RESOURCES[resource]
        if self.allows(user, host, _OPS[op], rtype, name):
            return True
        return (
            op is Op.CREATE
            and resource is Resource.TOPIC
            and self.allows(user, host, AclOperation.CREATE, ResourceType.CLUSTER, "")
        )

    def authorized_operations(
        self, user: str | None, host: str, rtype: ResourceType, name: str
    ) -> int:
        """Kafka's authorized-operations bitfield of the resource for ``user``:
        bit ``i`` set for each supported operation of code ``i`` it may do (every
        supported one when authorisation is off, as Kafka without an authorizer)."""
        supported = SUPPORTED_OPERATIONS.get(rtype, frozenset())
        return operations_bitfield(
            {op for op in supported if self.allows(user, host, op, rtype, name)}
        )
