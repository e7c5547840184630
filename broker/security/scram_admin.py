"""SCRAM credential administration over the user store, by Kafka's rules (KIP-554).

What DescribeUserScramCredentials (50) and AlterUserScramCredentials (51) answer,
per user, as Kafka's ``ScramControlManager`` and ``KafkaApis`` decide it:

- mechanisms travel as numbers: 1 SCRAM-SHA-256, 2 SCRAM-SHA-512; any other is
  UNSUPPORTED_SASL_MECHANISM;
- a user named twice in one request (twice for one mechanism when altering, or
  in a describe list) is DUPLICATE_RESOURCE; an empty user name, an iteration
  count outside 4096–16384 or an empty salt or salted password is
  UNACCEPTABLE_CREDENTIAL;
- describing a user without credentials, or deleting a credential that does not
  exist, is RESOURCE_NOT_FOUND;
- a user's alterations succeed or fail together.

Upsertions carry the salt and salted password the client computed; the store keeps
only StoredKey and ServerKey derived from them
(:func:`broker.security.credentials.credential_from_salted`). The store is the
broker's :class:`~broker.security.credential_store.CredentialStore`: the users file
of a single node, etcd in cluster mode.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from broker.security.credential_store import CredentialStore
from broker.security.credentials import (
    MAX_ITERATIONS,
    MIN_ITERATIONS,
    ScramCredential,
    credential_from_salted,
)
from protocol.error_codes import ErrorCode

MECHANISM_IDS: Final = {"SCRAM-SHA-256": 1, "SCRAM-SHA-512": 2}
MECHANISMS: Final = {v: k for k, v in MECHANISM_IDS.items()}

Outcome = tuple[ErrorCode, str | None]
OK: Final[Outcome] = (ErrorCode.NONE, None)


@dataclass(frozen=True, slots=True, kw_only=True)
class Upsertion:
    user: str
    mechanism: int
    iterations: int
    salt: bytes
    salted_password: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Deletion:
    user: str
    mechanism: int


def describe(
    store: CredentialStore, users: Iterable[str] | None
) -> list[tuple[str, Outcome, list[tuple[int, int]]]]:
    """(user, outcome, [(mechanism id, iterations)]) for each user asked about (all
    users with credentials when ``users`` is None or empty)."""
    known = store.scram_users()
    names = list(users or ())
    if not names:
        names = sorted(known)
    counts = Counter(names)
    out: list[tuple[str, Outcome, list[tuple[int, int]]]] = []
    for name in dict.fromkeys(names):
        credentials = known.get(name)
        if counts[name] > 1:
            outcome: Outcome = (
                ErrorCode.DUPLICATE_RESOURCE,
                f"Cannot describe SCRAM credentials for the same user twice in a "
                f"single request: {name}",
            )
            out.append((name, outcome, []))
        elif not credentials:
            outcome = (
                ErrorCode.RESOURCE_NOT_FOUND,
                f"Attempt to describe a user credential that does not exist: {name}",
            )
            out.append((name, outcome, []))
        else:
            infos = [
                (MECHANISM_IDS[m], c.iterations)
                for m, c in sorted(credentials.items())
                if m in MECHANISM_IDS
            ]
            out.append((name, OK, infos))
    return out


def _check(user: str, mechanism: int, up: Upsertion | None) -> Outcome:
    if not user:
        return ErrorCode.UNACCEPTABLE_CREDENTIAL, "Username must not be empty"
    if mechanism not in MECHANISMS:
        return (
            ErrorCode.UNSUPPORTED_SASL_MECHANISM,
            f"Unknown SCRAM mechanism {mechanism}",
        )
    if up is None:
        return OK
    if not MIN_ITERATIONS <= up.iterations <= MAX_ITERATIONS:
        return (
            ErrorCode.UNACCEPTABLE_CREDENTIAL,
            f"Iterations must be between {MIN_ITERATIONS} and {MAX_ITERATIONS}",
        )
    if not up.salt or not up.salted_password:
        return (
            ErrorCode.UNACCEPTABLE_CREDENTIAL,
            "Salt and salted password must not be empty",
        )
    return OK


async def alter(
    store: CredentialStore, deletions: list[Deletion], upsertions: list[Upsertion]
) -> dict[str, Outcome]:
    """Apply the alterations; the outcome per user, in request order.

    Raises:
        CredentialStoreError: nothing could be stored.
    """
    order = [d.user for d in deletions] + [u.user for u in upsertions]
    results: dict[str, Outcome] = dict.fromkeys(order, OK)
    every: list[Deletion | Upsertion] = [*deletions, *upsertions]
    seen = Counter((a.user, a.mechanism) for a in every)
    for a in every:
        if results[a.user] != OK:
            continue
        if seen[(a.user, a.mechanism)] > 1:
            results[a.user] = (
                ErrorCode.DUPLICATE_RESOURCE,
                "A user credential cannot be altered twice in the same request",
            )
            continue
        results[a.user] = _check(
            a.user, a.mechanism, a if isinstance(a, Upsertion) else None
        )
    good = {u for u, r in results.items() if r == OK}
    new: list[tuple[str, ScramCredential]] = [
        (
            u.user,
            credential_from_salted(
                MECHANISMS[u.mechanism], u.salted_password, u.salt, u.iterations
            ),
        )
        for u in upsertions
        if u.user in good
    ]
    gone = [(d.user, MECHANISMS[d.mechanism]) for d in deletions if d.user in good]
    if new or gone:
        for user, _mech in await store.alter_scram(new, gone):
            results[user] = (
                ErrorCode.RESOURCE_NOT_FOUND,
                "Attempt to delete a user credential that does not exist",
            )
    return results
