"""The SCRAM credentials' values in etcd, in the layout of Kafka's ZooKeeper user
config znodes.

One key per user, ``PREFIX/config/users/{name}`` (the name URL-quoted, as Kafka's
``Sanitizer`` quotes it for ``/config/users/{name}``), holding what Kafka's znode
holds: the user's entity configs, a SCRAM credential per mechanism in the text form
of Kafka's ``ScramCredentialUtils.credentialToString``::

    {"version": 1,
     "config": {"SCRAM-SHA-256": "salt=<b64>,stored_key=<b64>,server_key=<b64>,iterations=4096",
                "SCRAM-SHA-512": "..."}}

Passwords and salted passwords are never stored. Configs of other names (Kafka keeps
a user's client quotas in the same znode) are kept as they are when the credentials
change, and ignored otherwise.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Final

from broker.cluster.model import BadRecord
from broker.security.credentials import SCRAM_MECHANISMS, ScramCredential

_FIELDS: Final = ("salt", "stored_key", "server_key", "iterations")


def credential_text(credential: ScramCredential) -> str:
    """Kafka's text form of one credential."""
    b64 = base64.b64encode
    return (
        f"salt={b64(credential.salt).decode()},"
        f"stored_key={b64(credential.stored_key).decode()},"
        f"server_key={b64(credential.server_key).decode()},"
        f"iterations={credential.iterations}"
    )


def parse_credential(mechanism: str, text: str) -> ScramCredential:
    """The credential of Kafka's text form (raises BadRecord if it is not one)."""
    props: dict[str, str] = {}
    for token in text.split(","):
        name, sep, value = token.partition("=")
        if not sep or not name:
            raise BadRecord(f"bad {mechanism} credential")
        props[name] = value
    if sorted(props) != sorted(_FIELDS):
        raise BadRecord(f"bad {mechanism} credential: fields {sorted(props)}")
    try:
        iterations = int(props["iterations"])
        return ScramCredential(
            mechanism=mechanism,
            salt=base64.b64decode(props["salt"], validate=True),
            iterations=iterations,
            stored_key=base64.b64decode(props["stored_key"], validate=True),
            server_key=base64.b64decode(props["server_key"], validate=True),
        )
    except (ValueError, binascii.Error) as e:
        raise BadRecord(f"bad {mechanism} credential: {e}") from e


def encode_user_config(config: Mapping[str, str]) -> bytes:
    """The value of one user's key."""
    data = {"version": 1, "config": dict(sorted(config.items()))}
    return json.dumps(data, separators=(",", ":")).encode()


def decode_user_config(value: bytes) -> dict[str, str]:
    """A user's configs (raises BadRecord when the value is not such a node)."""
    try:
        data = json.loads(value)
    except (ValueError, UnicodeDecodeError) as e:
        raise BadRecord(f"not JSON: {e}") from e
    if not isinstance(data, dict) or data.get("version") != 1:
        raise BadRecord("not a version 1 user config")
    config = data.get("config")
    if not isinstance(config, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in config.items()
    ):
        raise BadRecord("'config' is not an object of strings")
    return config


def scram_of(config: Mapping[str, str]) -> dict[str, ScramCredential]:
    """The SCRAM credentials among a user's configs, by mechanism."""
    return {
        m: parse_credential(m, text)
        for m, text in config.items()
        if m in SCRAM_MECHANISMS
    }


def with_scram(
    config: Mapping[str, str], credentials: Mapping[str, ScramCredential]
) -> dict[str, str]:
    """``config`` with its SCRAM credentials replaced by ``credentials``."""
    out = {k: v for k, v in config.items() if k not in SCRAM_MECHANISMS}
    out.update((m, credential_text(c)) for m, c in credentials.items())
    return out
