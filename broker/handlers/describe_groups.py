"""DescribeGroups (key 15), v0–6.

Behaviour: each named group's state, protocol type, protocol (only when Stable) and
members (client id/host; metadata and assignment only when Stable, as Kafka). An
unknown group is reported as state "Dead" with no error (v0–5) or
GROUP_ID_NOT_FOUND (v6, KIP-1043); a group another broker coordinates (cluster
mode) gets NOT_COORDINATOR. With ``include_authorized_operations`` (v3+) each
described group carries the caller's operations on it as Kafka's bitfield (every
supported one when the authorizer is off), else Kafka's sentinel (INT32 min).
Version notes: v1 throttle time; v3 include_authorized_operations; v4 member
group_instance_id; v5 flexible; v6 per-group error message.
"""

from __future__ import annotations

from broker.groups.model import GroupState
from broker.net.dispatch import handler
from broker.net.request import RequestContext
from broker.security.acl_binding import ResourceType
from protocol.error_codes import ErrorCode
from protocol.messages.describe_groups import (
    AUTHORIZED_OPERATIONS_OMITTED,
    DescribedGroup,
    DescribedGroupMember,
    DescribeGroupsRequest,
    DescribeGroupsResponse,
)


@handler(api_key=15, name="describe_groups", max_version=6)
def describe_groups(
    rctx: RequestContext, request: DescribeGroupsRequest
) -> DescribeGroupsResponse:
    svc = rctx.broker.groups
    security = rctx.broker.security
    with_operations = rctx.api_version >= 3 and request.include_authorized_operations
    out = []
    for group_id in request.groups:
        refused = rctx.group_refusal(group_id)
        if refused != ErrorCode.NONE:
            out.append(
                DescribedGroup(
                    error_code=refused,
                    group_id=group_id,
                    group_state="",
                    protocol_type="",
                    protocol_data="",
                )
            )
            continue
        d = svc.describe(group_id)
        missing = d.state is GroupState.DEAD and rctx.api_version >= 6
        out.append(
            DescribedGroup(
                error_code=ErrorCode.GROUP_ID_NOT_FOUND if missing else ErrorCode.NONE,
                error_message=f"group {group_id} not found" if missing else None,
                group_id=group_id,
                group_state=d.state.value,
                protocol_type=d.protocol_type,
                protocol_data=d.protocol_name,
                members=tuple(
                    DescribedGroupMember(
                        member_id=m.member_id,
                        group_instance_id=m.group_instance_id,
                        client_id=m.client_id,
                        client_host=m.client_host,
                        member_metadata=m.metadata,
                        member_assignment=m.assignment,
                    )
                    for m in d.members
                ),
                authorized_operations=security.authorized_operations(
                    rctx.security, ResourceType.GROUP, group_id
                )
                if with_operations
                else AUTHORIZED_OPERATIONS_OMITTED,
            )
        )
    return DescribeGroupsResponse(groups=tuple(out))
