"""CreateAcls (key 30), v0–3.

Behaviour: each creation is validated as Kafka validates a new ACL (a concrete
resource type, LITERAL or PREFIXED, a concrete operation, ALLOW or DENY, a
``User:`` principal, a host, a non-empty name, ``kafka-cluster`` for the cluster);
an invalid one gets INVALID_REQUEST with the reason, the valid ones are stored
together (the data dir's ``security/acls.json``, or etcd in cluster mode), and a
store failure answers UNKNOWN_SERVER_ERROR for them. Creating an ACL that exists
succeeds and keeps one copy. Without an authorizer (``authorizer.enabled`` off)
every creation gets SECURITY_DISABLED, as Kafka without ``authorizer.class.name``.
Authorisation (ALTER on the cluster) happens before, in :mod:`broker.authz.acls`.
Version notes: v1 pattern type; v2 flexible; v3 USER resources.
"""

from __future__ import annotations

from broker.net.dispatch import handler
from broker.net.request import Deferred, RequestContext
from broker.security.acl_binding import AclBinding, AclBindingError, make_binding
from broker.security.acl_store import AclStoreError
from protocol.error_codes import ErrorCode
from protocol.messages.create_acls import (
    AclCreationResult,
    CreateAclsRequest,
    CreateAclsResponse,
)

DISABLED_MESSAGE = "No authorizer is configured (authorizer.enabled is off)."


@handler(api_key=30, name="create_acls", max_version=3)
def create_acls(rctx: RequestContext, request: CreateAclsRequest) -> object:
    security = rctx.broker.security
    if not security.authorizer.enabled:
        return CreateAclsResponse(
            results=tuple(
                AclCreationResult(
                    error_code=ErrorCode.SECURITY_DISABLED,
                    error_message=DISABLED_MESSAGE,
                )
                for _ in request.creations
            )
        )
    parsed: list[AclBinding | str] = []
    for c in request.creations:
        try:
            parsed.append(
                make_binding(
                    resource_type=c.resource_type,
                    name=c.resource_name,
                    pattern=c.resource_pattern_type,
                    principal=c.principal,
                    host=c.host,
                    operation=c.operation,
                    permission=c.permission_type,
                )
            )
        except AclBindingError as e:
            parsed.append(str(e))
    valid = [b for b in parsed if isinstance(b, AclBinding)]

    async def store() -> CreateAclsResponse:
        failure: str | None = None
        if valid:
            try:
                await security.acls.create(valid)
            except AclStoreError as e:
                failure = str(e)
        results = []
        for b in parsed:
            if isinstance(b, str):
                code, message = ErrorCode.INVALID_REQUEST, b
            elif failure is not None:
                code, message = ErrorCode.UNKNOWN_SERVER_ERROR, failure
            else:
                code, message = ErrorCode.NONE, None
            if code != ErrorCode.NONE:
                rctx.broker.metrics.error("create_acls", code.name)
            results.append(AclCreationResult(error_code=code, error_message=message))
        return CreateAclsResponse(results=tuple(results))

    return Deferred(store)
