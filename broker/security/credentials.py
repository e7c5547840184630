"""The user store: SCRAM credentials and ACL rules in ``<data_dir>/security/users.json``.

Passwords are never stored. Each user has one SCRAM credential per mechanism
(RFC 5802 §3, as Kafka keeps them, KIP-84)::

    SaltedPassword = PBKDF2-HMAC-H(password, salt, iterations)
    StoredKey      = H(HMAC(SaltedPassword, "Client Key"))
    ServerKey      = HMAC(SaltedPassword, "Server Key")

SASL/PLAIN is verified against one of these credentials (recompute StoredKey from
the offered password and compare in constant time). File layout::

    {"version": 1,
     "users": {"alice": {"scram": {"SCRAM-SHA-256": {"salt": b64, "iterations": 4096,
                                                    "stored_key": b64, "server_key": b64},
                                   "SCRAM-SHA-512": {...}},
                         "acls": [{"resource": "topic", "name": "orders",
                                   "pattern": "literal", "operations": ["read"]}]}}}

Writes go to a temporary file that is fsynced, renamed over the old one and the
directory fsynced (mode 0600), under an ``flock`` so two CLI runs do not lose an
update. Readers (the broker) reload when the file's mtime/size/inode changes (the
broker stats it at most once a second), so ``ailurus user create`` takes effect on
a running broker within a second, without a restart.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from storage.fileops import DEFAULT_FILEOPS

SCRAM_MECHANISMS: Final = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}
MIN_ITERATIONS: Final = 4096  # Kafka's ScramMechanism minimum
MAX_ITERATIONS: Final = 16384  # and maximum
DEFAULT_ITERATIONS: Final = 4096  # Kafka's default
SALT_BYTES: Final = 32
USERS_FILE: Final = "security/users.json"
_USER_RE: Final = re.compile(r"[^\x00-\x1f\x7f]{1,255}")


class CredentialError(ValueError):
    """A user name, mechanism, iteration count or the users file is invalid."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ScramCredential:
    """What the server keeps for one user and one SCRAM mechanism."""

    mechanism: str
    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes

    def as_json(self) -> dict[str, object]:
        return {
            "salt": _b64(self.salt),
            "iterations": self.iterations,
            "stored_key": _b64(self.stored_key),
            "server_key": _b64(self.server_key),
        }


def hash_name(mechanism: str) -> str:
    """The hashlib name of a SCRAM mechanism (raises CredentialError if unknown)."""
    try:
        return SCRAM_MECHANISMS[mechanism]
    except KeyError:
        raise CredentialError(f"unknown SCRAM mechanism {mechanism!r}") from None


def salted_password(
    mechanism: str, password: bytes, salt: bytes, iterations: int
) -> bytes:
    """RFC 5802 ``Hi(password, salt, i)``: PBKDF2 with HMAC-H."""
    return hashlib.pbkdf2_hmac(hash_name(mechanism), password, salt, iterations)


def client_key(mechanism: str, salted: bytes) -> bytes:
    return hmac.digest(salted, b"Client Key", hash_name(mechanism))


def stored_key_of(mechanism: str, client: bytes) -> bytes:
    return hashlib.new(hash_name(mechanism), client).digest()


def make_credential(
    mechanism: str,
    password: str,
    *,
    iterations: int = DEFAULT_ITERATIONS,
    salt: bytes | None = None,
) -> ScramCredential:
    """Derive the stored SCRAM credential of ``password`` (a fresh random salt)."""
    if not MIN_ITERATIONS <= iterations <= MAX_ITERATIONS:
        raise CredentialError(
            f"iterations must be between {MIN_ITERATIONS} and {MAX_ITERATIONS}"
        )
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    salted = salted_password(mechanism, password.encode(), salt, iterations)
    return ScramCredential(
        mechanism=mechanism,
        salt=salt,
        iterations=iterations,
        stored_key=stored_key_of(mechanism, client_key(mechanism, salted)),
        server_key=hmac.digest(salted, b"Server Key", hash_name(mechanism)),
    )


def credential_from_salted(
    mechanism: str, salted: bytes, salt: bytes, iterations: int
) -> ScramCredential:
    """The stored credential of a salted password a client computed (KIP-554:
    AlterUserScramCredentials carries ``Hi(password, salt, i)``, not the password)."""
    return ScramCredential(
        mechanism=mechanism,
        salt=salt,
        iterations=iterations,
        stored_key=stored_key_of(mechanism, client_key(mechanism, salted)),
        server_key=hmac.digest(salted, b"Server Key", hash_name(mechanism)),
    )


def verify_password(credential: ScramCredential, password: bytes) -> bool:
    """Whether ``password`` matches the credential (SASL/PLAIN), in constant time."""
    mech = credential.mechanism
    salted = salted_password(mech, password, credential.salt, credential.iterations)
    return hmac.compare_digest(
        stored_key_of(mech, client_key(mech, salted)), credential.stored_key
    )


def validate_user(name: str) -> str:
    """Check a user name (1–255 characters, no control characters)."""
    if not _USER_RE.fullmatch(name):
        raise CredentialError(
            "user names are 1-255 characters without control characters"
        )
    return name


@dataclass(frozen=True, slots=True, kw_only=True)
class UserRecord:
    """One user: a credential per mechanism and raw ACL rule dicts (see acl.py)."""

    name: str
    credentials: Mapping[str, ScramCredential]
    acls: tuple[Mapping[str, object], ...] = ()

    def as_json(self) -> dict[str, object]:
        return {
            "scram": {m: c.as_json() for m, c in sorted(self.credentials.items())},
            "acls": [dict(a) for a in self.acls],
        }


