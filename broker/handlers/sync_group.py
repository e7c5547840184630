"""SyncGroup (key 14), v0–5.

Behaviour: the leader's assignments are relayed to every member of the generation;
followers wait (a Deferred response) until the leader's SyncGroup arrives. Errors:
UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION, REBALANCE_IN_PROGRESS (a new rebalance
started), FENCED_INSTANCE_ID, INCONSISTENT_GROUP_PROTOCOL (v5 type/name mismatch),
COORDINATOR_NOT_AVAILABLE (groups not wired), NOT_COORDINATOR (another broker
coordinates the group; cluster mode).
Version notes: v1 throttle time; v3 group_instance_id; v4 flexible; v5
protocol_type/protocol_name on both sides (KIP-559).
"""

from __future__ import annotations

from broker.groups.model import SyncRequest, SyncResult
from broker.net.dispatch import handler
from broker.net.request import Deferred, RequestContext
from protocol.error_codes import ErrorCode
from protocol.messages.sync_group import SyncGroupRequest, SyncGroupResponse


def _response(r: SyncResult) -> SyncGroupResponse:
    return SyncGroupResponse(
        error_code=r.error,
        protocol_type=r.protocol_type,
        protocol_name=r.protocol_name,
        assignment=r.assignment,
    )


@handler(api_key=14, name="sync_group", max_version=5)
def sync_group(rctx: RequestContext, request: SyncGroupRequest) -> object:
    refused = rctx.group_refusal(request.group_id)
    if refused != ErrorCode.NONE:
        return _response(SyncResult(error=refused))
    svc = rctx.broker.groups
    req = SyncRequest(
        token=0,
        group_id=request.group_id,
        member_id=request.member_id,
        generation_id=request.generation_id,
        group_instance_id=request.group_instance_id or None,
        protocol_type=request.protocol_type,
        protocol_name=request.protocol_name,
        assignments=tuple(
            (a.member_id, bytes(a.assignment)) for a in request.assignments
        ),
    )

    async def wait() -> SyncGroupResponse:
        return _response(await svc.sync(req))

    return Deferred(wait)
