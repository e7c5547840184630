"""JoinGroup (key 11), v0–9.

Behaviour: the group coordinator (broker.groups) admits the member and answers once
the rebalance completes (a Deferred response: the connection keeps answering other
requests meanwhile). v4+ first answers MEMBER_ID_REQUIRED with a fresh member id
(KIP-394); the leader gets every member's metadata for the chosen protocol, the
others an empty member list. Errors: INVALID_GROUP_ID, INVALID_SESSION_TIMEOUT,
INCONSISTENT_GROUP_PROTOCOL, UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID,
COORDINATOR_NOT_AVAILABLE (groups not wired), NOT_COORDINATOR (another broker
coordinates the group; cluster mode).
Version notes: v1 rebalance_timeout_ms (v0: the session timeout is used); v2 throttle
time; v4 member id required; v5 group_instance_id (KIP-345); v6 flexible; v7
protocol_type in the response (KIP-559); v8 reason; v9 skip_assignment (set for a
static leader rejoining a Stable group, KIP-814).
"""

from __future__ import annotations

from broker.groups.model import JoinRequest, JoinResult, Protocol, client_host
from broker.net.dispatch import handler
from broker.net.request import Deferred, RequestContext
from protocol.error_codes import ErrorCode
from protocol.messages.join_group import (
    JoinGroupRequest,
    JoinGroupResponse,
    JoinGroupResponseMember,
)


def _response(version: int, r: JoinResult) -> JoinGroupResponse:
    return JoinGroupResponse(
        error_code=r.error,
        generation_id=r.generation_id,
        protocol_type=r.protocol_type,
        protocol_name=r.protocol_name if version >= 7 else (r.protocol_name or ""),
        leader=r.leader_id,
        member_id=r.member_id,
        skip_assignment=r.skip_assignment,
        members=tuple(
            JoinGroupResponseMember(
                member_id=m.member_id,
                group_instance_id=m.group_instance_id,
                metadata=m.metadata,
            )
            for m in r.members
        ),
    )


@handler(api_key=11, name="join_group", max_version=9)
def join_group(rctx: RequestContext, request: JoinGroupRequest) -> object:
    version = rctx.api_version
    refused = rctx.group_refusal(request.group_id)
    if refused != ErrorCode.NONE:
        return _response(
            version, JoinResult(error=refused, member_id=request.member_id)
        )
    svc = rctx.broker.groups
    rebalance = request.rebalance_timeout_ms
    req = JoinRequest(
        token=0,
        group_id=request.group_id,
        member_id=request.member_id,
        group_instance_id=request.group_instance_id or None,
        client_id=rctx.header.client_id or "",
        client_host=client_host(rctx.peer),
        session_timeout_ms=request.session_timeout_ms,
        rebalance_timeout_ms=rebalance
        if rebalance >= 0
        else request.session_timeout_ms,
        protocol_type=request.protocol_type,
        protocols=tuple(
            Protocol(name=p.name, metadata=bytes(p.metadata)) for p in request.protocols
        ),
        require_known_member_id=version >= 4,
        supports_skip_assignment=version >= 9,
    )

    async def wait() -> JoinGroupResponse:
        return _response(version, await svc.join(req))

    return Deferred(wait)
