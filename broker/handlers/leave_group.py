"""LeaveGroup (key 13), v0–5.

Behaviour: removes members at once (by member id, or by group instance id for static
members) and starts a rebalance for the others. v0–2 name one member and report its
error at the top level; v3+ batch members and answer one error each (top level
NONE). Errors: UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID (instance id held by another
member id), COORDINATOR_NOT_AVAILABLE (groups not wired), NOT_COORDINATOR at the top
level (another broker coordinates the group; cluster mode).
Version notes: v1 throttle time; v3 batched members (KIP-345); v4 flexible; v5
per-member reason.
"""

from __future__ import annotations

from broker.groups.model import LeavingMember
from broker.net.dispatch import handler
from broker.net.request import RequestContext
from protocol.error_codes import ErrorCode
from protocol.messages.leave_group import (
    LeaveGroupRequest,
    LeaveGroupResponse,
    MemberResponse,
)


@handler(api_key=13, name="leave_group", max_version=5)
def leave_group(rctx: RequestContext, request: LeaveGroupRequest) -> LeaveGroupResponse:
    refused = rctx.group_refusal(request.group_id)
    if refused != ErrorCode.NONE:
        return LeaveGroupResponse(error_code=refused)
    svc = rctx.broker.groups
    batched = rctx.api_version >= 3
    members = (
        [
            LeavingMember(
                member_id=m.member_id, group_instance_id=m.group_instance_id or None
            )
            for m in request.members
        ]
        if batched
        else [LeavingMember(member_id=request.member_id)]
    )
    errors = svc.leave(request.group_id, members)
    if not batched:
        return LeaveGroupResponse(error_code=errors[0])
    return LeaveGroupResponse(
        error_code=ErrorCode.NONE,
        members=tuple(
            MemberResponse(
                member_id=m.member_id,
                group_instance_id=m.group_instance_id,
                error_code=code,
            )
            for m, code in zip(members, errors, strict=True)
        ),
    )
