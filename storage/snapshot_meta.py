"""Partition snapshots on disk: the layout, ``meta.json`` and its validation.

One snapshot directory holds one partition's batches from ``base_offset`` to
``last_offset``, in Kafka's own segment format::

    <data_dir>/snapshots/
    ├── <topic_id or topic name>/
    │   ├── <snapshot_id>/                  nanosecond timestamp, e.g. 1678886400000000000
    │   │   ├── meta.json
    │   │   ├── 00000000000000000000.log    segment files named by their first offset,
    │   │   ├── 00000000000000004096.log    batches exactly as in the log (.zst, .gz or
    │   │   │                               .lz4 appended when compressed as stored)
    │   │   ├── 00000000000000004096.txnindex   the aborted transactions whose ABORT
    │   │   │                               marker is in that segment (Kafka's format,
    │   │   │                               storage/txn_index.py; never compressed)
    │   │   └── group-offsets.json          optional (create --with-group-offsets)
    │   ├── .<snapshot_id>.tmp/             being written by ``create``; ignored
    │   ├── meta.json + *.log               "flat copy": a snapshot copied one level up
    └── .anything/                          dot-names are ignored until renamed

``meta.json`` (UTF-8 JSON object, at most 1 MiB)::

    {"version": 1,                          \\
     "last_offset": 1,                       |  the six required fields; a meta.json with
     "last_term": 0,                         |  only these is accepted: the topic comes
     "ancestor_snapshot_id": "000…000",      |  from the directory name, partition 0,
     "compression": "none",                  |  segments = the *.log files beside it
     "size": 1234,                          /   (bytes of all segment files as stored)
     "snapshot_id": "1678886400000000000",
     "topic": "my-topic", "topic_id": "<uuid>", "partition": 0, "partition_count": 1,
     "base_offset": 0, "max_timestamp": 1700000000000,
     "created_at": "2026-01-01T00:00:00.000000Z",
     "topic_configs": {"retention.ms": "..."},
     "group_offsets": "group-offsets.json",
     "leader_epoch": 3,                     the partition's leader epoch at the cut
     "last_stable_offset": 2,               the cut: no transaction is open below it
     "segments": [{"file": "00000000000000000000.log", "base_offset": 0,
                   "last_offset": 1, "size": 1234, "crc32c": 305419896}],
     "txn_indexes": [{"file": "00000000000000000000.txnindex", "base_offset": 0,
                      "size": 34, "crc32c": 2596996162}]}

``last_stable_offset`` and ``txn_indexes`` are optional (older snapshots have
neither). A snapshot is cut at or below the partition's last stable offset, where
every transaction with a batch in the snapshot has its COMMIT/ABORT marker in it
too, so a restored partition has no open transaction. ``txn_indexes`` lists one
``.txnindex`` per segment holding an ABORT marker (an empty list: none); its
entries are restored as they are, so a restored partition answers read_committed
fetches exactly as its source (without the field they are derived from the
markers). Their sizes are not part of ``size``.

``ancestor_snapshot_id`` of all zeros (or null) means a full snapshot; otherwise the
snapshot is incremental and holds only the batches after its ancestor's last offset.
A segment's ``crc32c`` (or ``sha256``, hex) covers the file as stored (compressed if
``compression`` is not none). Names are checked strictly: segment files must be
``<20 digits>.log[.zst|.gz|.lz4]``; anything else in ``meta.json`` (``..``, ``/``,
absolute paths) is invalid. Symlinks resolving outside the data dir, device files
and FIFOs, non-UTF-8 names and oversized ``meta.json`` files are rejected, and so is
pathological JSON (duplicate keys, NaN, numbers over 100 characters, deep nesting;
:mod:`storage.strict_json`). A ``meta.json`` that does not parse counts as still
being copied until the directory settled, then as invalid.
``group-offsets.json`` is described (and checked) in :mod:`storage.snapshot_groups`.
Reading the files of a snapshot safely (hostile names, symlinks, FIFOs, torn or
damaged batches) is :mod:`storage.snapshot_files`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from storage import strict_json
from storage.errors import StorageError

META_FILE: Final = "meta.json"
GROUP_OFFSETS_FILE: Final = "group-offsets.json"
META_VERSION: Final = 1
MAX_META_BYTES: Final = 1024 * 1024
NO_ANCESTOR: Final = "0" * 36
CODECS: Final[Mapping[str, str]] = {
    "none": "",
    "zstd": ".zst",
    "gzip": ".gz",
    "lz4": ".lz4",
}
SEGMENT_RE: Final = re.compile(r"^(\d{20})\.log(\.zst|\.gz|\.lz4)?$")
TXNINDEX_RE: Final = re.compile(r"^(\d{20})\.txnindex$")
SNAPSHOT_ID_RE: Final = re.compile(r"^[0-9A-Za-z_-]{1,64}$")
UUID_RE: Final = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)
TOPIC_RE: Final = re.compile(r"^[a-zA-Z0-9._-]{1,249}$")


class SnapshotError(StorageError):
    """A snapshot cannot be used; ``reason`` is a short kebab-case code for metrics."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class SnapshotIncomplete(SnapshotError):
    """The snapshot is still being copied (or its meta.json does not parse yet)."""


