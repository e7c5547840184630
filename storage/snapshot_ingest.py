"""Snapshot ingest bookkeeping: finding candidates and the persisted ingest state.

Candidates (see :mod:`storage.snapshot_meta` for the layout) are directories holding
a ``meta.json`` at ``snapshots/<topic>/<snapshot_id>/`` or one level up
(``snapshots/<topic>/``, a flat copy). Dot-names are skipped at every level; a
directory entry that is a symlink leading out of the data dir, or whose name is not
UTF-8, becomes a rejected candidate instead.

The ingest state is the broker's own record of every snapshot it has seen; it lives
in the data dir, never in the user's snapshot directories (which ingest never
modifies)::

    <data_dir>/ailurus/snapshot-ingest.json      written atomically (tmp, fsync, rename)

    {"version": 1, "last_snapshot_id": "1678886400000000000",
     "snapshots": {"<path relative to snapshots/>": {
         "status": "applied", "reason": "", "fingerprint": "…",
         "topic": "t", "partition": 0, "snapshot_id": "…", "base_offset": 0,
         "last_offset": 1, "size": 1234, "updated_at": 1700000000000,
         "bytes_applied": 1234}}}

A status is final (applied, already-present, diverged, invalid, created) for the
fingerprint it was decided on: the names, sizes and mtimes of ``meta.json`` and the
segment files. A changed fingerprint (the user replaced the files) is looked at again.
"""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final

from storage.fileops import DEFAULT_FILEOPS, FileOps
from storage.snapshot import Status
from storage.snapshot_meta import META_FILE, is_utf8_name

STATE_DIR: Final = "ailurus"
STATE_FILE: Final = "snapshot-ingest.json"
SNAPSHOTS_DIR: Final = "snapshots"
FINAL: Final = frozenset(
    {
        Status.APPLIED,
        Status.ALREADY_PRESENT,
        Status.DIVERGED,
        Status.INVALID,
        Status.CREATED,
        Status.HANDED_OVER,
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Candidate:
    """A directory that looks like a snapshot (or a rejected entry of the tree)."""

    rel: str  # path relative to snapshots/, used as the state key
    path: str
    topic_dir: str  # the <topic id or name> directory name
    flat: bool
    rejected: str | None = None  # reason, when the entry itself is hostile


def _safe_name(name: str) -> str:
    return (
        name
        if is_utf8_name(name)
        else os.fsencode(name).decode("utf-8", "backslashreplace")
    )


def _inside(path: str, root: str) -> bool:
    real = os.path.realpath(path)
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


def _dir_kind(path: str, root: str) -> str | None:
    """None for a safe directory, "skip" for a non-directory, else a reject reason."""
    try:
        lst = os.lstat(path)
    except OSError:
        return "skip"
    if stat.S_ISLNK(lst.st_mode):
        if not _inside(path, root):
            return "symlink-outside-data-dir"
        try:
            lst = os.stat(path)
        except OSError:
            return "skip"
    return None if stat.S_ISDIR(lst.st_mode) else "skip"


def discover(snapshots_dir: str, root: str) -> list[Candidate]:
    """Every candidate under ``snapshots_dir``; ``root`` is the data dir's real path."""
    out: list[Candidate] = []
    try:
        topics = sorted(os.listdir(snapshots_dir))
    except OSError:
        return out
    for topic in topics:
        if topic.startswith("."):
            continue
        tpath = os.path.join(snapshots_dir, topic)
        tname = _safe_name(topic)
        kind = _dir_kind(tpath, root)
        if kind == "skip":
            continue
        if not is_utf8_name(topic):
            kind = "non-utf8-name"
        if kind is not None:
            out.append(
                Candidate(
                    rel=tname, path=tpath, topic_dir=tname, flat=True, rejected=kind
                )
            )
            continue
        try:
            entries = sorted(os.listdir(tpath))
        except OSError:
            continue
        if META_FILE in entries:
            out.append(Candidate(rel=tname, path=tpath, topic_dir=topic, flat=True))
        for entry in entries:
            if entry.startswith("."):
                continue
            spath = os.path.join(tpath, entry)
            kind = _dir_kind(spath, root)
            if kind == "skip":
                continue
            rel = f"{tname}/{_safe_name(entry)}"
            if not is_utf8_name(entry):
                kind = "non-utf8-name"
            if kind is not None:
                out.append(
                    Candidate(
                        rel=rel, path=spath, topic_dir=topic, flat=False, rejected=kind
                    )
                )
                continue
            if os.path.lexists(os.path.join(spath, META_FILE)):
                out.append(Candidate(rel=rel, path=spath, topic_dir=topic, flat=False))
    return out


def watch_dirs(snapshots_dir: str) -> Iterator[str]:
    """The directories an inotify watcher should watch (root, topic and snapshot dirs)."""
    yield snapshots_dir
    try:
        topics = os.listdir(snapshots_dir)
    except OSError:
        return
    for topic in topics:
        tpath = os.path.join(snapshots_dir, topic)
        if topic.startswith(".") or os.path.islink(tpath) or not os.path.isdir(tpath):
            continue
        yield tpath
        try:
            entries = os.listdir(tpath)
        except OSError:
            continue
        for entry in entries:
            spath = os.path.join(tpath, entry)
            if (
                not entry.startswith(".")
                and not os.path.islink(spath)
                and os.path.isdir(spath)
            ):
                yield spath


def fingerprint(path: str) -> str:
    """Names, sizes and mtimes of the files in a snapshot directory (not recursive)."""
    parts = []
    try:
        names = sorted(os.listdir(path))
    except OSError as exc:
        return f"error:{exc.errno}"
    for name in names:
        if name.startswith("."):
            continue
        try:
            st = os.lstat(os.path.join(path, name))
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode):
            continue
        parts.append(f"{_safe_name(name)}:{st.st_size}:{st.st_mtime_ns}:{st.st_mode:o}")
    return "|".join(parts)


# -- persisted state ---------------------------------------------------------------


@dataclass(slots=True, kw_only=True)
class Entry:
    """The state of one snapshot directory."""

    status: Status
    reason: str = ""
    fingerprint: str = ""
    topic: str | None = None
    partition: int | None = None
    snapshot_id: str | None = None
    base_offset: int | None = None
    last_offset: int | None = None
    size: int | None = None
    bytes_applied: int = 0
    updated_at: int = 0

    def to_json(self) -> dict[str, object]:
        """The state-file object."""
        return {
            "status": str(self.status),
            "reason": self.reason,
            "fingerprint": self.fingerprint,
            "topic": self.topic,
            "partition": self.partition,
            "snapshot_id": self.snapshot_id,
            "base_offset": self.base_offset,
            "last_offset": self.last_offset,
            "size": self.size,
            "bytes_applied": self.bytes_applied,
            "updated_at": self.updated_at,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, object]) -> Entry:
        """Read a state-file object (unknown or bad values become defaults)."""

        def opt_int(key: str) -> int | None:
            v = obj.get(key)
            return v if isinstance(v, int) and not isinstance(v, bool) else None

        def opt_str(key: str) -> str | None:
            v = obj.get(key)
            return v if isinstance(v, str) else None

        try:
            status = Status(str(obj.get("status")))
        except ValueError:
            status = Status.WAITING
        return cls(
            status=status,
            reason=opt_str("reason") or "",
            fingerprint=opt_str("fingerprint") or "",
            topic=opt_str("topic"),
            partition=opt_int("partition"),
            snapshot_id=opt_str("snapshot_id"),
            base_offset=opt_int("base_offset"),
            last_offset=opt_int("last_offset"),
            size=opt_int("size"),
            bytes_applied=opt_int("bytes_applied") or 0,
            updated_at=opt_int("updated_at") or 0,
        )


