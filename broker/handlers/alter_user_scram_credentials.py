"""AlterUserScramCredentials (key 51), v0 (KIP-554).

Behaviour: upserts and deletes SCRAM credentials in the broker's credential store
(a single node: ``<data-dir>/security/users.json``, what ``ailurus user`` manages,
fsynced in a worker thread before the answer; cluster mode: etcd, written with
compare-and-set and seen by this broker's cache before the answer, so every
broker of the cluster authenticates with it); an upsertion carries the salt and
salted password the client computed, and the store keeps only the keys derived
from them. The new credential authenticates SCRAM and PLAIN logins at once. One
result per user, with Kafka's errors (:mod:`broker.security.scram_admin`):
UNSUPPORTED_SASL_MECHANISM, DUPLICATE_RESOURCE, UNACCEPTABLE_CREDENTIAL,
RESOURCE_NOT_FOUND; UNKNOWN_SERVER_ERROR when the store cannot be written.
Version notes: flexible from v0.
"""

from __future__ import annotations

import structlog

from broker.net.dispatch import handler
from broker.net.request import Deferred, RequestContext
from broker.security import scram_admin
from broker.security.credential_store import CredentialStoreError
from protocol.error_codes import ErrorCode
from protocol.messages.alter_user_scram_credentials import (
    AlterUserScramCredentialsRequest,
    AlterUserScramCredentialsResponse,
    AlterUserScramCredentialsResult,
)

log = structlog.get_logger("broker.security")


@handler(api_key=51, name="alter_user_scram_credentials", max_version=0)
def alter_user_scram_credentials(
    rctx: RequestContext, request: AlterUserScramCredentialsRequest
) -> Deferred:
    store = rctx.broker.security.credentials
    deletions = [
        scram_admin.Deletion(user=d.name, mechanism=d.mechanism)
        for d in request.deletions
    ]
    upsertions = [
        scram_admin.Upsertion(
            user=u.name,
            mechanism=u.mechanism,
            iterations=u.iterations,
            salt=u.salt,
            salted_password=u.salted_password,
        )
        for u in request.upsertions
    ]

    async def alter() -> AlterUserScramCredentialsResponse:
        try:
            results = await scram_admin.alter(store, deletions, upsertions)
        except CredentialStoreError as e:
            log.error("scram_alter_failed", error=str(e))
            failed = (
                ErrorCode.UNKNOWN_SERVER_ERROR,
                "the user store cannot be written",
            )
            users = [d.user for d in deletions] + [u.user for u in upsertions]
            results = dict.fromkeys(users, failed)
        for user, (code, _) in results.items():
            if code == ErrorCode.NONE:
                log.info("scram_credentials_altered", user=user, peer=rctx.peer)
        return AlterUserScramCredentialsResponse(
            results=tuple(
                AlterUserScramCredentialsResult(
                    user=user, error_code=code, error_message=message
                )
                for user, (code, message) in results.items()
            )
        )

    return Deferred(alter)
