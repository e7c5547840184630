"""Committed group offsets stored beside a snapshot: ``group-offsets.json``.

Written by ``snapshot create --with-group-offsets`` and named by ``meta.json``'s
``group_offsets`` field; ingest restores each group's offset for the snapshot's
partition where the group has no newer commit. The file (UTF-8 JSON object, at most
1 MiB)::

    {"version": 1,
     "topic": "orders",                    the snapshot's topic (optional)
     "partition": 3,                       the snapshot's partition
     "groups": [{"group": "billing",       non-empty, at most 32767 UTF-8 bytes,
                 "offset": 42,             no control characters; each group once
                 "leader_epoch": 7,
                 "metadata": "",
                 "commit_ms": 1700000000000}]}

Rules (a file that breaks one makes the whole snapshot ``invalid``, with the field
named, and nothing of the snapshot is applied):

- ``offset``: an integer with 0 <= offset <= the snapshot's ``last_offset`` + 1 (a
  consumer cannot have read past the records the snapshot holds). There is no -1:
  Kafka's "no committed offset" is expressed by leaving the group out.
- ``group``: Kafka itself bounds a group id only by the protocol's string length
  (int16, 32767 bytes) and asks no particular characters of it; this file also
  refuses control characters (``\\n``, ``\\x00``, ...) and text that is not valid
  UTF-8. Group ids are never used as file names.
- ``metadata``: a string of at most 4096 UTF-8 bytes (Kafka's default
  ``offset.metadata.max.bytes``), no control characters either.
- ``leader_epoch``: an int32, -1 when unknown; ``commit_ms``: 0 <= ms < 2**63.
- ``partition`` must be the snapshot's partition and ``topic``, when given, its topic.
- The JSON itself: no duplicate keys, no NaN/Infinity, numbers of at most 100
  characters, nesting within the parser's limits.

Missing optional fields take their defaults (leader_epoch -1, metadata "",
commit_ms 0); unknown fields are ignored.
"""

from __future__ import annotations

import json
import os
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from storage.offset_store import INT32_MAX, INT64_MAX, string_problem
from storage.snapshot_files import check_entry, read_capped
from storage.snapshot_meta import (
    GROUP_OFFSETS_FILE,
    MAX_META_BYTES,
    SnapshotInvalid,
    SnapshotMeta,
    load_json,
)

GROUP_OFFSETS_VERSION: Final = 1
MAX_GROUP_ID_BYTES: Final = 32767
MAX_METADATA_BYTES: Final = 4096  # Kafka's offset.metadata.max.bytes default
_REASON: Final = "bad-group-offsets"


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupOffset:
    """One group's committed offset in the snapshot's partition."""

    group: str
    offset: int
    leader_epoch: int = -1
    metadata: str = ""
    commit_ms: int = 0

    def to_json(self) -> dict[str, object]:
        """One ``groups[]`` entry of ``group-offsets.json``."""
        return {
            "group": self.group,
            "offset": self.offset,
            "leader_epoch": self.leader_epoch,
            "metadata": self.metadata,
            "commit_ms": self.commit_ms,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, object]) -> GroupOffset:
        """Parse what :meth:`to_json` wrote (TypeError/ValueError when it is not)."""
        group, metadata = raw["group"], raw.get("metadata", "")
        if not isinstance(group, str) or not isinstance(metadata, str):
            raise TypeError("group and metadata must be strings")
        numbers = [raw["offset"], raw.get("leader_epoch", -1), raw.get("commit_ms", 0)]
        if not all(type(n) is int for n in numbers):
            raise TypeError("offset, leader_epoch and commit_ms must be integers")
        offset, epoch, commit_ms = (int(str(n)) for n in numbers)
        entry = cls(
            group=group,
            offset=offset,
            leader_epoch=epoch,
            metadata=metadata,
            commit_ms=commit_ms,
        )
        problem = entry_problem(entry)
        if problem is not None:
            raise ValueError(problem)
        return entry


def encode_group_offsets(
    topic: str, partition: int, offsets: Sequence[GroupOffset]
) -> bytes:
    """``group-offsets.json``: the groups' commits for the snapshot's partition."""
    return (
        json.dumps(
            {
                "version": GROUP_OFFSETS_VERSION,
                "topic": topic,
                "partition": partition,
                "groups": [o.to_json() for o in offsets],
            },
            indent=1,
        ).encode()
        + b"\n"
    )


def _text_problem(value: str, max_bytes: int) -> str | None:
    problem = string_problem(value, max_bytes=max_bytes)
    if problem is not None:
        return problem
    if any(unicodedata.category(c) == "Cc" for c in value):
        return "holds a control character"
    return None


def entry_problem(o: GroupOffset, *, last_offset: int | None = None) -> str | None:
    """Why one entry breaks the rules of the module docstring (None if it keeps them).

    ``last_offset`` None skips the bound that depends on the snapshot.
    """
    if not o.group:
        return "group is empty"
    problem = _text_problem(o.group, MAX_GROUP_ID_BYTES)
    if problem is not None:
        return f"group {problem}"
    problem = _text_problem(o.metadata, MAX_METADATA_BYTES)
    if problem is not None:
        return f"metadata {problem}"
    if o.offset < 0:
        return f"offset {o.offset} is negative"
    if last_offset is not None and o.offset > last_offset + 1:
        return f"offset {o.offset} is past the snapshot's end {last_offset + 1}"
    if o.offset > INT64_MAX:
        return "offset is not an int64"
    if not -1 <= o.leader_epoch <= INT32_MAX:
        return f"leader_epoch {o.leader_epoch} is not an int32 epoch"
    if not 0 <= o.commit_ms <= INT64_MAX:
        return f"commit_ms {o.commit_ms} is out of range"
    return None


