"""SCRAM credentials in cluster mode over the in-memory store: the value in Kafka's
ZooKeeper layout, and two brokers' ``ClusterCredentials`` each reading what the
other wrote from its cache, with the local users file as a fallback."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from broker.cluster.cache import MetadataCache
from broker.cluster.fake import MemoryStore
from broker.cluster.keys import Keys
from broker.cluster.model import BadRecord
from broker.cluster.scram import ClusterCredentials
from broker.cluster.scram_records import (
    credential_text,
    decode_user_config,
    encode_user_config,
    parse_credential,
    scram_of,
    with_scram,
)
from broker.security import scram_admin
from broker.security.credentials import (
    ScramCredential,
    UserStore,
    make_credential,
    verify_password,
)
from protocol.error_codes import ErrorCode

CRED = ScramCredential(
    mechanism="SCRAM-SHA-256",
    salt=b"salt",
    iterations=4096,
    stored_key=b"stored",
    server_key=b"server",
)


def test_a_credential_is_written_as_kafka_writes_it() -> None:
    """The value is Kafka's user znode: version 1, one config per mechanism in
    ``ScramCredentialUtils``' text form; other configs survive a change."""
    text = "salt=c2FsdA==,stored_key=c3RvcmVk,server_key=c2VydmVy,iterations=4096"
    assert credential_text(CRED) == text
    value = encode_user_config(
        with_scram({"producer_byte_rate": "1024"}, {"SCRAM-SHA-256": CRED})
    )
    assert json.loads(value) == {
        "version": 1,
        "config": {"SCRAM-SHA-256": text, "producer_byte_rate": "1024"},
    }
    config = decode_user_config(value)
    assert scram_of(config) == {"SCRAM-SHA-256": CRED}
    assert with_scram(config, {}) == {"producer_byte_rate": "1024"}


@given(
    salt=st.binary(min_size=1, max_size=64),
    stored=st.binary(min_size=1, max_size=64),
    server=st.binary(min_size=1, max_size=64),
    iterations=st.integers(4096, 16384),
    mechanism=st.sampled_from(["SCRAM-SHA-256", "SCRAM-SHA-512"]),
)
def test_credential_text_round_trips(
    salt: bytes, stored: bytes, server: bytes, iterations: int, mechanism: str
) -> None:
    """Any credential reads back from its text form unchanged."""
    cred = ScramCredential(
        mechanism=mechanism,
        salt=salt,
        iterations=iterations,
        stored_key=stored,
        server_key=server,
    )
    assert parse_credential(mechanism, credential_text(cred)) == cred


@pytest.mark.parametrize(
    "value",
    [
        b"not json",
        b'{"version": 2, "config": {}}',
        b'{"version": 1, "config": {"SCRAM-SHA-256": 7}}',
        b'{"version": 1, "config": {"SCRAM-SHA-256": "salt=c2FsdA=="}}',
        b'{"version": 1, "config": {"SCRAM-SHA-256": "salt=!,stored_key=a,'
        b'server_key=a,iterations=4096"}}',
    ],
)
def test_damaged_values_are_refused(value: bytes) -> None:
    """A value that is not a user znode with valid credentials raises BadRecord."""
    with pytest.raises(BadRecord):
        scram_of(decode_user_config(value))


# -- two brokers over one store ---------------------------------------------------------


async def _pump(store: MemoryStore, cache: MetadataCache, keys: Keys) -> None:
    snapshot = await store.get_prefix(keys.prefix + "/")
    cache.load(snapshot)
    async for event in store.watch_prefix(keys.prefix + "/", snapshot.revision + 1):
        cache.apply([event])


def _upsert(user: str, password: bytes, mechanism: int = 1) -> scram_admin.Upsertion:
    name = "sha256" if mechanism == 1 else "sha512"
    salt = b"salt-" + user.encode()
    return scram_admin.Upsertion(
        user=user,
        mechanism=mechanism,
        iterations=4096,
        salt=salt,
        salted_password=hashlib.pbkdf2_hmac(name, password, salt, 4096),
    )


async def _until(cache: MetadataCache, cond: Callable[[], bool]) -> None:
    with anyio.fail_after(10):
        while not cond():
            await cache.wait_changed(cache.version)


