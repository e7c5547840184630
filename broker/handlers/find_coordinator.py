"""FindCoordinator (key 10), v0–6.

Behaviour: a group (key type 0) is coordinated by the leader of its
``__consumer_offsets`` partition (``ClusterView.group_coordinator``), a
transactional id (key type 1) by the leader of its ``__transaction_state``
partition (``ClusterView.txn_coordinator``, ``abs(hashCode(id)) % partitions`` as
Kafka; in a cluster the first lookup asks the controller to create the topic); a
single node coordinates everything. The answer is that node at its advertised
address of the listener the client connected to. COORDINATOR_NOT_AVAILABLE while
that partition has no leader (or the node has no such listener): clients retry.
Share-group keys (type 2, KIP-932) and unknown key types get INVALID_REQUEST.
Version notes: v1 key_type, throttle time, error message; v3 flexible; v4 batches
keys (coordinator_keys) and answers a coordinators array (KIP-699).
"""

from __future__ import annotations

from dataclasses import dataclass

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
    if rctx.api_version >= 4:
        found = [
            (key, _find(rctx, request.key_type, key))
            for key in request.coordinator_keys
        ]
        return FindCoordinatorResponse(
            coordinators=tuple(
                Coordinator(
                    key=key,
                    node_id=f.node_id,
                    host=f.host,
                    port=f.port,
                    error_code=f.code,
                    error_message=f.message,
                )
                for key, f in found
            )
        )
    f = _find(rctx, request.key_type, request.key)
    return FindCoordinatorResponse(
        error_code=f.code,
        error_message=f.message,
        node_id=f.node_id,
        host=f.host,
        port=f.port,
    )


@dataclass(frozen=True, slots=True)
class _Found:
    code: ErrorCode
    message: str | None = None
    node_id: int = -1
    host: str = ""
    port: int = -1


def _find(rctx: RequestContext, key_type: int, key: str) -> _Found:
    if key_type not in _SUPPORTED_KEY_TYPES:
        return _Found(ErrorCode.INVALID_REQUEST, "unsupported key type")
    view = rctx.broker.cluster
    node = view.txn_coordinator(key) if key_type == 1 else view.group_coordinator(key)
    info = view.broker(node) if node >= 0 else None
    endpoint = None if info is None else info.endpoint(rctx.listener)
    if endpoint is None:
        rctx.broker.metrics.error(
            "find_coordinator", ErrorCode.COORDINATOR_NOT_AVAILABLE.name
        )
        return _Found(ErrorCode.COORDINATOR_NOT_AVAILABLE, "no coordinator yet")
    return _Found(ErrorCode.NONE, None, node, endpoint.host, endpoint.port)
