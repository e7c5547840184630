"""Server-side SASL: PLAIN (RFC 4616), SCRAM-SHA-256/512 (RFC 5802/7677, KIP-84).

Pure: bytes in, a :data:`Step` out. :class:`SaslAuthenticator` is one connection's
state machine, driven by the SaslHandshake and SaslAuthenticate handlers::

    HANDSHAKE --handshake(mech ok)--> AUTHENTICATE --token...--> COMPLETE
        |                                   |
        +-- handshake(unknown mech): stays  +-- bad token / credentials --> FAILED

SCRAM as Kafka's ``ScramSaslServer`` does it: the client-first message may carry
extensions after the nonce (``tokenauth=true`` asks for delegation tokens, which we
refuse); channel binding is not supported (gs2 flag ``n`` or ``y``, never ``p``);
user names are SASLnames (``=2C`` is ``,``, ``=3D`` is ``=``). An unknown user gets
a made-up salt and keys derived from a per-process secret, so the exchange fails only
at the final proof and does not reveal whether the user exists.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol

from broker.security.credentials import (
    DEFAULT_ITERATIONS,
    SCRAM_MECHANISMS,
    ScramCredential,
    hash_name,
    stored_key_of,
    verify_password,
)
from broker.security.settings import MECHANISMS

_FAKE_SECRET: Final = secrets.token_bytes(32)


class CredentialLookup(Protocol):
    """Where the authenticator finds SCRAM credentials (``UserStore`` is one)."""

    def scram_credential(self, user: str, mechanism: str) -> ScramCredential | None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Challenge:
    """Send ``token`` to the client and wait for its next token."""

    token: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Authenticated:
    """Success: the connection now acts as ``user``; send ``token`` (may be empty)."""

    user: str
    token: bytes = b""


@dataclass(frozen=True, slots=True, kw_only=True)
class Rejected:
    """Failure. ``message`` goes to the client, ``reason`` only to the log."""

    user: str | None
    reason: str
    message: str


Step = Challenge | Authenticated | Rejected


class SaslState(enum.Enum):
    HANDSHAKE = "handshake"
    AUTHENTICATE = "authenticate"
    COMPLETE = "complete"
    FAILED = "failed"


class _Mechanism(Protocol):
    user: str | None

    def step(self, token: bytes) -> Step: ...


def _auth_failed(mechanism: str) -> str:
    # The text Kafka's SaslServerAuthenticator sends for bad credentials.
    return (
        "Authentication failed during authentication due to invalid credentials "
        f"with SASL mechanism {mechanism}"
    )


class PlainServer:
    """RFC 4616: one message ``[authzid] NUL authcid NUL passwd``."""

    def __init__(self, lookup: CredentialLookup) -> None:
        self._lookup = lookup
        self.user: str | None = None
        self._done = False

    def step(self, token: bytes) -> Step:
        if self._done:
            return Rejected(user=self.user, reason="extra_token", message="bad token")
        self._done = True
        parts = token.split(b"\x00")
        if len(parts) != 3:
            return Rejected(
                user=None,
                reason="malformed_plain",
                message="Invalid SASL/PLAIN response: expected 3 tokens",
            )
        try:
            authzid, authcid, password = (p.decode() for p in parts)
        except UnicodeDecodeError:
            return Rejected(
                user=None, reason="malformed_plain", message="Invalid SASL/PLAIN token"
            )
        if not authcid or not password:
            return Rejected(
                user=authcid or None,
                reason="empty_credentials",
                message="Authentication failed: username or password not specified",
            )
        self.user = authcid
        if authzid and authzid != authcid:
            return Rejected(
                user=authcid,
                reason="authzid_mismatch",
                message="Authentication failed: Client requested an authorization "
                "id that is different from username",
            )
        cred = None
        for mech in SCRAM_MECHANISMS:
            cred = self._lookup.scram_credential(authcid, mech)
            if cred is not None:
                break
        ok = verify_password(
            cred or _fake_credential(authcid, "SCRAM-SHA-256"), parts[2]
        )
        if cred is None or not ok:
            return Rejected(
                user=authcid,
                reason="unknown_user" if cred is None else "bad_password",
                message="Authentication failed: Invalid username or password",
            )
        return Authenticated(user=authcid)


class ScramServer:
    """RFC 5802 server: client-first → server-first → client-final → server-final."""

    def __init__(
        self,
        mechanism: str,
        lookup: CredentialLookup,
        *,
        nonce: Callable[[], str] | None = None,
    ) -> None:
        self.mechanism = mechanism
        self._hash = hash_name(mechanism)
        self._lookup = lookup
        self._nonce = nonce or (lambda: secrets.token_urlsafe(24))
        self.user: str | None = None
        self._cred: ScramCredential | None = None
        self._known = False
        self._gs2 = b""
        self._client_first_bare = b""
        self._server_first = b""
        self._full_nonce = b""
        self._stage = 0

    def _reject(self, reason: str, message: str | None = None) -> Rejected:
        self._stage = 3
        return Rejected(
            user=self.user,
            reason=reason,
            message=message or _auth_failed(self.mechanism),
        )

    def step(self, token: bytes) -> Step:
        if self._stage == 0:
            return self._client_first(token)
        if self._stage == 1:
            return self._client_final(token)
        return self._reject("extra_token", "unexpected SCRAM message")

    def _client_first(self, token: bytes) -> Step:
        # gs2-header = gs2-cbind-flag "," [authzid] "," ; then client-first-bare
        parts = token.split(b",", 2)
        if len(parts) != 3 or parts[0] not in (b"n", b"y"):
            flag = parts[0] if parts else b""
            if flag.startswith(b"p="):
                return self._reject("channel_binding", "channel binding not supported")
            return self._reject(
                "malformed_client_first", "Invalid SCRAM client first message"
            )
        authzid = parts[1]
        self._gs2 = parts[0] + b"," + authzid + b","
        bare = parts[2]
        attrs = _attributes(bare)
        if attrs is None or "n" not in attrs or "r" not in attrs or "m" in attrs:
            return self._reject(
                "malformed_client_first", "Invalid SCRAM client first message"
            )
        try:
            user = _sasl_name(attrs["n"])
            authz = _sasl_name(authzid[2:]) if authzid.startswith(b"a=") else None
        except ValueError:
            return self._reject("malformed_client_first", "Invalid SCRAM user name")
        self.user = user
        if authzid and authz != user:
            return self._reject(
                "authzid_mismatch",
                "Authentication failed: Client requested an authorization id "
                "that is different from username",
            )
        if attrs.get("tokenauth", b"").lower() == b"true":
            return self._reject("token_auth", "delegation tokens are not supported")
        cred = self._lookup.scram_credential(user, self.mechanism)
        self._known = cred is not None
        self._cred = cred or _fake_credential(user, self.mechanism)
        self._client_first_bare = bare
        self._full_nonce = attrs["r"] + self._nonce().encode()
        self._server_first = b"r=%s,s=%s,i=%d" % (
            self._full_nonce,
            base64.b64encode(self._cred.salt),
            self._cred.iterations,
        )
        self._stage = 1
        return Challenge(token=self._server_first)

    def _client_final(self, token: bytes) -> Step:
        without_proof, sep, proof_part = token.rpartition(b",p=")
        attrs = _attributes(without_proof) if sep else None
        if attrs is None or "c" not in attrs or "r" not in attrs:
            return self._reject(
                "malformed_client_final", "Invalid SCRAM client final message"
            )
        try:
            cbind = base64.b64decode(attrs["c"], validate=True)
            proof = base64.b64decode(proof_part, validate=True)
        except (binascii.Error, ValueError):
            return self._reject(
                "malformed_client_final", "Invalid SCRAM client final message"
            )
        if cbind != self._gs2:
            return self._reject("channel_binding_mismatch")
        if not hmac.compare_digest(attrs["r"], self._full_nonce):
            return self._reject("nonce_mismatch")
        cred = self._cred
        assert cred is not None
        auth_message = b",".join(
            (self._client_first_bare, self._server_first, without_proof)
        )
        signature = hmac.digest(cred.stored_key, auth_message, self._hash)
        if len(proof) != len(signature):
            return self._reject("bad_proof")
        client = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
        if (
            not hmac.compare_digest(
                stored_key_of(self.mechanism, client), cred.stored_key
            )
            or not self._known
        ):
            return self._reject("unknown_user" if not self._known else "bad_password")
        self._stage = 2
        server_sig = hmac.digest(cred.server_key, auth_message, self._hash)
        return Authenticated(
            user=self.user or "", token=b"v=" + base64.b64encode(server_sig)
        )


class SaslAuthenticator:
    """One connection's SASL state: which mechanism, how far, who it is."""

    def __init__(
        self,
        lookup: CredentialLookup,
        *,
        mechanisms: tuple[str, ...] = MECHANISMS,
        nonce: Callable[[], str] | None = None,
    ) -> None:
        self._lookup = lookup
        self.mechanisms = mechanisms
        self._nonce = nonce
        self.state = SaslState.HANDSHAKE
        self.mechanism: str | None = None
        self.handshake_version = 1
        self._server: _Mechanism | None = None
        self.user: str | None = None

    @property
    def authenticated(self) -> bool:
        return self.state is SaslState.COMPLETE

    @property
    def attempted_user(self) -> str | None:
        """The user name the client offered so far (for logs and rate limits)."""
        return None if self._server is None else self._server.user

    def handshake(self, mechanism: str, *, version: int = 1) -> bool:
        """Select a mechanism; False if it is not enabled (state unchanged)."""
        if self.state is not SaslState.HANDSHAKE:
            raise IllegalSaslState(f"handshake in state {self.state.value}")
        if mechanism not in self.mechanisms:
            return False
        self.mechanism = mechanism
        self.handshake_version = version
        self._server = (
            PlainServer(self._lookup)
            if mechanism == "PLAIN"
            else ScramServer(mechanism, self._lookup, nonce=self._nonce)
        )
        self.state = SaslState.AUTHENTICATE
        return True

    def authenticate(self, token: bytes) -> Step:
        """Feed one client token (raises IllegalSaslState outside AUTHENTICATE)."""
        if self.state is not SaslState.AUTHENTICATE or self._server is None:
            raise IllegalSaslState(f"authenticate in state {self.state.value}")
        result = self._server.step(token)
        if isinstance(result, Authenticated):
            self.state = SaslState.COMPLETE
            self.user = result.user
        elif isinstance(result, Rejected):
            self.state = SaslState.FAILED
        return result

    def fail(self) -> None:
        """Mark the exchange failed (e.g. rate-limited before the token was looked at)."""
        self.state = SaslState.FAILED


