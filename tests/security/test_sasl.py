"""SASL mechanisms and the per-connection authenticator, without a network."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kafka.net.sasl.scram import ScramClient

from broker.security.credentials import ScramCredential, make_credential
from broker.security.sasl import (
    Authenticated,
    Challenge,
    IllegalSaslState,
    PlainServer,
    Rejected,
    SaslAuthenticator,
    SaslState,
    ScramServer,
)


class Users:
    """An in-memory credential lookup."""

    def __init__(self) -> None:
        self.creds: dict[tuple[str, str], ScramCredential] = {}

    def add(self, user: str, password: str, *mechs: str) -> None:
        for m in mechs or ("SCRAM-SHA-256", "SCRAM-SHA-512"):
            self.creds[user, m] = make_credential(m, password, iterations=4096)

    def scram_credential(self, user: str, mechanism: str) -> ScramCredential | None:
        return self.creds.get((user, mechanism))


def rfc7677_users() -> Users:
    users = Users()
    users.creds["user", "SCRAM-SHA-256"] = make_credential(
        "SCRAM-SHA-256",
        "pencil",
        iterations=4096,
        salt=base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ=="),
    )
    return users


def test_scram_sha256_matches_rfc7677_test_vector() -> None:
    """The server reproduces RFC 7677 section 3's exchange byte for byte."""
    server = ScramServer(
        "SCRAM-SHA-256",
        rfc7677_users(),
        nonce=lambda: "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
    )
    first = server.step(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO")
    assert first == Challenge(
        token=b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
        b"s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    )
    final = server.step(
        b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
        b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
    )
    assert final == Authenticated(
        user="user", token=b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
    )


def test_rfc7677_proof_with_wrong_password_credential_is_rejected() -> None:
    """The same client messages fail against a credential for another password."""
    users = Users()
    users.creds["user", "SCRAM-SHA-256"] = make_credential(
        "SCRAM-SHA-256",
        "pen",
        salt=base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ=="),
    )
    server = ScramServer(
        "SCRAM-SHA-256", users, nonce=lambda: "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
    )
    assert isinstance(server.step(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"), Challenge)
    result = server.step(
        b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
        b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
    )
    assert isinstance(result, Rejected)
    assert result.reason == "bad_password"
    assert "SCRAM-SHA-256" in result.message


def scram_exchange(
    users: Users, mech: str, user: str, password: str
) -> tuple[Authenticated | Rejected, ScramClient]:
    """Run kafka-python's SCRAM client against our server."""
    auth = SaslAuthenticator(users)
    assert auth.handshake(mech)
    client = ScramClient(user, password, mech)
    first = auth.authenticate(client.first_message())
    if isinstance(first, Rejected):
        return first, client
    assert isinstance(first, Challenge)
    client.process_server_first_message(first.token)
    final = auth.authenticate(client.final_message())
    assert not isinstance(final, Challenge)
    return final, client


@pytest.mark.parametrize("mech", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_scram_with_kafka_python_client_succeeds_and_signs(mech: str) -> None:
    """kafka-python's SCRAM client authenticates and accepts our server signature."""
    users = Users()
    users.add("alice", "s3cret")
    result, client = scram_exchange(users, mech, "alice", "s3cret")
    assert isinstance(result, Authenticated)
    assert result.user == "alice"
    client.process_server_final_message(result.token)  # raises on a bad signature


@pytest.mark.parametrize("mech", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_scram_wrong_password_is_rejected(mech: str) -> None:
    """A wrong password fails at the client proof."""
    users = Users()
    users.add("alice", "s3cret")
    result, _ = scram_exchange(users, mech, "alice", "guess")
    assert isinstance(result, Rejected)
    assert result.reason == "bad_password"
    assert result.user == "alice"


def test_scram_unknown_user_looks_like_a_known_one_until_the_proof() -> None:
    """An unknown user gets a stable made-up salt and fails only at the end."""
    users = Users()
    a = ScramServer("SCRAM-SHA-256", users).step(b"n,,n=ghost,r=abc")
    b = ScramServer("SCRAM-SHA-256", users).step(b"n,,n=ghost,r=abc")
    assert isinstance(a, Challenge)
    assert isinstance(b, Challenge)
    assert a.token.split(b",")[1:] == b.token.split(b",")[1:]  # same salt, i
    result, _ = scram_exchange(users, "SCRAM-SHA-256", "ghost", "x")
    assert isinstance(result, Rejected)
    assert result.reason == "unknown_user"


def test_scram_credential_of_other_mechanism_is_not_used() -> None:
    """A user with only a SHA-256 credential cannot log in with SHA-512."""
    users = Users()
    users.add("bob", "pw", "SCRAM-SHA-256")
    result, _ = scram_exchange(users, "SCRAM-SHA-512", "bob", "pw")
    assert isinstance(result, Rejected)


def test_scram_saslname_escapes_are_decoded() -> None:
    """``=2C`` and ``=3D`` in the user name decode to ``,`` and ``=``."""
    users = Users()
    users.add("a,b=c", "pw", "SCRAM-SHA-256")
    server = ScramServer("SCRAM-SHA-256", users)
    server.step(b"n,,n=a=2Cb=3Dc,r=xyz")
    assert server.user == "a,b=c"


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (b"p=tls-unique,,n=u,r=x", "channel_binding"),
        (b"n,,r=x", "malformed_client_first"),
        (b"n,,n=u", "malformed_client_first"),
        (b"n,,m=ext,n=u,r=x", "malformed_client_first"),
        (b"n,,n=bad=escape,r=x", "malformed_client_first"),
        (b"n,a=other,n=u,r=x", "authzid_mismatch"),
        (b"n,,n=u,r=x,tokenauth=true", "token_auth"),
        (b"garbage", "malformed_client_first"),
    ],
)
def test_scram_bad_client_first_is_rejected(token: bytes, reason: str) -> None:
    """Malformed or unsupported client-first messages are rejected with a reason."""
    result = ScramServer("SCRAM-SHA-256", Users()).step(token)
    assert isinstance(result, Rejected)
    assert result.reason == reason


def test_scram_final_with_wrong_nonce_or_binding_is_rejected() -> None:
    """The final message must echo the full nonce and the gs2 header."""
    users = Users()
    users.add("u", "pw", "SCRAM-SHA-256")
    for final, reason in [
        (b"c=biws,r=WRONG,p=AAAA", "nonce_mismatch"),
        (b"c=eSws,r={nonce},p=AAAA", "channel_binding_mismatch"),
        (b"c=biws,r={nonce}", "malformed_client_final"),
        (b"c=biws,r={nonce},p=!!!", "malformed_client_final"),
        (b"c=biws,r={nonce},p=AAAA", "bad_proof"),
    ]:
        server = ScramServer("SCRAM-SHA-256", users, nonce=lambda: "S")
        assert isinstance(server.step(b"n,,n=u,r=C"), Challenge)
        result = server.step(final.replace(b"{nonce}", b"CS"))
        assert isinstance(result, Rejected), final
        assert result.reason == reason, final


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200), st.binary(max_size=200))
def test_scram_never_raises_on_arbitrary_tokens(first: bytes, final: bytes) -> None:
    """Any bytes give a Step, never an exception."""
    server = ScramServer("SCRAM-SHA-512", Users())
    r1 = server.step(first)
    assert isinstance(r1, Challenge | Rejected)
    if isinstance(r1, Challenge):
        assert isinstance(server.step(final), Rejected)


def test_plain_accepts_right_password_against_scram_credential() -> None:
    """PLAIN verifies the password against the stored SCRAM credential."""
    users = Users()
    users.add("alice", "s3cret", "SCRAM-SHA-512")
    assert PlainServer(users).step(b"\x00alice\x00s3cret") == Authenticated(
        user="alice"
    )
    assert PlainServer(users).step(b"alice\x00alice\x00s3cret") == Authenticated(
        user="alice"
    )


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (b"\x00alice\x00wrong", "bad_password"),
        (b"\x00nobody\x00s3cret", "unknown_user"),
        (b"bob\x00alice\x00s3cret", "authzid_mismatch"),
        (b"\x00alice", "malformed_plain"),
        (b"\x00\x00pw", "empty_credentials"),
        (b"\x00\xff\x00pw", "malformed_plain"),
    ],
)
def test_plain_rejects_bad_tokens(token: bytes, reason: str) -> None:
    """Wrong passwords, unknown users and malformed tokens are rejected."""
    users = Users()
    users.add("alice", "s3cret", "SCRAM-SHA-256")
    result = PlainServer(users).step(token)
    assert isinstance(result, Rejected)
    assert result.reason == reason


