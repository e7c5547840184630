"""The user store, the authorizer and the failed-login limiter."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest

from broker.security.acl import (
    AclError,
    Authorizer,
    Op,
    Resource,
    parse_rule,
    parse_spec,
)
from broker.security.credentials import (
    CredentialError,
    UserStore,
    make_credential,
    verify_password,
)
from broker.security.ratelimit import LoginLimiter

# -- credentials -----------------------------------------------------------------


def test_store_keeps_no_plaintext_and_verifies(tmp_path: Path) -> None:
    """The users file holds salted SCRAM keys only, mode 0600, for both mechanisms."""
    store = UserStore.in_data_dir(tmp_path)
    store.set_password("alice", "correct horse")
    raw = store.path.read_bytes()
    assert b"correct horse" not in raw
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    data = json.loads(raw)
    creds = data["users"]["alice"]["scram"]
    assert set(creds) == {"SCRAM-SHA-256", "SCRAM-SHA-512"}
    assert all(c["iterations"] >= 4096 for c in creds.values())
    fresh = UserStore.in_data_dir(tmp_path)
    cred = fresh.scram_credential("alice", "SCRAM-SHA-512")
    assert cred is not None
    assert verify_password(cred, b"correct horse")
    assert not verify_password(cred, b"wrong")


def test_store_salts_differ_between_users_and_mechanisms(tmp_path: Path) -> None:
    """The same password gives different salts and keys."""
    store = UserStore.in_data_dir(tmp_path)
    store.set_password("a", "pw")
    store.set_password("b", "pw")
    salts = {
        store.scram_credential(u, m).salt  # type: ignore[union-attr]
        for u in ("a", "b")
        for m in ("SCRAM-SHA-256", "SCRAM-SHA-512")
    }
    assert len(salts) == 4


def test_store_sees_changes_by_another_writer(tmp_path: Path) -> None:
    """A reader picks up users created or deleted through another store object."""
    reader = UserStore.in_data_dir(tmp_path)
    assert reader.users() == {}
    writer = UserStore.in_data_dir(tmp_path)
    writer.set_password("alice", "pw", mechanisms=("SCRAM-SHA-256",))
    assert set(reader.users()) == {"alice"}
    assert reader.scram_credential("alice", "SCRAM-SHA-512") is None
    assert writer.delete("alice")
    assert not writer.delete("alice")
    assert reader.get("alice") is None


def test_store_password_change_keeps_acls(tmp_path: Path) -> None:
    """Setting a new password keeps the user's ACL rules."""
    store = UserStore.in_data_dir(tmp_path)
    store.set_password("alice", "one")
    rule = parse_spec("topic:orders:read").as_json()
    store.set_acls("alice", (rule,))
    store.set_password("alice", "two")
    record = store.get("alice")
    assert record is not None
    assert record.acls == (rule,)
    cred = record.credentials["SCRAM-SHA-256"]
    assert verify_password(cred, b"two")
    with pytest.raises(CredentialError):
        store.set_acls("nobody", ())


def test_store_leaves_no_temporary_file(tmp_path: Path) -> None:
    """Writes are atomic renames; no .tmp is left behind."""
    store = UserStore.in_data_dir(tmp_path)
    store.set_password("alice", "pw")
    assert sorted(os.listdir(store.path.parent)) == [".users.lock", "users.json"]


@pytest.mark.parametrize(
    ("name", "password", "kw"),
    [
        ("", "pw", {}),
        ("a\nb", "pw", {}),
        ("x" * 256, "pw", {}),
        ("ok", "", {}),
        ("ok", "pw", {"iterations": 1000}),
        ("ok", "pw", {"mechanisms": ("SCRAM-SHA-1",)}),
        ("ok", "pw", {"mechanisms": ()}),
    ],
)
def test_store_rejects_bad_input(
    tmp_path: Path, name: str, password: str, kw: dict[str, object]
) -> None:
    """Bad names, empty passwords, low iteration counts, unknown mechanisms fail."""
    with pytest.raises(CredentialError):
        UserStore.in_data_dir(tmp_path).set_password(name, password, **kw)  # type: ignore[arg-type]


def test_store_reports_a_malformed_file(tmp_path: Path) -> None:
    """A corrupt users file is a CredentialError naming the file."""
    store = UserStore.in_data_dir(tmp_path)
    store.path.parent.mkdir(parents=True)
    store.path.write_text('{"version": 1, "users": {"a": {"scram": {"X": {}}}}}')
    with pytest.raises(CredentialError, match=r"users\.json"):
        store.users()


