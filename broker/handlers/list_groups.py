"""ListGroups (key 16), v0–5.

Behaviour: every group this broker knows (with members, or with committed offsets
only, then "Empty"), filtered by state (v4+, case-insensitive) and type (v5+: all
our groups are "classic").
Version notes: v1 throttle time; v3 flexible; v4 states filter and group_state
(KIP-518); v5 types filter and group_type (KIP-848).
"""

from __future__ import annotations

from broker.net.dispatch import handler
from broker.net.request import RequestContext
from protocol.error_codes import ErrorCode
from protocol.messages.list_groups import (
    ListedGroup,
    ListGroupsRequest,
    ListGroupsResponse,
)


@handler(api_key=16, name="list_groups", max_version=5)
def list_groups(rctx: RequestContext, request: ListGroupsRequest) -> ListGroupsResponse:
    svc = rctx.broker.groups
    types = {t.lower() for t in request.types_filter}
    if types and "classic" not in types:
        return ListGroupsResponse(error_code=ErrorCode.NONE)
    return ListGroupsResponse(
        error_code=ErrorCode.NONE,
        groups=tuple(
            ListedGroup(
                group_id=g.group_id,
                protocol_type=g.protocol_type,
                group_state=g.state.value,
                group_type="classic",
            )
            for g in svc.list_groups(request.states_filter)
        ),
    )
