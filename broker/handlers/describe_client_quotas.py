"""DescribeClientQuotas (key 48), v0–1 (KIP-546).

Behaviour: no client quotas are configured or enforced, so every filter matches
nothing: an empty entry list with no error (what Kafka answers with no quotas
set). A match type other than 0 (exact), 1 (default) or 2 (any) is
INVALID_REQUEST, as Kafka's ``ClientQuotaFilterComponent`` refuses it.
Version notes: v1 flexible.
"""

from __future__ import annotations

from broker.net.dispatch import handler
from broker.net.request import RequestContext
from protocol.error_codes import ErrorCode
from protocol.messages.describe_client_quotas import (
    DescribeClientQuotasRequest,
    DescribeClientQuotasResponse,
)

MATCH_TYPES = (0, 1, 2)


@handler(api_key=48, name="describe_client_quotas", max_version=1)
def describe_client_quotas(
    rctx: RequestContext, request: DescribeClientQuotasRequest
) -> DescribeClientQuotasResponse:
    bad = [c for c in request.components if c.match_type not in MATCH_TYPES]
    if bad:
        rctx.broker.metrics.error("describe_client_quotas", "INVALID_REQUEST")
        return DescribeClientQuotasResponse(
            error_code=ErrorCode.INVALID_REQUEST,
            error_message=f"unknown match type {bad[0].match_type}",
            entries=None,
        )
    return DescribeClientQuotasResponse(error_code=ErrorCode.NONE, entries=())
