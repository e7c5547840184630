"""Simple per-user ACLs and the authorizer.

A rule allows a user some operations on resources of one type whose name matches::

    {"resource": "topic", "name": "orders", "pattern": "literal", "operations": ["read"]}
    {"resource": "topic", "name": "logs-", "pattern": "prefixed", "operations": ["all"]}
    {"resource": "group", "name": "*", "pattern": "literal", "operations": ["read"]}

Rules live with the user in the users file (:mod:`broker.security.credentials`) and
are written by ``ailurus user grant/revoke``; the CLI spelling is
``topic:orders:read,write``, ``topic:logs-*:all`` (trailing ``*``: prefix),
``group:*:read`` (lone ``*``: any name).

Decisions, as Kafka's ``AclAuthorizer`` makes them: deny by default when
authorisation is on (there are no deny rules); super users may do anything;
DESCRIBE is implied by READ, WRITE, DELETE, ALTER and ALTER_CONFIGS; CREATE on the cluster implies
CREATE on every topic. When authorisation is off every request is allowed.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Protocol


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


_IMPLIES_DESCRIBE: Final = frozenset(
    {Op.READ, Op.WRITE, Op.DELETE, Op.ALTER, Op.ALTER_CONFIGS}
)


@dataclass(frozen=True, slots=True, kw_only=True)
class AclRule:
    """Allow ``operations`` on ``resource`` names matching ``name``/``pattern``."""

    resource: Resource
    name: str
    pattern: str  # "literal" ("*" = any) or "prefixed"
    operations: frozenset[Op]

    def matches(self, resource: Resource, name: str) -> bool:
        if resource is not self.resource:
            return False
        if self.pattern == "prefixed":
            return name.startswith(self.name)
        return self.name in ("*", name)

    def grants(self, op: Op) -> bool:
        ops = self.operations
        return (
            Op.ALL in ops
            or op in ops
            or (op is Op.DESCRIBE and not ops.isdisjoint(_IMPLIES_DESCRIBE))
        )

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


class Authorizer:
    """Answers "may this user do this?"; rules are parsed once per users-file version."""

    def __init__(
        self,
        *,
        enabled: bool,
        users: UserLookup | None = None,
        super_users: Iterable[str] = (),
    ) -> None:
        self.enabled = enabled
        self.super_users = frozenset(super_users)
        self._users = users
        self._cache: dict[str, tuple[object, tuple[AclRule, ...]]] = {}

    def rules(self, user: str) -> tuple[AclRule, ...]:
        if self._users is None:
            return ()
        record = self._users.get(user)
        if record is None:
            self._cache.pop(user, None)
            return ()
        cached = self._cache.get(user)
        if cached is not None and cached[0] is record:
            return cached[1]
        parsed = []
        for raw in record.acls:
            try:
                parsed.append(parse_rule(raw))
            except AclError:
                continue  # a hand-edited bad rule grants nothing
        rules = tuple(parsed)
        self._cache[user] = (record, rules)
        return rules

    def allowed(
        self, user: str | None, op: Op, resource: Resource, name: str = ""
    ) -> bool:
        """Whether ``user`` (None: unauthenticated) may do ``op`` on the resource."""
        if not self.enabled:
            return True
        if user is None:
            return False
        if user in self.super_users:
            return True
        if resource is Resource.CLUSTER:
            name = "kafka-cluster"
        rules = self.rules(user)
        if any(r.matches(resource, name) and r.grants(op) for r in rules):
            return True
        return (
            op is Op.CREATE
            and resource is Resource.TOPIC
            and any(
                r.matches(Resource.CLUSTER, "kafka-cluster") and r.grants(Op.CREATE)
                for r in rules
            )
        )
