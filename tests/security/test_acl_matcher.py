"""The ACL matcher and filters against a simple model of Kafka's rules (Hypothesis),
the file store, and the ACL APIs and authorized operations without an authorizer.

The model restates Kafka's ``AclAuthorizer`` in the plainest way: a binding covers
a request when its resource type matches, its name is the resource's, ``*`` or (if
PREFIXED) a prefix of it, its principal is the caller's or ``User:*`` and its host
is the caller's or ``*``; any covering DENY of the operation or ALL refuses; else a
covering ALLOW of the operation, ALL or an operation that implies it allows.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.cluster.acl_records import decode_acls, encode_acls, key_parts
from broker.security.acl import Authorizer
from broker.security.acl_binding import (
    SUPPORTED_OPERATIONS,
    AclBinding,
    AclBindingError,
    AclFilter,
    AclOperation,
    PatternType,
    Permission,
    ResourceType,
    make_binding,
    operations_bitfield,
)
from broker.security.acl_store import AclStoreError, FileAclStore
from protocol.error_codes import ErrorCode
from protocol.messages.create_acls import AclCreation, CreateAclsRequest
from protocol.messages.describe_acls import DescribeAclsRequest
from protocol.messages.describe_cluster import DescribeClusterRequest
from protocol.messages.metadata import MetadataRequest, MetadataRequestTopic

from .broker_proc import RawClient, start_broker

NAMES = ["a", "ab", "abc", "b", "*"]
USERS = ["alice", "bob"]
HOSTS = ["10.0.0.1", "10.0.0.2"]
TYPES = [ResourceType.TOPIC, ResourceType.GROUP]
OPS = [op for op in AclOperation if op > AclOperation.ANY]

bindings_st = st.builds(
    AclBinding,
    resource_type=st.sampled_from(TYPES),
    name=st.sampled_from(NAMES),
    pattern=st.sampled_from([PatternType.LITERAL, PatternType.PREFIXED]),
    principal=st.sampled_from([*(f"User:{u}" for u in USERS), "User:*"]),
    host=st.sampled_from([*HOSTS, "*"]),
    operation=st.sampled_from(OPS),
    permission=st.sampled_from([Permission.ALLOW, Permission.DENY]),
)


class _Acls:
    def __init__(self, bindings: list[AclBinding]) -> None:
        self._bindings = bindings

    @property
    def version(self) -> int:
        return 1

    def bindings(self) -> list[AclBinding]:
        return self._bindings


def _covers(
    b: AclBinding, rtype: ResourceType, name: str, user: str, host: str
) -> bool:
    if b.resource_type != rtype:
        return False
    if b.pattern is PatternType.PREFIXED:
        name_ok = name[: len(b.name)] == b.name
    else:
        name_ok = b.name in (name, "*")
    return (
        name_ok and b.principal in (f"User:{user}", "User:*") and b.host in (host, "*")
    )


def _model(
    bindings: list[AclBinding],
    user: str,
    host: str,
    op: AclOperation,
    rtype: ResourceType,
    name: str,
) -> bool:
    implied = {
        AclOperation.DESCRIBE: {
            AclOperation.READ,
            AclOperation.WRITE,
            AclOperation.DELETE,
            AclOperation.ALTER,
        },
        AclOperation.DESCRIBE_CONFIGS: {AclOperation.ALTER_CONFIGS},
    }.get(op, set())
    covering = [b for b in bindings if _covers(b, rtype, name, user, host)]
    if any(
        b.permission is Permission.DENY and b.operation in (op, AclOperation.ALL)
        for b in covering
    ):
        return False
    return any(
        b.permission is Permission.ALLOW
        and (b.operation in (op, AclOperation.ALL) or b.operation in implied)
        for b in covering
    )


@settings(max_examples=200, deadline=None)
@given(
    bindings=st.lists(bindings_st, max_size=12),
    user=st.sampled_from(USERS),
    host=st.sampled_from(HOSTS),
    op=st.sampled_from(OPS),
    rtype=st.sampled_from(TYPES),
    name=st.sampled_from(["a", "ab", "abc", "abd", "b", "c"]),
)
def test_authorizer_decides_as_the_model(
    bindings: list[AclBinding],
    user: str,
    host: str,
    op: AclOperation,
    rtype: ResourceType,
    name: str,
) -> None:
    """Every decision equals the model's; super users are always allowed."""
    authz = Authorizer(enabled=True, acls=_Acls(bindings), super_users=["root"])
    assert authz.allows(user, host, op, rtype, name) == _model(
        bindings, user, host, op, rtype, name
    )
    assert authz.allows("root", host, op, rtype, name)
    expected = {
        o
        for o in SUPPORTED_OPERATIONS[rtype]
        if _model(bindings, user, host, o, rtype, name)
    }
    assert authz.authorized_operations(user, host, rtype, name) == (
        operations_bitfield(expected)
    )


@settings(max_examples=100, deadline=None)
@given(
    bindings=st.lists(bindings_st, max_size=12),
    rtype=st.sampled_from(TYPES),
    name=st.sampled_from(["a", "ab", "abc", "b"]),
)
def test_match_filter_finds_exactly_the_bindings_that_apply(
    bindings: list[AclBinding], rtype: ResourceType, name: str
) -> None:
    """A MATCH filter on a name lists the bindings that cover that resource; an
    exact filter built from a binding lists only its equals; ANY lists all."""
    match = AclFilter(resource_type=rtype, name=name, pattern=PatternType.MATCH)
    assert [b for b in bindings if match.matches(b)] == [
        b
        for b in bindings
        if b.resource_type == rtype
        and (
            b.name == name[: len(b.name)]
            if b.pattern is PatternType.PREFIXED
            else b.name in (name, "*")
        )
    ]
    assert all(AclFilter().matches(b) for b in bindings)
    for b in bindings:
        exact = AclFilter(
            resource_type=b.resource_type,
            name=b.name,
            pattern=b.pattern,
            principal=b.principal,
            host=b.host,
            operation=b.operation,
            permission=b.permission,
        )
        assert [x for x in bindings if exact.matches(x)] == [
            x for x in bindings if x == b
        ]


