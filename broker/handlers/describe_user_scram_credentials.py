"""DescribeUserScramCredentials (key 50), v0 (KIP-554).

Behaviour: each named user's SCRAM mechanisms and iteration counts from the
broker's credential store (a single node: ``<data-dir>/security/users.json``, what
``ailurus user`` manages; cluster mode: the cluster's credentials in etcd, from
the watched cache); a null or empty list means every user with credentials. Per-user errors
RESOURCE_NOT_FOUND (no credentials) and DUPLICATE_RESOURCE (named twice), as
:mod:`broker.security.scram_admin` decides. Salts and keys are never returned.
Version notes: flexible from v0.
"""

from __future__ import annotations

from broker.net.dispatch import handler
from broker.net.request import RequestContext
from broker.security import scram_admin
from protocol.error_codes import ErrorCode
from protocol.messages.describe_user_scram_credentials import (
    CredentialInfo,
    DescribeUserScramCredentialsRequest,
    DescribeUserScramCredentialsResponse,
    DescribeUserScramCredentialsResult,
)


@handler(api_key=50, name="describe_user_scram_credentials", max_version=0)
def describe_user_scram_credentials(
    rctx: RequestContext, request: DescribeUserScramCredentialsRequest
) -> DescribeUserScramCredentialsResponse:
    names = None if request.users is None else [u.name for u in request.users]
    found = scram_admin.describe(rctx.broker.security.credentials, names)
    return DescribeUserScramCredentialsResponse(
        error_code=ErrorCode.NONE,
        results=tuple(
            DescribeUserScramCredentialsResult(
                user=user,
                error_code=code,
                error_message=message,
                credential_infos=tuple(
                    CredentialInfo(mechanism=m, iterations=i) for m, i in infos
                ),
            )
            for user, (code, message), infos in found
        ),
    )
