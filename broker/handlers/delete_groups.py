"""DeleteGroups (key 42), v0–2.

Behaviour: deletes Empty groups and their committed offsets (answered once the
deletion is fsynced). Errors per group: NON_EMPTY_GROUP (members remain),
GROUP_ID_NOT_FOUND, COORDINATOR_NOT_AVAILABLE (store failure or groups not wired),
NOT_COORDINATOR (another broker coordinates the group; cluster mode).
Version notes: v1 same as v0; v2 flexible.
"""

from __future__ import annotations

from broker.net.dispatch import handler
from broker.net.request import Deferred, RequestContext
from protocol.error_codes import ErrorCode
from protocol.messages.delete_groups import (
    DeletableGroupResult,
    DeleteGroupsRequest,
    DeleteGroupsResponse,
)


def _response(
    names: tuple[str, ...], codes: dict[str, ErrorCode]
) -> DeleteGroupsResponse:
    return DeleteGroupsResponse(
        results=tuple(
            DeletableGroupResult(group_id=g, error_code=codes[g]) for g in names
        )
    )


@handler(api_key=42, name="delete_groups", max_version=2)
def delete_groups(rctx: RequestContext, request: DeleteGroupsRequest) -> object:
    svc = rctx.broker.groups
    names = request.groups_names
    refused = {g: rctx.group_refusal(g) for g in dict.fromkeys(names)}
    elsewhere = {g: code for g, code in refused.items() if code != ErrorCode.NONE}
    here = [g for g in refused if g not in elsewhere]

    async def delete() -> DeleteGroupsResponse:
        return _response(names, {**elsewhere, **await svc.delete_groups(here)})

    return Deferred(delete)
