"""Heartbeat (key 12), v0–4.

Behaviour: keeps a member's session alive; answered at once. Errors:
REBALANCE_IN_PROGRESS (rejoin), UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION,
FENCED_INSTANCE_ID, COORDINATOR_NOT_AVAILABLE (groups not wired), NOT_COORDINATOR
(another broker coordinates the group; cluster mode).
Version notes: v1 throttle time; v3 group_instance_id; v4 flexible.
"""

from __future__ import annotations

from broker.net.dispatch import handler
from broker.net.request import RequestContext
from protocol.error_codes import ErrorCode
from protocol.messages.heartbeat import HeartbeatRequest, HeartbeatResponse


@handler(api_key=12, name="heartbeat", max_version=4)
def heartbeat(rctx: RequestContext, request: HeartbeatRequest) -> HeartbeatResponse:
    refused = rctx.group_refusal(request.group_id)
    if refused != ErrorCode.NONE:
        return HeartbeatResponse(error_code=refused)
    svc = rctx.broker.groups
    code = svc.heartbeat(
        request.group_id,
        request.member_id,
        request.generation_id,
        request.group_instance_id or None,
    )
    return HeartbeatResponse(error_code=code)