class IllegalSaslState(Exception):
    """A SASL request arrived in a state that does not accept it (ILLEGAL_SASL_STATE)."""


def _attributes(text: bytes) -> dict[str, bytes] | None:
    """Parse ``k=v,k=v`` (values may contain ``=``); None when malformed."""
    out: dict[str, bytes] = {}
    for item in text.split(b","):
        key, sep, value = item.partition(b"=")
        if not sep or not key:
            return None
        try:
            name = key.decode("ascii")
        except UnicodeDecodeError:
            return None
        if name in out:
            return None
        out[name] = value
    return out


def _sasl_name(raw: bytes) -> str:
    """Decode a SASLname (RFC 5802 §5.1): ``=2C`` → ``,``, ``=3D`` → ``=``."""
    text = raw.decode()
    if not text:
        raise ValueError("empty name")
    out = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "=":
            code = text[i : i + 3]
            if code == "=2C":
                out.append(",")
            elif code == "=3D":
                out.append("=")
            else:
                raise ValueError("bad escape")
            i += 3
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _fake_credential(user: str, mechanism: str) -> ScramCredential:
    """A stable, unusable credential for an unknown user (no user enumeration)."""
    h = hash_name(mechanism)
    seed = hmac.digest(_FAKE_SECRET, f"{mechanism}\x00{user}".encode(), "sha256")
    return ScramCredential(
        mechanism=mechanism,
        salt=seed[:16],
        iterations=DEFAULT_ITERATIONS,
        stored_key=hashlib.new(h, b"stored" + seed).digest(),
        server_key=hashlib.new(h, b"server" + seed).digest(),
    )
