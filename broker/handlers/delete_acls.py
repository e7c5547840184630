"""DeleteAcls (key 31), v0–3.

Behaviour: every ACL some filter matches is removed (Kafka's ``AclBindingFilter``:
ANY, MATCH and null fields match any); each filter's result lists what it matched
(an ACL two filters match is listed under both). A filter with an UNKNOWN or unknown
code gets INVALID_REQUEST and removes nothing; a store failure answers
UNKNOWN_SERVER_ERROR; without an authorizer, SECURITY_DISABLED. Rules granted with
``ailurus user grant`` live in the users file and are not removed here.
Authorisation (ALTER on the cluster) happens before, in :mod:`broker.authz.acls`.
Version notes: v1 pattern type; v2 flexible; v3 USER resources.
"""

from __future__ import annotations

from broker.net.dispatch import handler
from broker.net.request import Deferred, RequestContext
from broker.security.acl_binding import AclBindingError, AclFilter, make_filter
from broker.security.acl_store import AclStoreError
from protocol.error_codes import ErrorCode
from protocol.messages.delete_acls import (
    DeleteAclsFilterResult,
    DeleteAclsMatchingAcl,
    DeleteAclsRequest,
    DeleteAclsResponse,
)

DISABLED_MESSAGE = "No authorizer is configured (authorizer.enabled is off)."


@handler(api_key=31, name="delete_acls", max_version=3)
def delete_acls(rctx: RequestContext, request: DeleteAclsRequest) -> object:
    security = rctx.broker.security
    if not security.authorizer.enabled:
        return DeleteAclsResponse(
            filter_results=tuple(
                DeleteAclsFilterResult(
                    error_code=ErrorCode.SECURITY_DISABLED,
                    error_message=DISABLED_MESSAGE,
                )
                for _ in request.filters
            )
        )
    parsed: list[AclFilter | str] = []
    for f in request.filters:
        try:
            parsed.append(
                make_filter(
                    resource_type=f.resource_type_filter,
                    name=f.resource_name_filter,
                    pattern=f.pattern_type_filter,
                    principal=f.principal_filter,
                    host=f.host_filter,
                    operation=f.operation,
                    permission=f.permission_type,
                )
            )
        except AclBindingError as e:
            parsed.append(str(e))
    valid = [f for f in parsed if isinstance(f, AclFilter)]

    async def remove() -> DeleteAclsResponse:
        failure: str | None = None
        matched: list[list[DeleteAclsMatchingAcl]] = []
        if valid:
            try:
                found = await security.acls.delete(valid)
            except AclStoreError as e:
                failure = str(e)
            else:
                matched = [
                    [
                        DeleteAclsMatchingAcl(
                            error_code=ErrorCode.NONE,
                            resource_type=b.resource_type,
                            resource_name=b.name,
                            pattern_type=b.pattern,
                            principal=b.principal,
                            host=b.host,
                            operation=b.operation,
                            permission_type=b.permission,
                        )
                        for b in bindings
                    ]
                    for bindings in found
                ]
        results = []
        done = iter(matched)
        for f in parsed:
            if isinstance(f, str):
                code, message = ErrorCode.INVALID_REQUEST, f
            elif failure is not None:
                code, message = ErrorCode.UNKNOWN_SERVER_ERROR, failure
            else:
                results.append(
                    DeleteAclsFilterResult(
                        error_code=ErrorCode.NONE, matching_acls=tuple(next(done))
                    )
                )
                continue
            rctx.broker.metrics.error("delete_acls", code.name)
            results.append(
                DeleteAclsFilterResult(error_code=code, error_message=message)
            )
        return DeleteAclsResponse(filter_results=tuple(results))

    return Deferred(remove)
