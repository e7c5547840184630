"""The exceptions the protocol layer raises; nothing else escapes it on bad input.

``ProtocolError`` is the root. The broker closes a connection on ``DecodeError`` and
``FrameTooLarge``, and answers ``UnsupportedVersion`` with an UNSUPPORTED_VERSION error
(it carries the request header's fields so that the answer can be addressed).
``EncodeError`` means a message object holds a value its version cannot carry (a bug
in the caller, never in the peer).
"""

from __future__ import annotations


class ProtocolError(Exception):
    """Base class of every error the protocol layer raises."""


class DecodeError(ProtocolError):
    """Malformed bytes: truncated, impossible lengths, bad varints, invalid UTF-8."""


class EncodeError(ProtocolError):
    """A message value cannot be encoded in the requested version."""


class FrameTooLarge(ProtocolError):
    """A frame's size prefix is negative or above the configured maximum."""

    def __init__(self, size: int, max_size: int) -> None:
        super().__init__(f"frame size {size} outside 0..{max_size}")
        self.size = size
        self.max_size = max_size


class UnsupportedVersion(ProtocolError):
    """A request's API key or version is not one we implement."""

    def __init__(
        self,
        *,
        api_key: int,
        api_version: int,
        correlation_id: int,
        client_id: str | None,
    ) -> None:
        super().__init__(f"unsupported api_key={api_key} api_version={api_version}")
        self.api_key = api_key
        self.api_version = api_version
        self.correlation_id = correlation_id
        self.client_id = client_id