def fit_group_offsets(
    offsets: Sequence[GroupOffset], last_offset: int
) -> tuple[GroupOffset, ...]:
    """The entries a snapshot ending at ``last_offset`` stores: offsets committed past
    its end (by consumers that read on while it was being taken) become its end."""
    end = last_offset + 1
    return tuple(
        GroupOffset(
            group=o.group,
            offset=min(o.offset, end),
            leader_epoch=o.leader_epoch,
            metadata=o.metadata,
            commit_ms=o.commit_ms,
        )
        for o in offsets
    )


def _field(index: int, key: str) -> str:
    return f"{GROUP_OFFSETS_FILE}: groups[{index}].{key}"


def _int(raw: dict[str, object], index: int, key: str, default: int | None) -> int:
    value = raw.get(key, default)
    if value is None or isinstance(value, bool) or not isinstance(value, int):
        raise SnapshotInvalid(_REASON, f"{_field(index, key)} is not an integer")
    return value


def _text(raw: dict[str, object], index: int, key: str, default: str | None) -> str:
    value = raw.get(key, default)
    if not isinstance(value, str):
        raise SnapshotInvalid(_REASON, f"{_field(index, key)} is not a string")
    return value


def parse_group_offsets(data: bytes, meta: SnapshotMeta) -> list[GroupOffset]:
    """Parse and check ``group-offsets.json`` bytes against the snapshot's meta.

    Raises:
        SnapshotIncomplete: not (yet) valid JSON; a copy may still be writing it.
        SnapshotInvalid: it breaks a rule; the detail names the file and the field.
    """
    obj = load_json(data, GROUP_OFFSETS_FILE, _REASON)
    if not isinstance(obj, dict):
        raise SnapshotInvalid(_REASON, f"{GROUP_OFFSETS_FILE} is not an object")
    version = obj.get("version", GROUP_OFFSETS_VERSION)
    if type(version) is not int or version != GROUP_OFFSETS_VERSION:
        raise SnapshotInvalid(_REASON, f"{GROUP_OFFSETS_FILE}: unsupported version")
    partition = obj.get("partition", meta.partition)
    if type(partition) is not int or partition != meta.partition:
        raise SnapshotInvalid(
            _REASON,
            f"{GROUP_OFFSETS_FILE}: partition is not the snapshot's "
            f"partition {meta.partition}",
        )
    topic = obj.get("topic")
    if topic is not None and (
        not isinstance(topic, str) or (meta.topic is not None and topic != meta.topic)
    ):
        raise SnapshotInvalid(
            _REASON, f"{GROUP_OFFSETS_FILE}: topic is not the snapshot's topic"
        )
    groups = obj.get("groups")
    if not isinstance(groups, list):
        raise SnapshotInvalid(_REASON, f"{GROUP_OFFSETS_FILE}: groups is not a list")
    out: list[GroupOffset] = []
    seen: set[str] = set()
    for i, raw in enumerate(groups):
        if not isinstance(raw, dict):
            raise SnapshotInvalid(
                _REASON, f"{GROUP_OFFSETS_FILE}: groups[{i}] is not an object"
            )
        entry = GroupOffset(
            group=_text(raw, i, "group", None),
            offset=_int(raw, i, "offset", None),
            leader_epoch=_int(raw, i, "leader_epoch", -1),
            metadata=_text(raw, i, "metadata", ""),
            commit_ms=_int(raw, i, "commit_ms", 0),
        )
        problem = entry_problem(entry, last_offset=meta.last_offset)
        if problem is not None:
            key = problem.split(" ", 1)[0]
            raise SnapshotInvalid(
                _REASON, f"{_field(i, key)}{problem.removeprefix(key)}"
            )
        if entry.group in seen:
            raise SnapshotInvalid(_REASON, f"{_field(i, 'group')} is listed twice")
        seen.add(entry.group)
        out.append(entry)
    return out


def group_offsets_path(snapshot_dir: str) -> str:
    """Where a snapshot's ``group-offsets.json`` is."""
    return os.path.join(snapshot_dir, GROUP_OFFSETS_FILE)


def read_group_offsets_bytes(snapshot_dir: str, root: str) -> tuple[bytes, float]:
    """The file's bytes (safely, capped at 1 MiB) and its mtime.

    Raises:
        SnapshotIncomplete: it is not there (yet).
        SnapshotInvalid: too large, not a regular file, a symlink out of the data dir.
    """
    path = group_offsets_path(snapshot_dir)
    st = check_entry(path, root)
    if st.st_size > MAX_META_BYTES:
        raise SnapshotInvalid(
            "meta-too-large", f"{GROUP_OFFSETS_FILE}: {st.st_size} bytes"
        )
    return read_capped(path, MAX_META_BYTES + 1), st.st_mtime


def read_group_offsets(
    snapshot_dir: str, root: str, meta: SnapshotMeta
) -> list[GroupOffset]:
    """Read and check a snapshot's ``group-offsets.json``.

    Raises:
        SnapshotIncomplete, SnapshotInvalid: as :func:`parse_group_offsets`.
    """
    data, _ = read_group_offsets_bytes(snapshot_dir, root)
    return parse_group_offsets(data, meta)
