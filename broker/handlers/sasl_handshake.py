"""SaslHandshake (key 17), v0–1.

Behaviour: on a SASL listener, before authentication, selects the mechanism and
answers the enabled ones; an unknown mechanism → UNSUPPORTED_SASL_MECHANISM (the
client may try another). A second handshake, a handshake after authentication or on
a listener without SASL → ILLEGAL_SASL_STATE (as Kafka's KafkaApis answers).
Version notes: v1 (KIP-152) is followed by SaslAuthenticate requests carrying the
tokens; v0 would be followed by raw size-prefixed tokens, which this broker does not
accept, so only v1 is served (every client since Kafka 1.0 uses it).
"""

from __future__ import annotations

import structlog

from broker.net.dispatch import handler
from broker.net.request import RequestContext
from broker.security.sasl import SaslState
from protocol.error_codes import ErrorCode
from protocol.messages.sasl_handshake import (
    SaslHandshakeRequest,
    SaslHandshakeResponse,
)

log = structlog.get_logger("broker.security")


@handler(api_key=17, name="sasl_handshake", min_version=1, max_version=1)
def sasl_handshake(
    rctx: RequestContext, request: SaslHandshakeRequest
) -> SaslHandshakeResponse:
    svc = rctx.broker.security
    conn = rctx.security
    mechanisms = svc.settings.mechanisms
    sasl = None if conn is None else conn.sasl
    if sasl is None or sasl.state is not SaslState.HANDSHAKE:
        return SaslHandshakeResponse(
            error_code=ErrorCode.ILLEGAL_SASL_STATE, mechanisms=mechanisms
        )
    if not sasl.handshake(request.mechanism, version=rctx.api_version):
        log.info(
            "sasl_mechanism_unsupported", peer=rctx.peer, mechanism=request.mechanism
        )
        return SaslHandshakeResponse(
            error_code=ErrorCode.UNSUPPORTED_SASL_MECHANISM, mechanisms=mechanisms
        )
    return SaslHandshakeResponse(error_code=ErrorCode.NONE, mechanisms=mechanisms)