def test_make_credential_is_deterministic_for_a_salt() -> None:
    """Same password, salt and iterations: the same keys."""
    a = make_credential("SCRAM-SHA-256", "pw", salt=b"s" * 16)
    b = make_credential("SCRAM-SHA-256", "pw", salt=b"s" * 16)
    assert a == b


# -- ACLs ------------------------------------------------------------------------


class Record:
    def __init__(self, *specs: str) -> None:
        self.acls = tuple(parse_spec(s).as_json() for s in specs)


class Users:
    def __init__(self, **users: Record) -> None:
        self.users = users

    def get(self, name: str) -> Record | None:
        return self.users.get(name)


def test_authorizer_off_allows_everyone() -> None:
    """With authorisation off, even an unauthenticated client may do anything."""
    authz = Authorizer(enabled=False)
    assert authz.allowed(None, Op.WRITE, Resource.TOPIC, "t")


def test_authorizer_denies_by_default() -> None:
    """No rule, no access; unauthenticated clients are denied."""
    authz = Authorizer(enabled=True, users=Users(alice=Record()))
    assert not authz.allowed("alice", Op.READ, Resource.TOPIC, "t")
    assert not authz.allowed(None, Op.DESCRIBE, Resource.TOPIC, "t")
    assert not authz.allowed("ghost", Op.READ, Resource.GROUP, "g")


def test_authorizer_literal_prefixed_and_wildcard_rules() -> None:
    """Literal, prefixed and ``*`` names match as Kafka's resource patterns do."""
    users = Users(
        alice=Record("topic:orders:read,write", "topic:logs-*:all", "group:*:read")
    )
    authz = Authorizer(enabled=True, users=users)
    assert authz.allowed("alice", Op.WRITE, Resource.TOPIC, "orders")
    assert not authz.allowed("alice", Op.WRITE, Resource.TOPIC, "orders2")
    assert not authz.allowed("alice", Op.CREATE, Resource.TOPIC, "orders")
    assert authz.allowed("alice", Op.CREATE, Resource.TOPIC, "logs-app")
    assert authz.allowed("alice", Op.DELETE, Resource.TOPIC, "logs-")
    assert not authz.allowed("alice", Op.READ, Resource.TOPIC, "log")
    assert authz.allowed("alice", Op.READ, Resource.GROUP, "anything")
    assert not authz.allowed("alice", Op.DELETE, Resource.GROUP, "anything")


def test_authorizer_read_or_write_implies_describe() -> None:
    """DESCRIBE is implied by READ, WRITE, DELETE and ALTER, not by CREATE."""
    users = Users(r=Record("topic:t:read"), c=Record("topic:t:create"))
    authz = Authorizer(enabled=True, users=users)
    assert authz.allowed("r", Op.DESCRIBE, Resource.TOPIC, "t")
    assert not authz.allowed("c", Op.DESCRIBE, Resource.TOPIC, "t")


def test_authorizer_cluster_create_implies_topic_create() -> None:
    """CREATE on the cluster allows creating any topic."""
    authz = Authorizer(enabled=True, users=Users(ops=Record("cluster:create")))
    assert authz.allowed("ops", Op.CREATE, Resource.TOPIC, "new")
    assert authz.allowed("ops", Op.CREATE, Resource.CLUSTER)
    assert not authz.allowed("ops", Op.WRITE, Resource.TOPIC, "new")


def test_authorizer_super_users_may_do_anything() -> None:
    """Super users bypass the rules."""
    authz = Authorizer(enabled=True, users=Users(), super_users=["admin"])
    assert authz.allowed("admin", Op.ALTER, Resource.CLUSTER)
    assert authz.allowed("admin", Op.DELETE, Resource.TOPIC, "x")


def test_authorizer_rereads_rules_when_the_record_changes() -> None:
    """A replaced user record (users file reloaded) changes the decision."""
    users = Users(alice=Record())
    authz = Authorizer(enabled=True, users=users)
    assert not authz.allowed("alice", Op.READ, Resource.TOPIC, "t")
    users.users["alice"] = Record("topic:t:read")
    assert authz.allowed("alice", Op.READ, Resource.TOPIC, "t")


