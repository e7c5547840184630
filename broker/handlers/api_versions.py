"""ApiVersions (key 18), v0–4.

Behaviour: advertises exactly what this broker implements: the codec's versions
intersected with the registered handlers (``broker.net.dispatch.advertised_versions``).
An unsupported ApiVersions version is answered by the connection in the v0 body
format with UNSUPPORTED_VERSION (KIP-511), before this handler is reached.
Version notes: v3 flexible, carries client software name/version; the response
header is always v0.
"""

from __future__ import annotations

from broker.net.dispatch import advertised_versions, handler
from broker.net.request import RequestContext
from protocol.error_codes import ErrorCode
from protocol.messages.api_versions import (
    ApiVersion,
    ApiVersionsRequest,
    ApiVersionsResponse,
)

_cached: tuple[ApiVersion, ...] | None = None


def _api_keys() -> tuple[ApiVersion, ...]:
    global _cached
    if _cached is None:
        _cached = tuple(
            ApiVersion(api_key=k, min_version=lo, max_version=hi)
            for k, (lo, hi) in advertised_versions().items()
        )
    return _cached


@handler(api_key=18, name="api_versions", max_version=4)
def api_versions(
    rctx: RequestContext, request: ApiVersionsRequest
) -> ApiVersionsResponse:
    return ApiVersionsResponse(error_code=ErrorCode.NONE, api_keys=_api_keys())
