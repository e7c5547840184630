"""Authorisation adapters of the ACL APIs (see :mod:`broker.authz.middleware`).

As Kafka's ``KafkaApis``: CreateAcls and DeleteAcls need ALTER on the cluster,
DescribeAcls DESCRIBE on the cluster; a principal without it gets
CLUSTER_AUTHORIZATION_FAILED (per creation, per filter, or top-level).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from broker.authz.base import (
    CLUSTER_DENIED,
    DENIED_MESSAGE,
    Adapter,
    Checker,
    Forward,
    LazyModule,
    Outcome,
    Respond,
)
from broker.security.acl import Op, Resource

if TYPE_CHECKING:
    from protocol.messages import create_acls as ca
    from protocol.messages import delete_acls as da
    from protocol.messages import describe_acls as dsa
else:
    ca = LazyModule("protocol.messages.create_acls")
    da = LazyModule("protocol.messages.delete_acls")
    dsa = LazyModule("protocol.messages.describe_acls")


def _describe_acls(c: Checker, req: dsa.DescribeAclsRequest) -> Outcome:
    if c.may(Op.DESCRIBE, Resource.CLUSTER):
        return Forward(req)
    return Respond(
        dsa.DescribeAclsResponse(
            error_code=CLUSTER_DENIED, error_message=DENIED_MESSAGE
        )
    )


def _create_acls(c: Checker, req: ca.CreateAclsRequest) -> Outcome:
    if c.may(Op.ALTER, Resource.CLUSTER):
        return Forward(req)
    return Respond(
        ca.CreateAclsResponse(
            results=tuple(
                ca.AclCreationResult(
                    error_code=CLUSTER_DENIED, error_message=DENIED_MESSAGE
                )
                for _ in req.creations
            )
        )
    )


def _delete_acls(c: Checker, req: da.DeleteAclsRequest) -> Outcome:
    if c.may(Op.ALTER, Resource.CLUSTER):
        return Forward(req)
    return Respond(
        da.DeleteAclsResponse(
            filter_results=tuple(
                da.DeleteAclsFilterResult(
                    error_code=CLUSTER_DENIED, error_message=DENIED_MESSAGE
                )
                for _ in req.filters
            )
        )
    )


ACL_ADAPTERS: Final[dict[int, Adapter]] = {
    29: _describe_acls,
    30: _create_acls,
    31: _delete_acls,
}
