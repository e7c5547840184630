"""ACLs through the CLI's client: CreateAcls, DescribeAcls, DeleteAcls.

Each function sends one request to the bootstrap broker (any broker of a cluster
serves the ACL APIs) and raises :class:`~broker.client.errors.KafkaError` for the
first error the broker answers. Bindings and filters travel as Kafka's codes
(:class:`AclEntry`, :class:`AclQuery`); the CLI turns names into codes.
"""

from __future__ import annotations

from dataclasses import dataclass

from broker.client.client import KafkaClient
from broker.client.errors import KafkaError
from protocol.messages.create_acls import (
    AclCreation,
    CreateAclsRequest,
    CreateAclsResponse,
)
from protocol.messages.delete_acls import (
    DeleteAclsFilter,
    DeleteAclsRequest,
    DeleteAclsResponse,
)
from protocol.messages.describe_acls import DescribeAclsRequest, DescribeAclsResponse


@dataclass(frozen=True, slots=True, kw_only=True)
class AclEntry:
    """One ACL, in Kafka's codes."""

    resource_type: int
    name: str
    pattern: int
    principal: str
    host: str
    operation: int
    permission: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AclQuery:
    """A filter, in Kafka's codes (1 = ANY; None = any name, principal, host)."""

    resource_type: int = 1
    name: str | None = None
    pattern: int = 1
    principal: str | None = None
    host: str | None = None
    operation: int = 1
    permission: int = 1


def create_acls(client: KafkaClient, entries: list[AclEntry]) -> None:
    """Create ACLs (raises KafkaError for the first one refused)."""
    request = CreateAclsRequest(
        creations=tuple(
            AclCreation(
                resource_type=e.resource_type,
                resource_name=e.name,
                resource_pattern_type=e.pattern,
                principal=e.principal,
                host=e.host,
                operation=e.operation,
                permission_type=e.permission,
            )
            for e in entries
        )
    )
    response = client.bootstrap().request(request, CreateAclsResponse)
    for result in response.results:
        if result.error_code:
            raise KafkaError(result.error_code, "create ACLs", result.error_message)


def describe_acls(client: KafkaClient, query: AclQuery) -> list[AclEntry]:
    """The ACLs the filter matches."""
    request = DescribeAclsRequest(
        resource_type_filter=query.resource_type,
        resource_name_filter=query.name,
        pattern_type_filter=query.pattern,
        principal_filter=query.principal,
        host_filter=query.host,
        operation=query.operation,
        permission_type=query.permission,
    )
    response = client.bootstrap().request(request, DescribeAclsResponse)
    if response.error_code:
        raise KafkaError(response.error_code, "list ACLs", response.error_message)
    return [
        AclEntry(
            resource_type=r.resource_type,
            name=r.resource_name,
            pattern=r.pattern_type,
            principal=a.principal,
            host=a.host,
            operation=a.operation,
            permission=a.permission_type,
        )
        for r in response.resources
        for a in r.acls
    ]


def delete_acls(client: KafkaClient, query: AclQuery) -> list[AclEntry]:
    """Delete the ACLs the filter matches; what was deleted."""
    request = DeleteAclsRequest(
        filters=(
            DeleteAclsFilter(
                resource_type_filter=query.resource_type,
                resource_name_filter=query.name,
                pattern_type_filter=query.pattern,
                principal_filter=query.principal,
                host_filter=query.host,
                operation=query.operation,
                permission_type=query.permission,
            ),
        )
    )
    response = client.bootstrap().request(request, DeleteAclsResponse)
    out = []
    for result in response.filter_results:
        if result.error_code:
            raise KafkaError(result.error_code, "delete ACLs", result.error_message)
        for m in result.matching_acls:
            if m.error_code:
                raise KafkaError(m.error_code, "delete ACLs", m.error_message)
            out.append(
                AclEntry(
                    resource_type=m.resource_type,
                    name=m.resource_name,
                    pattern=m.pattern_type,
                    principal=m.principal,
                    host=m.host,
                    operation=m.operation,
                    permission=m.permission_type,
                )
            )
    return out