@settings(max_examples=100, deadline=None)
@given(bindings=st.lists(bindings_st, min_size=1, max_size=6))
def test_etcd_value_round_trips(bindings: list[AclBinding]) -> None:
    """One resource pattern's ACLs decode from their etcd value as they were."""
    first = bindings[0]
    same = [
        b
        for b in bindings
        if (b.resource_type, b.name, b.pattern)
        == (first.resource_type, first.name, first.pattern)
    ]
    pattern, rtype, name = key_parts(first)
    decoded = decode_acls(pattern, rtype, name, encode_acls(same))
    assert decoded == tuple(dict.fromkeys(same))


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"resource_type": ResourceType.ANY}, "resource type"),
        ({"pattern": PatternType.MATCH}, "LITERAL or PREFIXED"),
        ({"operation": AclOperation.ANY}, "operation"),
        ({"permission": Permission.ANY}, "ALLOW or DENY"),
        ({"principal": "alice"}, "User:"),
        ({"name": ""}, "resource name"),
        ({"resource_type": ResourceType.CLUSTER}, "kafka-cluster"),
        ({"operation": 99}, "unknown operation"),
    ],
)
def test_invalid_bindings_are_refused(change: dict[str, object], reason: str) -> None:
    """A binding Kafka would not store is refused with the reason."""
    fields: dict[str, object] = {
        "resource_type": ResourceType.TOPIC,
        "name": "t",
        "pattern": PatternType.LITERAL,
        "principal": "User:alice",
        "host": "*",
        "operation": AclOperation.READ,
        "permission": Permission.ALLOW,
    }
    fields.update(change)
    with pytest.raises(AclBindingError, match=reason):
        make_binding(**fields)  # type: ignore[arg-type]


def test_file_store_keeps_acls_across_reopening(tmp_path: Path) -> None:
    """Created ACLs are written to the file and read back; deletes too."""
    one = make_binding(
        resource_type=2,
        name="orders",
        pattern=3,
        principal="User:alice",
        host="*",
        operation=3,
        permission=3,
    )
    two = make_binding(
        resource_type=3,
        name="app-",
        pattern=4,
        principal="User:*",
        host="10.0.0.1",
        operation=2,
        permission=2,
    )

    async def main() -> None:
        store = FileAclStore.in_data_dir(tmp_path)
        await store.create([one, two, one])
        assert list(FileAclStore.in_data_dir(tmp_path).bindings()) == [one, two]
        matched = await store.delete([AclFilter(permission=Permission.DENY)])
        assert matched == [[two]]
        assert list(FileAclStore.in_data_dir(tmp_path).bindings()) == [one]

    anyio.run(main)
    (tmp_path / "security" / "acls.json").write_text("not json")
    with pytest.raises(AclStoreError, match="malformed"):
        FileAclStore.in_data_dir(tmp_path).bindings()


@pytest.mark.integration
def test_without_authorizer_acl_apis_are_disabled_and_every_operation_reported(
    tmp_path: Path,
) -> None:
    """With no authorizer the ACL APIs answer SECURITY_DISABLED (Kafka without
    authorizer.class.name) and authorized operations list every supported one."""
    b = start_broker(tmp_path, "--kafka-addr", "plaintext://127.0.0.1:0")
    client = RawClient(b.addr("plaintext"))
    try:
        created = client.request(
            30,
            3,
            CreateAclsRequest(
                creations=(
                    AclCreation(
                        resource_type=2,
                        resource_name="t",
                        principal="User:a",
                        host="*",
                        operation=3,
                        permission_type=3,
                    ),
                )
            ),
        )
        assert [r.error_code for r in created.results] == [  # type: ignore[attr-defined]
            ErrorCode.SECURITY_DISABLED
        ]
        described = client.request(
            29,
            3,
            DescribeAclsRequest(
                resource_type_filter=1, pattern_type_filter=1, operation=1,
                permission_type=1,
            ),
        )  # fmt: skip
        assert described.error_code == ErrorCode.SECURITY_DISABLED  # type: ignore[attr-defined]
        meta = client.request(
            3,
            10,
            MetadataRequest(
                topics=(MetadataRequestTopic(name="ops-topic"),),
                allow_auto_topic_creation=True,
                include_cluster_authorized_operations=True,
                include_topic_authorized_operations=True,
            ),
        )
        everything_on_topics = operations_bitfield(
            set(SUPPORTED_OPERATIONS[ResourceType.TOPIC])
        )
        everything_on_cluster = operations_bitfield(
            set(SUPPORTED_OPERATIONS[ResourceType.CLUSTER])
        )
        assert [t.topic_authorized_operations for t in meta.topics] == [  # type: ignore[attr-defined]
            everything_on_topics
        ]
        assert meta.cluster_authorized_operations == everything_on_cluster  # type: ignore[attr-defined]
        cluster = client.request(
            60, 0, DescribeClusterRequest(include_cluster_authorized_operations=False)
        )
        assert cluster.cluster_authorized_operations == -(2**31)  # type: ignore[attr-defined]
    finally:
        client.sock.close()
        assert b.stop() == 0