@dataclass(slots=True, kw_only=True)
class IngestState:
    """Every snapshot's ingest status, persisted in the data dir."""

    path: str
    entries: dict[str, Entry] = field(default_factory=dict)
    last_snapshot_id: int = 0
    fileops: FileOps = DEFAULT_FILEOPS

    @classmethod
    def load(cls, data_dir: str, *, fileops: FileOps = DEFAULT_FILEOPS) -> IngestState:
        """Read the state file (a missing or damaged file starts empty)."""
        path = os.path.join(data_dir, STATE_DIR, STATE_FILE)
        state = cls(path=path, fileops=fileops)
        try:
            with open(path, "rb") as f:
                obj = json.loads(f.read(64 * 1024 * 1024))
        except (OSError, ValueError):
            return state
        if not isinstance(obj, dict):
            return state
        last = obj.get("last_snapshot_id")
        if isinstance(last, str) and last.isdigit():
            state.last_snapshot_id = int(last)
        snaps = obj.get("snapshots")
        if isinstance(snaps, dict):
            for rel, entry in snaps.items():
                if isinstance(rel, str) and isinstance(entry, dict):
                    state.entries[rel] = Entry.from_json(entry)
        return state

    def encode(self) -> bytes:
        """The state file's bytes."""
        data = {
            "version": 1,
            "last_snapshot_id": str(self.last_snapshot_id),
            "snapshots": {rel: e.to_json() for rel, e in sorted(self.entries.items())},
        }
        return json.dumps(data, indent=1).encode() + b"\n"

    def write(self, data: bytes) -> None:
        """Write encoded state atomically (tmp, fsync, rename, fsync dir)."""
        self.fileops.makedirs(os.path.dirname(self.path))
        self.fileops.write_file_atomic(self.path, data)

    def save(self) -> None:
        """Encode and write the state."""
        self.write(self.encode())

    def next_snapshot_id(self) -> str:
        """A nanosecond timestamp, unique and increasing for this broker (persist after)."""
        self.last_snapshot_id = max(time.time_ns(), self.last_snapshot_id + 1)
        return str(self.last_snapshot_id)

    def set(self, rel: str, entry: Entry) -> bool:
        """Record ``entry``; whether its status or reason changed."""
        old = self.entries.get(rel)
        entry.updated_at = time.time_ns() // 1_000_000
        self.entries[rel] = entry
        return old is None or old.status != entry.status or old.reason != entry.reason
