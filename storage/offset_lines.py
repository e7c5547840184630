"""The values of the offset store and their JSON-lines form (storage/offset_store.py).

A committed offset (:class:`CommittedOffset`), the protocol bounds an answer must
respect (:func:`wire_problem`), and the helpers that read a log line's fields.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

__all__ = [
    "INT32_MAX",
    "INT64_MAX",
    "INT64_MIN",
    "CommittedOffset",
    "SkippedEntry",
    "string_problem",
    "wire_problem",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class CommittedOffset:
    """One committed position of a group in a partition."""

    topic: str
    partition: int
    offset: int
    leader_epoch: int = -1
    metadata: str = ""
    commit_ms: int = 0
    expire_ms: int | None = None  # explicit expiry (OffsetCommit v1-4 retention)

    def to_json(self, group: str) -> dict[str, object]:
        """The log line's object for committing this offset in ``group``."""
        return {
            "op": "commit",
            "group": group,
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "leader_epoch": self.leader_epoch,
            "metadata": self.metadata,
            "commit_ms": self.commit_ms,
            "expire_ms": self.expire_ms,
        }


INT32_MAX: Final = 2**31 - 1
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
MAX_STRING_BYTES: Final = 32767  # a protocol STRING: int16 length, UTF-8


def string_problem(value: str, *, max_bytes: int = MAX_STRING_BYTES) -> str | None:
    """Why ``value`` cannot be sent as a protocol string (None when it can)."""
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        return "is not valid UTF-8"
    if size > max_bytes:
        return f"is {size} bytes, over {max_bytes}"
    return None


def wire_problem(group: str, entry: CommittedOffset) -> str | None:
    """Why an OffsetFetch / ListGroups answer could not carry this commit, if it cannot.

    Returns ``"<field> <problem>"`` or None. These are the protocol's own bounds
    (OffsetFetch's int64 offset, int32 partition and leader epoch, int16-length
    strings); what a commit may hold beyond that is the committing API's business.
    """
    for name, text in (
        ("group", group),
        ("topic", entry.topic),
        ("metadata", entry.metadata),
    ):
        problem = string_problem(text)
        if problem is not None:
            return f"{name} {problem}"
    if not 0 <= entry.partition <= INT32_MAX:
        return f"partition {entry.partition} is not an int32 partition index"
    if not INT64_MIN <= entry.offset <= INT64_MAX:
        return f"offset {entry.offset} is not an int64"
    if not -1 <= entry.leader_epoch <= INT32_MAX:
        return f"leader_epoch {entry.leader_epoch} is not an int32 epoch"
    for name, ms in (("commit_ms", entry.commit_ms), ("expire_ms", entry.expire_ms)):
        if ms is not None and not INT64_MIN <= ms <= INT64_MAX:
            return f"{name} {ms} is not an int64"
    return None


def encode_line(obj: Mapping[str, object]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


@dataclass(frozen=True, slots=True, kw_only=True)
class SkippedEntry:
    """A commit line recovery left out: its line number (1-based) and why."""

    line: int
    group: str  # as ``repr`` shows it: the raw value may not print or encode
    reason: str


class BadLine(Exception):
    """A log line that is not one of the store's."""


class Skipped(Exception):
    """A well-formed line no answer could carry (listed, not applied)."""


def as_int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadLine
    return value


def as_str(value: object) -> str:
    if not isinstance(value, str):
        raise BadLine
    return value