class SnapshotInvalid(SnapshotError):
    """The snapshot is complete but wrong or hostile; it is never applied."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SegmentMeta:
    """One segment file of a snapshot as ``meta.json`` records it."""

    file: str
    base_offset: int
    last_offset: int | None = None
    size: int | None = None
    crc32c: int | None = None
    sha256: str | None = None

    def to_json(self) -> dict[str, object]:
        """The ``segments[]`` entry."""
        out: dict[str, object] = {"file": self.file, "base_offset": self.base_offset}
        optional = {
            "last_offset": self.last_offset,
            "size": self.size,
            "crc32c": self.crc32c,
            "sha256": self.sha256,
        }
        out.update({k: v for k, v in optional.items() if v is not None})
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotMeta:
    """A parsed ``meta.json``; optional fields are None when it is minimal."""

    version: int
    last_offset: int
    last_term: int
    ancestor_snapshot_id: str | None
    compression: str
    size: int
    snapshot_id: str | None = None
    topic: str | None = None
    topic_id: str | None = None
    partition: int = 0
    partition_count: int | None = None
    base_offset: int | None = None
    max_timestamp: int | None = None
    created_at: str | None = None
    segments: tuple[SegmentMeta, ...] | None = None
    topic_configs: Mapping[str, str] = field(default_factory=dict)
    group_offsets: str | None = None
    # the partition's leader epoch when the snapshot was cut (None in older files)
    leader_epoch: int | None = None
    # where the snapshot was cut (no transaction open below it; None: older file)
    last_stable_offset: int | None = None
    # the aborted-transaction index files (None: an older snapshot without them)
    txn_indexes: tuple[SegmentMeta, ...] | None = None

    @property
    def incremental(self) -> bool:
        """Whether the snapshot continues an ancestor."""
        return self.ancestor_snapshot_id is not None

    def to_json(self) -> dict[str, object]:
        """The ``meta.json`` object."""
        out: dict[str, object] = {
            "version": self.version,
            "last_offset": self.last_offset,
            "last_term": self.last_term,
            "ancestor_snapshot_id": self.ancestor_snapshot_id or NO_ANCESTOR,
            "compression": self.compression,
            "size": self.size,
        }
        optional = {
            "snapshot_id": self.snapshot_id,
            "topic": self.topic,
            "topic_id": self.topic_id,
            "partition": self.partition,
            "partition_count": self.partition_count,
            "base_offset": self.base_offset,
            "max_timestamp": self.max_timestamp,
            "created_at": self.created_at,
            "leader_epoch": self.leader_epoch,
            "last_stable_offset": self.last_stable_offset,
        }
        out.update({k: v for k, v in optional.items() if v is not None})
        if self.topic_configs:
            out["topic_configs"] = dict(self.topic_configs)
        if self.group_offsets is not None:
            out["group_offsets"] = self.group_offsets
        if self.segments is not None:
            out["segments"] = [s.to_json() for s in self.segments]
        if self.txn_indexes is not None:
            out["txn_indexes"] = [s.to_json() for s in self.txn_indexes]
        return out

    def encode(self) -> bytes:
        """``meta.json`` bytes (sorted keys, one trailing newline)."""
        return json.dumps(self.to_json(), indent=1, sort_keys=True).encode() + b"\n"


# -- parsing ---------------------------------------------------------------------


def _int(
    obj: Mapping[str, object], key: str, *, lo: int = 0, optional: bool = False
) -> int | None:
    value = obj.get(key)
    if value is None:
        if optional:
            return None
        raise SnapshotInvalid("bad-meta", f"{key} is missing")
    if not isinstance(value, int) or isinstance(value, bool):
        raise SnapshotInvalid("bad-meta", f"{key} is not an integer")
    if not lo <= value < 2**63:
        raise SnapshotInvalid("bad-meta", f"{key} {value} out of range")
    return value


def _req_int(obj: Mapping[str, object], key: str, *, lo: int = 0) -> int:
    value = _int(obj, key, lo=lo)
    assert value is not None
    return value


def _str(obj: Mapping[str, object], key: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 4096:
        raise SnapshotInvalid("bad-meta", f"{key} is not a string")
    return value


def check_segment_name(name: str, compression: str) -> int:
    """Base offset named by a segment file; rejects every other name.

    Raises:
        SnapshotInvalid: not ``<20 digits>.log`` with the codec's suffix.
    """
    m = SEGMENT_RE.match(name)
    if m is None or (m.group(2) or "") != CODECS[compression]:
        raise SnapshotInvalid("bad-file-name", f"{name!r} is not a segment file name")
    return int(m.group(1))


def load_json(data: bytes, name: str, reason: str) -> object:
    """Parse a snapshot JSON file strictly (:mod:`storage.strict_json`).

    Raises:
        SnapshotIncomplete: ``<name>-unparsable``: not (yet) JSON; a copy may
            still be writing it.
        SnapshotInvalid: ``reason``: not UTF-8, NaN, a duplicate key, a number over
            100 characters or nesting too deep: complete, and never acceptable.
    """
    try:
        return strict_json.loads(data)
    except strict_json.JsonSyntax as exc:
        stem = name.removesuffix(".json")
        raise SnapshotIncomplete(f"{stem}-unparsable", f"{name}: {exc}") from exc
    except strict_json.JsonRejected as exc:
        raise SnapshotInvalid(reason, f"{name}: {exc}") from exc


def parse_meta(data: bytes) -> SnapshotMeta:
    """Parse ``meta.json`` bytes.

    Raises:
        SnapshotIncomplete: not (yet) valid JSON; a copy may still be writing it.
        SnapshotInvalid: too large, not UTF-8, pathological JSON (see
            :func:`load_json`) or a field has the wrong type.
    """
    if len(data) > MAX_META_BYTES:
        raise SnapshotInvalid("meta-too-large", f"{len(data)} bytes")
    obj = load_json(data, META_FILE, "bad-meta")
    if not isinstance(obj, dict):
        raise SnapshotInvalid("bad-meta", "meta.json is not an object")
    version = _req_int(obj, "version")
    if version != META_VERSION:
        raise SnapshotInvalid("bad-meta", f"unsupported version {version}")
    compression = _str(obj, "compression") or "none"
    if compression not in CODECS:
        raise SnapshotInvalid("bad-meta", f"unknown compression {compression!r}")
    ancestor = obj.get("ancestor_snapshot_id")
    if ancestor is not None and not (
        isinstance(ancestor, str) and SNAPSHOT_ID_RE.match(ancestor)
    ):
        raise SnapshotInvalid("bad-meta", "ancestor_snapshot_id is not a snapshot id")
    if ancestor is not None and set(ancestor) == {"0"}:
        ancestor = None
    snapshot_id = _str(obj, "snapshot_id")
    if snapshot_id is not None and not SNAPSHOT_ID_RE.match(snapshot_id):
        raise SnapshotInvalid("bad-meta", "bad snapshot_id")
    topic = _str(obj, "topic")
    if topic is not None and (not TOPIC_RE.match(topic) or topic in (".", "..")):
        raise SnapshotInvalid("bad-meta", f"bad topic name {topic!r}")
    topic_id = _str(obj, "topic_id")
    if topic_id is not None and not UUID_RE.match(topic_id):
        raise SnapshotInvalid("bad-meta", "topic_id is not a UUID")
    configs = obj.get("topic_configs") or {}
    if not isinstance(configs, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in configs.items()
    ):
        raise SnapshotInvalid("bad-meta", "topic_configs is not a string map")
    group_offsets = _str(obj, "group_offsets")
    if group_offsets is not None and group_offsets != GROUP_OFFSETS_FILE:
        raise SnapshotInvalid("bad-file-name", f"group_offsets {group_offsets!r}")
    segments: tuple[SegmentMeta, ...] | None = None
    raw_segments = obj.get("segments")
    if raw_segments is not None:
        if (
            not isinstance(raw_segments, list)
            or not raw_segments
            or len(raw_segments) > 100_000
        ):
            raise SnapshotInvalid("bad-meta", "segments is not a non-empty list")
        parsed = []
        for raw in raw_segments:
            if not isinstance(raw, dict):
                raise SnapshotInvalid("bad-meta", "a segment is not an object")
            name = _str(raw, "file")
            if name is None:
                raise SnapshotInvalid("bad-meta", "a segment has no file")
            named_base = check_segment_name(name, compression)
            base = _req_int(raw, "base_offset")
            if base != named_base:
                raise SnapshotInvalid("bad-meta", f"{name} says base_offset {base}")
            sha = _str(raw, "sha256")
            if sha is not None and not re.fullmatch(r"[0-9a-f]{64}", sha):
                raise SnapshotInvalid("bad-meta", "sha256 is not 64 hex digits")
            crc = _int(raw, "crc32c", optional=True)
            if crc is not None and crc >= 2**32:
                raise SnapshotInvalid("bad-meta", "crc32c out of range")
            parsed.append(
                SegmentMeta(
                    file=name,
                    base_offset=base,
                    last_offset=_int(raw, "last_offset", optional=True),
                    size=_int(raw, "size", optional=True),
                    crc32c=crc,
                    sha256=sha,
                )
            )
        if len({s.file for s in parsed}) != len(parsed):
            raise SnapshotInvalid("bad-meta", "a segment file is listed twice")
        segments = tuple(sorted(parsed, key=lambda s: s.base_offset))
    txn_indexes = _txn_indexes(obj, segments)
    partition = _int(obj, "partition", optional=True)
    count = _int(obj, "partition_count", lo=1, optional=True)
    if partition is not None and count is not None and partition >= count:
        raise SnapshotInvalid("bad-meta", f"partition {partition} of {count}")
    if count is not None and count > 100_000:
        raise SnapshotInvalid("bad-meta", "partition_count too large")
    created_at = _str(obj, "created_at")
    return SnapshotMeta(
        version=version,
        last_offset=_req_int(obj, "last_offset"),
        last_term=_req_int(obj, "last_term", lo=-1),
        ancestor_snapshot_id=ancestor,
        compression=compression,
        size=_req_int(obj, "size"),
        snapshot_id=snapshot_id,
        topic=topic,
        topic_id=topic_id.lower() if topic_id else None,
        partition=partition or 0,
        partition_count=count,
        base_offset=_int(obj, "base_offset", optional=True),
        max_timestamp=_int(obj, "max_timestamp", lo=-1, optional=True),
        created_at=created_at,
        segments=segments,
        topic_configs=dict(configs),
        group_offsets=group_offsets,
        leader_epoch=_int(obj, "leader_epoch", lo=-1, optional=True),
        last_stable_offset=_int(obj, "last_stable_offset", optional=True),
        txn_indexes=txn_indexes,
    )


def _txn_indexes(
    obj: Mapping[str, object], segments: tuple[SegmentMeta, ...] | None
) -> tuple[SegmentMeta, ...] | None:
    """The ``txn_indexes`` entries: each names a listed segment's base offset."""
    raw = obj.get("txn_indexes")
    if raw is None:
        return None
    if not isinstance(raw, list) or len(raw) > 100_000:
        raise SnapshotInvalid("bad-meta", "txn_indexes is not a list")
    bases = None if segments is None else {s.base_offset for s in segments}
    parsed = []
    for item in raw:
        if not isinstance(item, dict):
            raise SnapshotInvalid("bad-meta", "a txn index is not an object")
        name = _str(item, "file")
        m = None if name is None else TXNINDEX_RE.match(name)
        if name is None or m is None:
            raise SnapshotInvalid("bad-file-name", f"{name!r} is not a txnindex name")
        base = _req_int(item, "base_offset")
        if base != int(m.group(1)) or (bases is not None and base not in bases):
            raise SnapshotInvalid("bad-meta", f"{name} is not a listed segment's")
        crc = _int(item, "crc32c", optional=True)
        if crc is not None and crc >= 2**32:
            raise SnapshotInvalid("bad-meta", "crc32c out of range")
        parsed.append(
            SegmentMeta(
                file=name, base_offset=base, size=_req_int(item, "size"), crc32c=crc
            )
        )
    if len({s.file for s in parsed}) != len(parsed):
        raise SnapshotInvalid("bad-meta", "a txn index is listed twice")
    return tuple(sorted(parsed, key=lambda s: s.base_offset))


def is_utf8_name(name: str) -> bool:
    """Whether a name from ``os.listdir`` was valid UTF-8 (no surrogate escapes)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
