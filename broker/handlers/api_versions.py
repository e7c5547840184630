"""ApiVersions (key 18), v0–4.

Behaviour: advertises exactly what this broker implements: the codec's versions
intersected with the registered handlers (``broker.net.dispatch.advertised_versions``).
v3+ also carries the feature flags (KIP-584) a Kafka 3.9 broker answers for the API
versions served: ``metadata.version`` supported 1 (3.0-IV1) to 21 (3.9-IV0) and
finalized at 21, as ``inter.broker.protocol.version`` (3.9-IV0) says in
DescribeConfigs. No other feature is listed: ``kraft.version`` describes a KRaft
quorum we do not run, and Kafka 3.9 leaves out ``group.version`` and
``transaction.version`` too (level 0 in 3.9: classic groups only, and the
transaction protocol before KIP-890's server-side epoch bump), which is what this
broker serves. The features
cannot change, so their epoch is a constant. An unsupported ApiVersions version is
answered by the connection in the v0 body format with UNSUPPORTED_VERSION
(KIP-511), before this handler is reached.
Version notes: v3 flexible, carries client software name/version and the features
(tagged fields); the response header is always v0.
"""

from __future__ import annotations

from typing import Final

from broker.net.dispatch import advertised_versions, handler
from broker.net.request import RequestContext
from protocol.error_codes import ErrorCode
from protocol.messages.api_versions import (
    ApiVersion,
    ApiVersionsRequest,
    ApiVersionsResponse,
    FinalizedFeatureKey,
    SupportedFeatureKey,
)

METADATA_VERSION: Final = "metadata.version"
# MetadataVersion feature levels: IBP_3_0_IV1 (the first KRaft one) .. IBP_3_9_IV0
METADATA_VERSION_MIN: Final = 1
METADATA_VERSION_3_9_IV0: Final = 21
FINALIZED_FEATURES_EPOCH: Final = 1

SUPPORTED_FEATURES: Final = (
    SupportedFeatureKey(
        name=METADATA_VERSION,
        min_version=METADATA_VERSION_MIN,
        max_version=METADATA_VERSION_3_9_IV0,
    ),
)
FINALIZED_FEATURES: Final = (
    FinalizedFeatureKey(
        name=METADATA_VERSION,
        max_version_level=METADATA_VERSION_3_9_IV0,
        min_version_level=METADATA_VERSION_3_9_IV0,
    ),
)

_cached: ApiVersionsResponse | None = None


def _response() -> ApiVersionsResponse:
    global _cached
    if _cached is None:
        _cached = ApiVersionsResponse(
            error_code=ErrorCode.NONE,
            api_keys=tuple(
                ApiVersion(api_key=k, min_version=lo, max_version=hi)
                for k, (lo, hi) in advertised_versions().items()
            ),
            supported_features=SUPPORTED_FEATURES,
            finalized_features_epoch=FINALIZED_FEATURES_EPOCH,
            finalized_features=FINALIZED_FEATURES,
        )
    return _cached


@handler(api_key=18, name="api_versions", max_version=4)
def api_versions(
    rctx: RequestContext, request: ApiVersionsRequest
) -> ApiVersionsResponse:
    return _response()