@dataclass(slots=True)
class UserStore:
    """The users file of one data dir; cheap to query, reloaded when it changes."""

    path: Path
    # Stat the file at most this often (the broker asks on every authorisation).
    check_interval_s: float = 0.0
    _users: dict[str, UserRecord] = field(default_factory=dict)
    _stamp: tuple[int, int, int] | None = None
    _checked_at: float = float("-inf")

    @classmethod
    def in_data_dir(
        cls, data_dir: Path | str, *, check_interval_s: float = 0.0
    ) -> UserStore:
        return cls(Path(data_dir) / USERS_FILE, check_interval_s=check_interval_s)

    # -- reading ---------------------------------------------------------------

    def refresh(self) -> None:
        """Reload the file if it changed since the last read (missing = no users)."""
        now = time.monotonic()
        if now - self._checked_at < self.check_interval_s:
            return
        self._checked_at = now
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._users, self._stamp = {}, None
            return
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp == self._stamp:
            return
        self._users = _parse(self.path.read_bytes(), self.path)
        self._stamp = stamp

    def users(self) -> dict[str, UserRecord]:
        self.refresh()
        return dict(self._users)

    def get(self, name: str) -> UserRecord | None:
        self.refresh()
        return self._users.get(name)

    def scram_credential(self, user: str, mechanism: str) -> ScramCredential | None:
        """The user's credential for ``mechanism`` (None if no such user/credential)."""
        record = self.get(user)
        return None if record is None else record.credentials.get(mechanism)

    # -- writing ---------------------------------------------------------------

    def set_password(
        self,
        name: str,
        password: str,
        *,
        mechanisms: tuple[str, ...] = tuple(SCRAM_MECHANISMS),
        iterations: int = DEFAULT_ITERATIONS,
    ) -> UserRecord:
        """Create the user or replace its credentials (its ACLs are kept)."""
        validate_user(name)
        if not password:
            raise CredentialError("the password must not be empty")
        if not mechanisms:
            raise CredentialError("at least one SCRAM mechanism is needed")
        creds = {
            m: make_credential(m, password, iterations=iterations) for m in mechanisms
        }
        with self._locked() as users:
            old = users.get(name)
            record = UserRecord(
                name=name, credentials=creds, acls=old.acls if old else ()
            )
            users[name] = record
        return record

    def set_acls(self, name: str, acls: tuple[Mapping[str, object], ...]) -> None:
        """Replace a user's ACL rules (raises CredentialError if no such user)."""
        with self._locked() as users:
            old = users.get(name)
            if old is None:
                raise CredentialError(f"no user {name!r}")
            users[name] = UserRecord(name=name, credentials=old.credentials, acls=acls)

    def alter_scram(
        self,
        upsertions: Iterable[tuple[str, ScramCredential]],
        deletions: Iterable[tuple[str, str]],
    ) -> set[tuple[str, str]]:
        """Set and delete credentials of several users in one write: each upsertion
        is ``(user, credential)``, each deletion ``(user, mechanism)``. Deletions of
        credentials that do not exist are returned, and nothing else of that user
        changes. A user left with neither credentials nor ACLs is removed."""
        with self._locked() as users:
            missing = {
                (u, m)
                for u, m in deletions
                if u not in users or m not in users[u].credentials
            }
            bad_users = {u for u, _ in missing}
            changed: dict[str, dict[str, ScramCredential]] = {}
            for u, m in deletions:
                if u in bad_users:
                    continue
                changed.setdefault(u, dict(users[u].credentials)).pop(m, None)
            for u, cred in upsertions:
                if u in bad_users:
                    continue
                old = users.get(u)
                creds = changed.setdefault(u, dict(old.credentials) if old else {})
                creds[cred.mechanism] = cred
            for u, creds in changed.items():
                old = users.get(u)
                acls = old.acls if old else ()
                if not creds and not acls:
                    users.pop(u, None)
                else:
                    users[u] = UserRecord(name=u, credentials=creds, acls=acls)
        return missing

    def delete(self, name: str) -> bool:
        """Remove a user; False if it did not exist."""
        with self._locked() as users:
            return users.pop(name, None) is not None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, UserRecord]]:
        """Read-modify-write the file under an exclusive lock, atomically."""
        directory = self.path.parent
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock_fd = os.open(directory / ".users.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            try:
                users = _parse(self.path.read_bytes(), self.path)
            except FileNotFoundError:
                users = {}
            yield users
            self._checked_at = float("-inf")
            data = {
                "version": 1,
                "users": {n: r.as_json() for n, r in sorted(users.items())},
            }
            DEFAULT_FILEOPS.write_file_atomic(
                str(self.path), json.dumps(data, indent=1).encode() + b"\n", mode=0o600
            )
            self._stamp = None
        finally:
            os.close(lock_fd)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _parse(raw: bytes, path: Path) -> dict[str, UserRecord]:
    try:
        data = json.loads(raw)
        if data.get("version") != 1:
            raise CredentialError(f"unsupported version {data.get('version')}")
        out: dict[str, UserRecord] = {}
        for name, entry in dict(data["users"]).items():
            creds = {}
            for mech, c in dict(entry.get("scram", {})).items():
                hash_name(mech)
                creds[mech] = ScramCredential(
                    mechanism=mech,
                    salt=base64.b64decode(c["salt"], validate=True),
                    iterations=int(c["iterations"]),
                    stored_key=base64.b64decode(c["stored_key"], validate=True),
                    server_key=base64.b64decode(c["server_key"], validate=True),
                )
            acls = tuple(dict(a) for a in entry.get("acls", []))
            out[str(name)] = UserRecord(name=str(name), credentials=creds, acls=acls)
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise CredentialError(f"{path}: malformed users file: {e}") from e
    return out
