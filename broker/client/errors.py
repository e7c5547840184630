"""Typed errors of the CLI's Kafka client: each one renders as one actionable line.

``ClientError`` is the root; the CLI prints ``str(error)`` and exits non-zero, and
shows a traceback only with ``--debug``.
"""

from __future__ import annotations

from protocol.error_codes import ErrorCode


class ClientError(Exception):
    """Anything the client reports to a person: the message is one line."""


class BrokerUnreachable(ClientError):
    """No TCP connection could be made (or it broke) to a broker address."""

    def __init__(self, address: str, hint: str, cause: str = "") -> None:
        self.address = address
        self.hint = hint
        self.cause = cause
        detail = f" ({cause})" if cause else ""
        super().__init__(f"broker {address} unreachable{detail}: {hint}")


class KafkaError(ClientError):
    """A broker answered with a non-zero Kafka error code."""

    def __init__(
        self, code: int, context: str = "", message: str | None = None
    ) -> None:
        self.code = code
        self.name = error_name(code)
        if message is not None and message.strip() in ("", self.name):
            message = None  # some brokers send the error's name as its message
        self.context = context
        self.broker_message = message
        where = f"{context}: " if context else ""
        extra = f" ({message})" if message else ""
        hint = _HINTS.get(self.name)
        tail = f": {hint}" if hint and not message else ""
        super().__init__(f"{where}{self.name}{extra}{tail}")


class BadResponse(ClientError):
    """A broker sent a response this client cannot decode or match to its request."""

    def __init__(self, address: str, problem: str) -> None:
        self.address = address
        self.problem = problem
        super().__init__(f"broker {address} sent a bad response: {problem}")


class UnsupportedApi(ClientError):
    """The broker does not offer an API (or no version both sides speak)."""

    def __init__(self, api_name: str, address: str) -> None:
        self.api_name = api_name
        self.address = address
        super().__init__(
            f"broker {address} does not support {api_name} in a version this client speaks"
        )


class ClientTimeout(ClientError):
    """A request got no response in time."""


class InvalidArgument(ClientError):
    """A value given by the user cannot be used (bad offset spec, bad header, ...)."""


_HINTS = {
    "UNKNOWN_TOPIC_OR_PARTITION": "no such topic or partition "
    "(see `ailurus topic list`; create it with `ailurus topic create NAME`)",
    "TOPIC_ALREADY_EXISTS": "a topic with this name exists",
    "INVALID_CONFIG": "the broker rejected a configuration value",
    "INVALID_PARTITIONS": "the partition count is not valid here",
    "INVALID_REPLICATION_FACTOR": "the replication factor exceeds the brokers available",
    "NON_EMPTY_GROUP": "the group has active members; stop its consumers first",
    "GROUP_ID_NOT_FOUND": "no such group (see `ailurus group list`)",
    "GROUP_SUBSCRIBED_TO_TOPIC": "a member of the group consumes this topic; "
    "stop its consumers first",
    "UNKNOWN_MEMBER_ID": "the group has active members; stop its consumers first",
    "ILLEGAL_GENERATION": "the group has active members; stop its consumers first",
    "COORDINATOR_NOT_AVAILABLE": "the group coordinator is starting; try again",
    "OFFSET_OUT_OF_RANGE": "the offset is outside the partition's log",
    "MESSAGE_TOO_LARGE": "the record batch exceeds the topic's max.message.bytes",
    "POLICY_VIOLATION": "the broker's policy rejected the request",
}


def error_name(code: int) -> str:
    """Kafka's name for an error code (``UNKNOWN_TOPIC_OR_PARTITION``), or ``ERROR_<n>``."""
    try:
        return ErrorCode(code).name
    except ValueError:
        return f"ERROR_{code}"