def test_authenticator_state_machine() -> None:
    """Handshake then authenticate; anything out of order is an illegal state."""
    users = Users()
    users.add("alice", "pw", "SCRAM-SHA-256")
    auth = SaslAuthenticator(users, mechanisms=("PLAIN",))
    with pytest.raises(IllegalSaslState):
        auth.authenticate(b"\x00alice\x00pw")
    assert not auth.handshake("SCRAM-SHA-256")  # not enabled
    assert auth.state is SaslState.HANDSHAKE
    assert auth.handshake("PLAIN")
    with pytest.raises(IllegalSaslState):
        auth.handshake("PLAIN")
    assert isinstance(auth.authenticate(b"\x00alice\x00pw"), Authenticated)
    assert auth.authenticated
    assert auth.user == "alice"
    with pytest.raises(IllegalSaslState):
        auth.authenticate(b"\x00alice\x00pw")


def test_authenticator_failure_is_final() -> None:
    """After a rejected token the connection cannot try again."""
    auth = SaslAuthenticator(Users())
    assert auth.handshake("PLAIN")
    assert isinstance(auth.authenticate(b"\x00a\x00b"), Rejected)
    assert auth.state is SaslState.FAILED
    assert auth.attempted_user == "a"
    with pytest.raises(IllegalSaslState):
        auth.authenticate(b"\x00a\x00b")
