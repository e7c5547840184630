"""Where SCRAM credentials live: the store protocol and a single node's users file.

:class:`CredentialStore` is what SASL reads (:meth:`~CredentialStore.scram_credential`,
cheap, from memory, on the event loop) and what DescribeUserScramCredentials,
AlterUserScramCredentials and the admin API's ``/v1/security/users`` routes read and
write. A single node keeps its credentials in the users file of its data dir
(:class:`FileCredentials` over :class:`~broker.security.credentials.UserStore`, the
file ``ailurus user`` manages; writes are fsynced in a worker thread). In cluster
mode they live in etcd and every broker reads them from its watched cache
(:mod:`broker.cluster.scram`), with the local file as a fallback for users the
cluster does not know.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

import anyio

from broker.security.credentials import (
    CredentialError,
    ScramCredential,
    UserStore,
    hash_name,
    validate_user,
)


class CredentialStoreError(Exception):
    """The credentials could not be read or written (answered as a server error)."""


class CredentialStore(Protocol):
    """The SCRAM credentials of the users a broker authenticates."""

    def scram_credential(self, user: str, mechanism: str) -> ScramCredential | None:
        """The user's credential for ``mechanism`` (None: no such credential)."""
        ...

    def scram_users(self) -> dict[str, Mapping[str, ScramCredential]]:
        """Every user with SCRAM credentials, and its credentials by mechanism."""
        ...

    def user_names(self) -> list[str]:
        """The users the admin API lists, sorted."""
        ...

    async def alter_scram(
        self,
        upsertions: Iterable[tuple[str, ScramCredential]],
        deletions: Iterable[tuple[str, str]],
    ) -> set[tuple[str, str]]:
        """Set ``(user, credential)`` and delete ``(user, mechanism)`` pairs; the
        deletions of credentials that do not exist are returned, and nothing else
        of those users changes.

        Raises:
            CredentialStoreError: nothing could be stored.
        """
        ...

    async def set_password(
        self, name: str, password: str, mechanism: str, *, create: bool
    ) -> bool:
        """Give ``name`` exactly one credential, of ``password`` for ``mechanism``;
        False (and nothing changed) when ``create`` and the user exists already.

        Raises:
            CredentialError: a bad name, password or mechanism.
            CredentialStoreError: nothing could be stored.
        """
        ...

    async def delete_user(self, name: str) -> bool:
        """Remove the user's credentials; False if it had none.

        Raises:
            CredentialStoreError: nothing could be removed.
        """
        ...


def check_password(name: str, password: str, mechanism: str) -> None:
    """Raise CredentialError for a bad user name, an empty password or an unknown
    mechanism (before anything is derived or written)."""
    validate_user(name)
    if not password:
        raise CredentialError("the password must not be empty")
    hash_name(mechanism)


class FileCredentials:
    """A single node's credentials: the users file of its data dir."""

    def __init__(self, users: UserStore) -> None:
        self.users = users

    def scram_credential(self, user: str, mechanism: str) -> ScramCredential | None:
        return self.users.scram_credential(user, mechanism)

    def scram_users(self) -> dict[str, Mapping[str, ScramCredential]]:
        return {
            n: r.credentials for n, r in self.users.users().items() if r.credentials
        }

    def user_names(self) -> list[str]:
        return sorted(self.users.users())

    async def alter_scram(
        self,
        upsertions: Iterable[tuple[str, ScramCredential]],
        deletions: Iterable[tuple[str, str]],
    ) -> set[tuple[str, str]]:
        new, gone = list(upsertions), list(deletions)
        try:
            return await anyio.to_thread.run_sync(self.users.alter_scram, new, gone)
        except (OSError, CredentialError) as e:
            raise CredentialStoreError(str(e)) from e

    async def set_password(
        self, name: str, password: str, mechanism: str, *, create: bool
    ) -> bool:
        def write() -> bool:
            if create and self.users.get(name) is not None:
                return False
            self.users.set_password(name, password, mechanisms=(mechanism,))
            return True

        try:
            return await anyio.to_thread.run_sync(write)
        except OSError as e:
            raise CredentialStoreError(str(e)) from e

    async def delete_user(self, name: str) -> bool:
        try:
            return await anyio.to_thread.run_sync(self.users.delete, name)
        except (OSError, CredentialError) as e:
            raise CredentialStoreError(str(e)) from e
