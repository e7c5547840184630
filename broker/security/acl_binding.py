"""Kafka's ACL model: bindings, filters and the codes the ACL APIs carry.

An :class:`AclBinding` is Kafka's ``AclBinding``: a resource pattern (type, name,
LITERAL or PREFIXED) and an entry (principal ``User:name`` or ``User:*``, host ``*``
or an address, operation, ALLOW or DENY). An :class:`AclFilter` is Kafka's
``AclBindingFilter`` (``ResourcePatternFilter.matches``, ``AccessControlEntryFilter
.matches``): ANY matches every value, a null name/principal/host matches any, and
the MATCH pattern type matches the bindings that would apply to the named resource
(the literal name, the ``*`` wildcard, every prefix of it).

The codes are Kafka's (``ResourceType``, ``PatternType``, ``AclOperation``,
``AclPermissionType``); :data:`SUPPORTED_OPERATIONS` is Kafka's
``AclEntry.supportedOperations``, what an authorized-operations bitfield reports per
resource type (bit ``i`` set for operation code ``i``). Pure: no I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final


class AclBindingError(ValueError):
    """A binding or filter is malformed (the APIs answer INVALID_REQUEST)."""


class ResourceType(enum.IntEnum):
    UNKNOWN = 0
    ANY = 1
    TOPIC = 2
    GROUP = 3
    CLUSTER = 4
    TRANSACTIONAL_ID = 5
    DELEGATION_TOKEN = 6
    USER = 7


class PatternType(enum.IntEnum):
    UNKNOWN = 0
    ANY = 1
    MATCH = 2
    LITERAL = 3
    PREFIXED = 4


class AclOperation(enum.IntEnum):
    UNKNOWN = 0
    ANY = 1
    ALL = 2
    READ = 3
    WRITE = 4
    CREATE = 5
    DELETE = 6
    ALTER = 7
    DESCRIBE = 8
    CLUSTER_ACTION = 9
    DESCRIBE_CONFIGS = 10
    ALTER_CONFIGS = 11
    IDEMPOTENT_WRITE = 12
    CREATE_TOKENS = 13
    DESCRIBE_TOKENS = 14


class Permission(enum.IntEnum):
    UNKNOWN = 0
    ANY = 1
    DENY = 2
    ALLOW = 3


CLUSTER_NAME: Final = "kafka-cluster"  # the one name of the CLUSTER resource
WILDCARD: Final = "*"  # a literal resource name, principal name or host for "any"
WILDCARD_PRINCIPAL: Final = "User:*"

_O = AclOperation
# Kafka's AclEntry.supportedOperations, per resource type.
SUPPORTED_OPERATIONS: Final[Mapping[ResourceType, frozenset[AclOperation]]] = {
    ResourceType.TOPIC: frozenset(
        {_O.READ, _O.WRITE, _O.CREATE, _O.DESCRIBE, _O.DELETE, _O.ALTER}
        | {_O.DESCRIBE_CONFIGS, _O.ALTER_CONFIGS}
    ),
    ResourceType.GROUP: frozenset({_O.READ, _O.DESCRIBE, _O.DELETE}),
    ResourceType.CLUSTER: frozenset(
        {_O.CREATE, _O.CLUSTER_ACTION, _O.DESCRIBE_CONFIGS, _O.ALTER_CONFIGS}
        | {_O.IDEMPOTENT_WRITE, _O.ALTER, _O.DESCRIBE}
    ),
    ResourceType.TRANSACTIONAL_ID: frozenset({_O.DESCRIBE, _O.WRITE}),
    ResourceType.DELEGATION_TOKEN: frozenset({_O.DESCRIBE}),
    ResourceType.USER: frozenset({_O.CREATE_TOKENS, _O.DESCRIBE_TOKENS}),
}

# What an ALLOW of the key also allows (Kafka's AclAuthorizer: READ, WRITE, DELETE
# and ALTER imply DESCRIBE; ALTER_CONFIGS implies DESCRIBE_CONFIGS). A DENY denies
# only its own operation (and ALL denies everything).
IMPLIED_BY: Final[Mapping[AclOperation, frozenset[AclOperation]]] = {
    _O.DESCRIBE: frozenset({_O.READ, _O.WRITE, _O.DELETE, _O.ALTER}),
    _O.DESCRIBE_CONFIGS: frozenset({_O.ALTER_CONFIGS}),
}

_CONCRETE_PATTERNS: Final = (PatternType.LITERAL, PatternType.PREFIXED)


def _enum_name(value: enum.IntEnum) -> str:
    return value.name.lower()


@dataclass(frozen=True, slots=True, kw_only=True)
class AclBinding:
    """One ACL: who may (or may not) do what on which resources, from where."""

    resource_type: ResourceType
    name: str
    pattern: PatternType  # LITERAL or PREFIXED
    principal: str  # "User:alice" or "User:*"
    host: str  # "*" or an address
    operation: AclOperation
    permission: Permission  # ALLOW or DENY

    def applies_to(self, resource_type: ResourceType, name: str) -> bool:
        """Whether the binding's pattern covers the resource ``name``."""
        if resource_type != self.resource_type:
            return False
        if self.pattern is PatternType.PREFIXED:
            return name.startswith(self.name)
        return self.name == name or self.name == WILDCARD

    def applies_to_principal(self, principal: str, host: str) -> bool:
        """Whether the entry covers ``principal`` (``User:name``) from ``host``."""
        return (
            self.principal == principal or self.principal == WILDCARD_PRINCIPAL
        ) and (self.host == WILDCARD or self.host == host)

    def as_json(self) -> dict[str, str]:
        return {
            "resource_type": _enum_name(self.resource_type),
            "name": self.name,
            "pattern": _enum_name(self.pattern),
            "principal": self.principal,
            "host": self.host,
            "operation": _enum_name(self.operation),
            "permission": _enum_name(self.permission),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> AclBinding:
        """A binding from :meth:`as_json`'s form (raises AclBindingError)."""
        try:
            return make_binding(
                resource_type=ResourceType[str(data["resource_type"]).upper()],
                name=str(data["name"]),
                pattern=PatternType[str(data["pattern"]).upper()],
                principal=str(data["principal"]),
                host=str(data["host"]),
                operation=AclOperation[str(data["operation"]).upper()],
                permission=Permission[str(data["permission"]).upper()],
            )
        except KeyError as e:
            raise AclBindingError(f"bad ACL {dict(data)!r}: {e}") from None


def _code(enum_type: type[enum.IntEnum], code: int, what: str) -> enum.IntEnum:
    try:
        return enum_type(code)
    except ValueError:
        raise AclBindingError(f"unknown {what} {code}") from None


def make_binding(
    *,
    resource_type: int,
    name: str,
    pattern: int,
    principal: str,
    host: str,
    operation: int,
    permission: int,
) -> AclBinding:
    """Validate a new ACL as Kafka does before storing it (raises AclBindingError)."""
    rtype = ResourceType(_code(ResourceType, resource_type, "resource type"))
    ptype = PatternType(_code(PatternType, pattern, "pattern type"))
    op = AclOperation(_code(AclOperation, operation, "operation"))
    perm = Permission(_code(Permission, permission, "permission type"))
    if rtype in (ResourceType.UNKNOWN, ResourceType.ANY):
        raise AclBindingError(f"an ACL needs a resource type, not {rtype.name}")
    if ptype not in _CONCRETE_PATTERNS:
        raise AclBindingError(
            f"an ACL's pattern type is LITERAL or PREFIXED, not {ptype.name}"
        )
    if op in (AclOperation.UNKNOWN, AclOperation.ANY):
        raise AclBindingError(f"an ACL needs an operation, not {op.name}")
    if perm not in (Permission.ALLOW, Permission.DENY):
        raise AclBindingError(f"an ACL's permission is ALLOW or DENY, not {perm.name}")
    if not name:
        raise AclBindingError("an ACL needs a resource name")
    if rtype is ResourceType.CLUSTER and name != CLUSTER_NAME:
        raise AclBindingError(
            f"the only valid name of the CLUSTER resource is {CLUSTER_NAME}"
        )
    kind, sep, who = principal.partition(":")
    if not sep or not who or kind != "User":
        raise AclBindingError(f"principal {principal!r}: expected User:NAME or User:*")
    if not host:
        raise AclBindingError("an ACL needs a host (* for any)")
    return AclBinding(
        resource_type=rtype,
        name=name,
        pattern=ptype,
        principal=principal,
        host=host,
        operation=op,
        permission=perm,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class AclFilter:
    """Kafka's AclBindingFilter: which bindings DescribeAcls lists and DeleteAcls removes."""

    resource_type: ResourceType = ResourceType.ANY
    name: str | None = None  # None: any name
    pattern: PatternType = PatternType.ANY
    principal: str | None = None  # None: any principal
    host: str | None = None  # None: any host
    operation: AclOperation = AclOperation.ANY
    permission: Permission = Permission.ANY

    def matches(self, b: AclBinding) -> bool:
        if (
            self.resource_type is not ResourceType.ANY
            and self.resource_type != b.resource_type
        ):
            return False
        if (
            self.pattern not in (PatternType.ANY, PatternType.MATCH)
            and self.pattern != b.pattern
        ):
            return False
        if self.name is not None:
            if self.pattern is PatternType.MATCH:
                if not b.applies_to(b.resource_type, self.name):
                    return False
            elif self.name != b.name:
                return False
        if self.principal is not None and self.principal != b.principal:
            return False
        if self.host is not None and self.host != b.host:
            return False
        if self.operation is not AclOperation.ANY and self.operation != b.operation:
            return False
        return self.permission is Permission.ANY or self.permission == b.permission


def make_filter(
    *,
    resource_type: int,
    name: str | None,
    pattern: int,
    principal: str | None,
    host: str | None,
    operation: int,
    permission: int,
) -> AclFilter:
    """Validate a filter (raises AclBindingError on an UNKNOWN or unknown code)."""
    rtype = ResourceType(_code(ResourceType, resource_type, "resource type"))
    ptype = PatternType(_code(PatternType, pattern, "pattern type"))
    op = AclOperation(_code(AclOperation, operation, "operation"))
    perm = Permission(_code(Permission, permission, "permission type"))
    for value in (rtype, ptype, op, perm):
        if value == 0:
            raise AclBindingError(f"the filter has an UNKNOWN {type(value).__name__}")
    return AclFilter(
        resource_type=rtype,
        name=name,
        pattern=ptype,
        principal=principal,
        host=host,
        operation=op,
        permission=perm,
    )


def operations_bitfield(ops: frozenset[AclOperation] | set[AclOperation]) -> int:
    """Kafka's ``Utils.to32BitField``: bit ``i`` set for operation code ``i``."""
    out = 0
    for op in ops:
        out |= 1 << int(op)
    return out
