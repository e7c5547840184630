"""The ACLs' values in etcd, in the layout of Kafka's ZooKeeper ACL znodes.

One key per resource pattern, ``PREFIX/acls/{pattern}/{type}/{name}`` (pattern
``literal`` or ``prefixed``, type as Kafka names it: ``Topic``, ``Group``,
``Cluster``, ``TransactionalId``, ``DelegationToken``, ``User``; the name
URL-quoted), holding what Kafka's ``/kafka-acl/{type}/{name}`` holds::

    {"version": 1, "acls": [{"principal": "User:alice", "permissionType": "Allow",
                             "operation": "Read", "host": "*"}]}
"""

from __future__ import annotations

import enum
import json
from collections.abc import Sequence
from typing import Final, TypeVar

from broker.cluster.model import BadRecord
from broker.security.acl_binding import (
    AclBinding,
    AclBindingError,
    AclOperation,
    PatternType,
    Permission,
    ResourceType,
    make_binding,
)

E = TypeVar("E", bound=enum.IntEnum)


def kafka_name(value: enum.IntEnum) -> str:
    """Kafka's spelling of an enum value in ZooKeeper (``DESCRIBE_CONFIGS`` ->
    ``DescribeConfigs``)."""
    return value.name.title().replace("_", "")


def _by_kafka_name(enum_type: type[E]) -> dict[str, E]:
    return {kafka_name(v): v for v in enum_type}


_TYPES: Final = _by_kafka_name(ResourceType)
_OPERATIONS: Final = _by_kafka_name(AclOperation)
_PERMISSIONS: Final = _by_kafka_name(Permission)
_PATTERNS: Final = {"literal": PatternType.LITERAL, "prefixed": PatternType.PREFIXED}


def key_parts(binding: AclBinding) -> tuple[str, str, str]:
    """(pattern, type, name) of the key holding ``binding``."""
    return binding.pattern.name.lower(), kafka_name(binding.resource_type), binding.name


def encode_acls(bindings: Sequence[AclBinding]) -> bytes:
    """The value of one resource pattern's key (every binding shares the pattern)."""
    entries = [
        {
            "principal": b.principal,
            "permissionType": kafka_name(b.permission),
            "operation": kafka_name(b.operation),
            "host": b.host,
        }
        for b in bindings
    ]
    return json.dumps({"version": 1, "acls": entries}, separators=(",", ":")).encode()


def decode_acls(
    pattern: str, resource_type: str, name: str, value: bytes
) -> tuple[AclBinding, ...]:
    """The bindings of one key (raises BadRecord when it is not such a value)."""
    try:
        data = json.loads(value)
        if data.get("version") != 1:
            raise BadRecord(f"unsupported ACL value version {data.get('version')}")
        out = [
            make_binding(
                resource_type=_TYPES[resource_type],
                name=name,
                pattern=_PATTERNS[pattern],
                principal=str(entry["principal"]),
                host=str(entry["host"]),
                operation=_OPERATIONS[str(entry["operation"])],
                permission=_PERMISSIONS[str(entry["permissionType"])],
            )
            for entry in data["acls"]
        ]
    except (ValueError, KeyError, TypeError, AttributeError, AclBindingError) as e:
        raise BadRecord(f"bad ACL value: {e}") from e
    return tuple(dict.fromkeys(out))
