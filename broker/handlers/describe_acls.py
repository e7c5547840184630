"""DescribeAcls (key 29), v0–3.

Behaviour: the ACLs the filter matches (Kafka's ``AclBindingFilter``: ANY, MATCH
and null fields match any), grouped by resource pattern, from the ACL store (the
data dir's file, or etcd in cluster mode, as this broker's watch last saw it).
Rules granted with ``ailurus user grant`` live in the users file and are not
listed. A filter with an UNKNOWN or unknown code gets INVALID_REQUEST; without an
authorizer, SECURITY_DISABLED. Authorisation (DESCRIBE on the cluster) happens
before, in :mod:`broker.authz.acls`.
Version notes: v1 pattern type; v2 flexible; v3 USER resources.
"""

from __future__ import annotations

from broker.net.dispatch import handler
from broker.net.request import RequestContext
from broker.security.acl_binding import AclBinding, AclBindingError, make_filter
from broker.security.acl_store import AclStoreError
from protocol.error_codes import ErrorCode
from protocol.messages.describe_acls import (
    AclDescription,
    DescribeAclsRequest,
    DescribeAclsResource,
    DescribeAclsResponse,
)

DISABLED_MESSAGE = "No authorizer is configured (authorizer.enabled is off)."


@handler(api_key=29, name="describe_acls", max_version=3)
def describe_acls(
    rctx: RequestContext, request: DescribeAclsRequest
) -> DescribeAclsResponse:
    security = rctx.broker.security
    if not security.authorizer.enabled:
        return DescribeAclsResponse(
            error_code=ErrorCode.SECURITY_DISABLED, error_message=DISABLED_MESSAGE
        )
    try:
        acl_filter = make_filter(
            resource_type=request.resource_type_filter,
            name=request.resource_name_filter,
            pattern=request.pattern_type_filter,
            principal=request.principal_filter,
            host=request.host_filter,
            operation=request.operation,
            permission=request.permission_type,
        )
        matched = [b for b in security.acls.bindings() if acl_filter.matches(b)]
    except AclBindingError as e:
        return DescribeAclsResponse(
            error_code=ErrorCode.INVALID_REQUEST, error_message=str(e)
        )
    except AclStoreError as e:
        return DescribeAclsResponse(
            error_code=ErrorCode.UNKNOWN_SERVER_ERROR, error_message=str(e)
        )
    by_resource: dict[tuple[int, str, int], list[AclBinding]] = {}
    for b in matched:
        by_resource.setdefault((b.resource_type, b.name, b.pattern), []).append(b)
    return DescribeAclsResponse(
        error_code=ErrorCode.NONE,
        resources=tuple(
            DescribeAclsResource(
                resource_type=rtype,
                resource_name=name,
                pattern_type=pattern,
                acls=tuple(
                    AclDescription(
                        principal=b.principal,
                        host=b.host,
                        operation=b.operation,
                        permission_type=b.permission,
                    )
                    for b in bindings
                ),
            )
            for (rtype, name, pattern), bindings in sorted(by_resource.items())
        ),
    )
