"""Kafka's rules for SCRAM credential alterations and descriptions (KIP-554), over a
single node's credential store (the users file in a temporary data dir)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import anyio

from broker.security import scram_admin
from broker.security.credential_store import FileCredentials
from broker.security.credentials import UserStore, verify_password
from broker.security.scram_admin import Deletion, Outcome, Upsertion
from protocol.error_codes import ErrorCode as E


def alter(
    store: UserStore, deletions: list[Deletion], upsertions: list[Upsertion]
) -> dict[str, Outcome]:
    return anyio.run(scram_admin.alter, FileCredentials(store), deletions, upsertions)


def describe(
    store: UserStore, users: list[str] | None
) -> list[tuple[str, Outcome, list[tuple[int, int]]]]:
    return scram_admin.describe(FileCredentials(store), users)


def upsert(
    user: str, mechanism: int = 1, iterations: int = 4096, pw: bytes = b"pw"
) -> Upsertion:
    salt = b"salt-" + user.encode()
    name = "sha256" if mechanism == 1 else "sha512"
    salted = (
        hashlib.pbkdf2_hmac(name, pw, salt, iterations) if mechanism in (1, 2) else b"x"
    )
    return Upsertion(
        user=user,
        mechanism=mechanism,
        iterations=iterations,
        salt=salt,
        salted_password=salted,
    )


def test_an_upsertion_stores_keys_that_verify_the_password(tmp_path: Path) -> None:
    """The salted password a client computed becomes a credential that verifies the
    password (PLAIN) and is described with its iterations."""
    store = UserStore.in_data_dir(tmp_path)
    assert alter(store, [], [upsert("alice", 2, 8192)]) == {"alice": scram_admin.OK}
    cred = store.scram_credential("alice", "SCRAM-SHA-512")
    assert cred is not None
    assert verify_password(cred, b"pw")
    assert not verify_password(cred, b"other")
    assert describe(store, ["alice"]) == [("alice", scram_admin.OK, [(2, 8192)])]


def test_errors_per_user(tmp_path: Path) -> None:
    """Unknown mechanism, bad iterations, empty name, duplicates and deleting what
    does not exist each fail their user only; the others are applied."""
    store = UserStore.in_data_dir(tmp_path)
    results = alter(
        store,
        [Deletion(user="ghost", mechanism=1), Deletion(user="dup", mechanism=1)],
        [
            upsert("ok"),
            upsert("mech", mechanism=3),
            upsert("iters", iterations=100),
            upsert(""),
            upsert("dup"),
        ],
    )
    codes = {u: code for u, (code, _) in results.items()}
    assert codes == {
        "ghost": E.RESOURCE_NOT_FOUND,
        "dup": E.DUPLICATE_RESOURCE,
        "ok": E.NONE,
        "mech": E.UNSUPPORTED_SASL_MECHANISM,
        "iters": E.UNACCEPTABLE_CREDENTIAL,
        "": E.UNACCEPTABLE_CREDENTIAL,
    }
    assert set(store.users()) == {"ok"}


def test_a_users_alterations_fail_together(tmp_path: Path) -> None:
    """A failed deletion keeps the same user's upsertion from being applied."""
    store = UserStore.in_data_dir(tmp_path)
    results = alter(store, [Deletion(user="bob", mechanism=2)], [upsert("bob", 1)])
    assert results["bob"][0] == E.RESOURCE_NOT_FOUND
    assert store.get("bob") is None


def test_deleting_the_last_credential_keeps_acls(tmp_path: Path) -> None:
    """A user with ACLs keeps them (and its record) when its last credential goes;
    one without ACLs disappears."""
    store = UserStore.in_data_dir(tmp_path)
    alter(store, [], [upsert("carol"), upsert("dave")])
    store.set_acls(
        "carol", ({"resource": "topic", "name": "t", "operations": ["read"]},)
    )
    gone = [Deletion(user="carol", mechanism=1), Deletion(user="dave", mechanism=1)]
    assert set(alter(store, gone, []).values()) == {scram_admin.OK}
    carol = store.get("carol")
    assert carol is not None
    assert not carol.credentials
    assert carol.acls
    assert store.get("dave") is None


def test_describe_errors(tmp_path: Path) -> None:
    """Unknown users are RESOURCE_NOT_FOUND, a user named twice DUPLICATE_RESOURCE;
    no names means every user with credentials."""
    store = UserStore.in_data_dir(tmp_path)
    alter(store, [], [upsert("erin"), upsert("erin", 2)])
    found = {
        u: (code, infos)
        for u, (code, _), infos in describe(store, ["erin", "nobody", "twice", "twice"])
    }
    assert found["erin"] == (E.NONE, [(1, 4096), (2, 4096)])
    assert found["nobody"][0] == E.RESOURCE_NOT_FOUND
    assert found["twice"][0] == E.DUPLICATE_RESOURCE
    assert [u for u, _, _ in describe(store, None)] == ["erin"]