@pytest.mark.anyio
async def test_credentials_made_through_one_broker_authenticate_on_another(
    tmp_path: Path,
) -> None:
    """A user upserted through broker 1 verifies on broker 2; a local user of
    broker 2's data dir authenticates there until the cluster has the same name;
    a deletion through broker 2 makes broker 1 forget the user."""
    store, keys = MemoryStore(), Keys("/c")
    caches = [MetadataCache(keys, n, "c") for n in (1, 2)]
    locals_ = [UserStore.in_data_dir(tmp_path / f"d{n}") for n in (1, 2)]
    locals_[1].set_password("boot", "local-pw", mechanisms=("SCRAM-SHA-256",))
    brokers = [
        ClusterCredentials(store, keys, c, local=u, timeout_s=10)
        for c, u in zip(caches, locals_, strict=True)
    ]
    async with anyio.create_task_group() as tg:
        for cache in caches:
            tg.start_soon(_pump, store, cache, keys)
        await anyio.lowlevel.checkpoint()  # the pumps load before the writes

        # the local fallback: broker 2 knows "boot" from its users file only
        local = brokers[1].scram_credential("boot", "SCRAM-SHA-256")
        assert local is not None
        assert verify_password(local, b"local-pw")
        assert brokers[0].scram_credential("boot", "SCRAM-SHA-256") is None
        assert brokers[1].scram_users() == {}

        results = await scram_admin.alter(
            brokers[0], [], [_upsert("alice", b"pw-a"), _upsert("boot", b"pw-b", 2)]
        )
        assert results == {"alice": scram_admin.OK, "boot": scram_admin.OK}
        await _until(
            caches[1], lambda: set(brokers[1].scram_users()) == {"alice", "boot"}
        )
        alice = brokers[1].scram_credential("alice", "SCRAM-SHA-256")
        assert alice is not None
        assert verify_password(alice, b"pw-a")
        # the cluster's credentials of "boot" replace its local ones
        assert brokers[1].scram_credential("boot", "SCRAM-SHA-256") is None
        boot = brokers[1].scram_credential("boot", "SCRAM-SHA-512")
        assert boot is not None
        assert verify_password(boot, b"pw-b")
        assert brokers[1].user_names() == ["alice", "boot"]
        stored = await store.get(keys.user("alice"))
        assert stored is not None
        assert b"pw-a" not in stored.value

        # deleting what is not there fails the user's alterations together
        results = await scram_admin.alter(
            brokers[1],
            [scram_admin.Deletion(user="alice", mechanism=2)],
            [_upsert("alice", b"other")],
        )
        assert results["alice"][0] == ErrorCode.RESOURCE_NOT_FOUND
        assert brokers[0].scram_credential("alice", "SCRAM-SHA-256") == alice

        gone = [
            scram_admin.Deletion(user="alice", mechanism=1),
            scram_admin.Deletion(user="boot", mechanism=2),
        ]
        assert set((await scram_admin.alter(brokers[1], gone, [])).values()) == {
            scram_admin.OK
        }
        await _until(caches[0], lambda: not brokers[0].scram_users())
        assert brokers[0].scram_credential("alice", "SCRAM-SHA-256") is None
        assert await store.get(keys.user("alice")) is None
        # with no cluster credential left, broker 2's local "boot" counts again
        assert brokers[1].scram_credential("boot", "SCRAM-SHA-256") == local
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_admin_writes_and_concurrent_mechanisms(tmp_path: Path) -> None:
    """Two brokers setting different mechanisms of one user at once keep both
    (compare-and-set); creating an existing user is refused; deleting removes
    the key; a damaged value authenticates nobody."""
    store, keys = MemoryStore(), Keys("/c")
    caches = [MetadataCache(keys, n, "c") for n in (1, 2)]
    brokers = [
        ClusterCredentials(
            store, keys, c, local=UserStore.in_data_dir(tmp_path), timeout_s=10
        )
        for c in caches
    ]
    async with anyio.create_task_group() as tg:
        for cache in caches:
            tg.start_soon(_pump, store, cache, keys)
        await anyio.lowlevel.checkpoint()
        async with anyio.create_task_group() as writers:
            for i, mech in enumerate((1, 2)):
                writers.start_soon(
                    scram_admin.alter, brokers[i], [], [_upsert("bob", b"pw", mech)]
                )
        await _until(
            caches[0], lambda: len(caches[0].scram_users().get("bob", {})) == 2
        )

        assert not await brokers[1].set_password(
            "bob", "new", "SCRAM-SHA-512", create=True
        )
        assert await brokers[1].set_password(
            "carol", "pw-c", "SCRAM-SHA-512", create=True
        )
        assert await brokers[0].set_password(
            "bob", "pw-2", "SCRAM-SHA-512", create=False
        )
        await _until(caches[1], lambda: "carol" in brokers[1].scram_users())
        await _until(
            caches[1],
            lambda: set(caches[1].scram_users()["bob"]) == {"SCRAM-SHA-512"},
        )
        bob = brokers[1].scram_credential("bob", "SCRAM-SHA-512")
        assert bob is not None
        assert verify_password(bob, b"pw-2")

        assert await brokers[0].delete_user("carol")
        assert not await brokers[0].delete_user("carol")
        assert await store.get(keys.user("carol")) is None

        with capture_logs() as logs:
            await store.put(keys.user("bob"), b'{"version": 1, "config": []}')
            await _until(caches[0], lambda: "bob" not in caches[0].scram_users())
        assert brokers[0].scram_credential("bob", "SCRAM-SHA-512") is None
        assert any(e["event"] == "cluster_key_invalid" for e in logs)
        # a new credential replaces the damaged value
        cred = make_credential("SCRAM-SHA-256", "pw-3")
        assert await brokers[1].alter_scram([("bob", cred)], []) == set()
        assert brokers[1].scram_credential("bob", "SCRAM-SHA-256") == cred
        tg.cancel_scope.cancel()