@pytest.mark.parametrize(
    "spec",
    [
        "topic:orders",
        "nothing:x:read",
        "topic:x:fly",
        "topic::read",
        "topic:x:",
    ],
)
def test_bad_acl_specs_are_rejected(spec: str) -> None:
    """Malformed CLI ACL specs raise AclError."""
    with pytest.raises(AclError):
        parse_spec(spec)


def test_acl_spec_round_trips() -> None:
    """A rule prints back as the spec it came from."""
    for spec in ("topic:orders:read,write", "topic:logs-*:all", "group:*:read"):
        assert parse_spec(spec).spec() == spec
    assert parse_rule(parse_spec("cluster:create").as_json()).spec() == (
        "cluster:kafka-cluster:create"
    )


# -- failed-login limiter --------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_limiter_locks_after_max_failures_and_unlocks_later() -> None:
    """Five failures of a user from a host lock that pair for the lockout period."""
    clock = Clock()
    lim = LoginLimiter(max_failures=5, window_s=60, lockout_s=30, clock=clock)
    for _ in range(4):
        assert not lim.failure("1.2.3.4", "alice")
    assert lim.retry_after("1.2.3.4", "alice") == 0
    assert lim.failure("1.2.3.4", "alice")
    assert lim.retry_after("1.2.3.4", "alice") == pytest.approx(30)
    assert lim.retry_after("5.6.7.8", "alice") == 0
    clock.now += 31
    assert lim.retry_after("1.2.3.4", "alice") == 0


def test_limiter_lockout_is_per_user_and_host() -> None:
    """One user's failures lock neither another user on that host nor the host."""
    lim = LoginLimiter(max_failures=5, clock=Clock())
    for _ in range(5):
        lim.failure("1.2.3.4", "alice")
    assert lim.retry_after("1.2.3.4", "alice") > 0
    assert lim.retry_after("1.2.3.4", "bob") == 0
    assert lim.retry_after("1.2.3.4") == 0


def test_limiter_host_wide_threshold_stops_sprays() -> None:
    """Failures over many user names lock the host at the higher host threshold."""
    lim = LoginLimiter(max_failures=5, clock=Clock())
    assert lim.host_max_failures == 50
    for i in range(49):
        assert not lim.failure("1.2.3.4", f"user{i}")
    assert lim.retry_after("1.2.3.4") == 0
    assert lim.failure("1.2.3.4", "user49")
    assert lim.retry_after("1.2.3.4") > 0
    assert lim.retry_after("1.2.3.4", "bob") > 0
    assert lim.retry_after("5.6.7.8", "bob") == 0
    # Failures whose user is unknown (malformed logins) count against the host.
    other = LoginLimiter(max_failures=5, host_max_failures=3, clock=Clock())
    for _ in range(3):
        other.failure("9.9.9.9")
    assert other.retry_after("9.9.9.9") > 0


def test_limiter_forgets_failures_outside_the_window() -> None:
    """Failures spread wider than the window never lock."""
    clock = Clock()
    lim = LoginLimiter(max_failures=3, window_s=10, lockout_s=30, clock=clock)
    for _ in range(10):
        assert not lim.failure("1.2.3.4", "bob")
        clock.now += 6
    assert lim.retry_after("1.2.3.4", "bob") == 0


def test_limiter_success_clears_the_pair_not_the_host() -> None:
    """A successful login resets the user's count, not the host's spray count."""
    clock = Clock()
    lim = LoginLimiter(max_failures=2, host_max_failures=3, clock=clock)
    lim.failure("h", "a")
    lim.success("h", "a")
    assert not lim.failure("h", "a")
    assert lim.failure("h", "b")  # third failure from h: the host is locked
    assert lim.retry_after("h") > 0


def test_limiter_memory_is_bounded() -> None:
    """At most max_keys keys are tracked."""
    lim = LoginLimiter(max_keys=100, clock=Clock())
    for i in range(1000):
        lim.failure(f"10.0.0.{i}", "alice")
    assert len(lim) == 100


def test_store_checks_the_file_at_most_once_per_interval(tmp_path: Path) -> None:
    """With a check interval, a reader sees another writer's change only later."""
    reader = UserStore.in_data_dir(tmp_path, check_interval_s=0.3)
    assert reader.get("alice") is None
    UserStore.in_data_dir(tmp_path).set_password("alice", "pw")
    assert reader.get("alice") is None  # checked less than 0.3 s ago
    deadline = time.monotonic() + 5
    while reader.get("alice") is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert reader.get("alice") is not None
