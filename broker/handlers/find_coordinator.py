"""FindCoordinator (key 10), v0–6.

Behaviour: this single broker coordinates every group (key type 0) and every
transactional id (key type 1): the answer is this node at the advertised address of
the listener the client connected to. A transactional producer thus reaches
InitProducerId, which refuses it at once with a fatal error (transactions are not
supported; see broker.handlers.init_producer_id). Share-group keys (type 2, KIP-932) and unknown
key types get INVALID_REQUEST.
Version notes: v1 key_type, throttle time, error message; v3 flexible; v4 batches
keys (coordinator_keys) and answers a coordinators array (KIP-699).
"""

from __future__ import annotations

from broker.net.dispatch import handler
from broker.net.request import RequestContext
from protocol.error_codes import ErrorCode
from protocol.messages.find_coordinator import (
    Coordinator,
    FindCoordinatorRequest,
    FindCoordinatorResponse,
)

_SUPPORTED_KEY_TYPES = (0, 1)


@handler(api_key=10, name="find_coordinator", max_version=6)
def find_coordinator(
    rctx: RequestContext, request: FindCoordinatorRequest
) -> FindCoordinatorResponse:
    ctx = rctx.broker
    listener = ctx.runtime.listeners[rctx.listener]
    node, host, port = (
        ctx.config.node_id,
        listener.advertised_host,
        listener.advertised_port,
    )
    ok = request.key_type in _SUPPORTED_KEY_TYPES
    code = ErrorCode.NONE if ok else ErrorCode.INVALID_REQUEST
    if rctx.api_version >= 4:
        return FindCoordinatorResponse(
            coordinators=tuple(
                Coordinator(
                    key=key,
                    node_id=node if ok else -1,
                    host=host if ok else "",
                    port=port if ok else -1,
                    error_code=code,
                    error_message=None if ok else "unsupported key type",
                )
                for key in request.coordinator_keys
            )
        )
    return FindCoordinatorResponse(
        error_code=code,
        error_message=None if ok else "unsupported key type",
        node_id=node if ok else -1,
        host=host if ok else "",
        port=port if ok else -1,
    )
