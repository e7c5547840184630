"""SaslAuthenticate (key 36), v0–2.

Behaviour: feeds one client token to the connection's SASL state machine
(:mod:`broker.security.sasl`) and answers the server token. Success makes the
connection's principal the user; failure → SASL_AUTHENTICATION_FAILED with Kafka's
message, logged (``sasl_authentication_failed``), counted by the failed-login limiter
(per user and host, and per host with a higher threshold) and answered only after
``connection.failed.authentication.delay.ms``. A locked-out host is refused before
its token is looked at; a user locked out from this host is refused even with the
right password. Out of order (no handshake, after success or failure, or on a
listener without SASL) → ILLEGAL_SASL_STATE.
PLAIN's password check (PBKDF2) runs in a worker thread; SCRAM steps are HMACs only.
Version notes: v1 adds session_lifetime_ms (0: no re-authentication, KIP-368);
v2 flexible.
"""

from __future__ import annotations

import anyio
import structlog

from broker.net.dispatch import handler
from broker.net.request import Deferred, HandlerResult, RequestContext
from broker.security.sasl import (
    Authenticated,
    Challenge,
    IllegalSaslState,
    Rejected,
    SaslAuthenticator,
    SaslState,
    Step,
)
from broker.security.service import SecurityService
from broker.security.session import ConnectionSecurity
from protocol.error_codes import ErrorCode
from protocol.messages.sasl_authenticate import (
    SaslAuthenticateRequest,
    SaslAuthenticateResponse,
)

log = structlog.get_logger("broker.security")


def _response(
    code: ErrorCode, message: str | None, token: bytes = b""
) -> SaslAuthenticateResponse:
    return SaslAuthenticateResponse(
        error_code=code, error_message=message, auth_bytes=token, session_lifetime_ms=0
    )


@handler(api_key=36, name="sasl_authenticate", max_version=2)
def sasl_authenticate(
    rctx: RequestContext, request: SaslAuthenticateRequest
) -> HandlerResult:
    svc = rctx.broker.security
    conn = rctx.security
    sasl = None if conn is None else conn.sasl
    if conn is None or sasl is None or sasl.state is not SaslState.AUTHENTICATE:
        return _response(
            ErrorCode.ILLEGAL_SASL_STATE,
            "SaslAuthenticate is not expected in this state",
        )
    wait = svc.limiter.retry_after(conn.peer_host)
    if wait > 0:
        sasl.fail()
        return _reject(
            rctx, svc, conn, sasl, None, "rate_limited", _locked_message(wait)
        )
    token = bytes(request.auth_bytes)
    if sasl.mechanism == "PLAIN":

        async def plain() -> SaslAuthenticateResponse:
            step = await anyio.to_thread.run_sync(sasl.authenticate, token)
            result = _finish(rctx, svc, conn, sasl, step)
            if isinstance(result, Deferred):
                out = await result.run()
                assert isinstance(out, SaslAuthenticateResponse)
                return out
            return result

        return Deferred(plain)
    try:
        step = sasl.authenticate(token)
    except IllegalSaslState:  # pragma: no cover - state checked above
        return _response(ErrorCode.ILLEGAL_SASL_STATE, "illegal SASL state")
    return _finish(rctx, svc, conn, sasl, step)


def _finish(
    rctx: RequestContext,
    svc: SecurityService,
    conn: ConnectionSecurity,
    sasl: SaslAuthenticator,
    step: Step,
) -> SaslAuthenticateResponse | Deferred:
    user = sasl.attempted_user
    if user is not None and not isinstance(step, Rejected):
        wait = svc.limiter.retry_after(conn.peer_host, user)
        if wait > 0:
            sasl.fail()
            return _reject(
                rctx, svc, conn, sasl, user, "rate_limited", _locked_message(wait)
            )
    if isinstance(step, Challenge):
        return _response(ErrorCode.NONE, None, step.token)
    if isinstance(step, Authenticated):
        svc.limiter.success(conn.peer_host, step.user)
        log.info(
            "sasl_authenticated",
            peer=rctx.peer,
            listener=rctx.listener,
            user=step.user,
            mechanism=sasl.mechanism,
        )
        return _response(ErrorCode.NONE, None, step.token)
    return _reject(rctx, svc, conn, sasl, step.user, step.reason, step.message)


def _locked_message(wait: float) -> str:
    return f"Too many failed logins; try again in {max(1, round(wait))} s"


def _reject(
    rctx: RequestContext,
    svc: SecurityService,
    conn: ConnectionSecurity,
    sasl: SaslAuthenticator,
    user: str | None,
    reason: str,
    message: str,
) -> Deferred:
    locked = (
        False if reason == "rate_limited" else svc.limiter.failure(conn.peer_host, user)
    )
    log.warning(
        "sasl_authentication_failed",
        peer=rctx.peer,
        listener=rctx.listener,
        user=user,
        mechanism=sasl.mechanism,
        reason=reason,
        locked_out=locked,
    )
    delay = svc.failed_auth_delay_s

    async def answer() -> SaslAuthenticateResponse:
        if delay > 0:
            await anyio.sleep(delay)
        return _response(ErrorCode.SASL_AUTHENTICATION_FAILED, message)

    return Deferred(answer)
