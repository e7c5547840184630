"""Snapshot retention: which snapshots a policy removes, and finding/removing them.

:func:`plan_retention` is pure: given every snapshot of some partitions (id,
partition, ancestor id, creation time, pinned) and a :class:`RetentionPolicy`
(``keep_last``, ``max_age``, ``now``) it returns what to keep and what to delete.
Per partition, a snapshot is *wanted* when it is one of the ``keep_last`` newest
managed snapshots or younger than ``max_age`` (either reason keeps it; a policy
with neither keeps everything). Pinned snapshots (ones the policy does not manage,
e.g. snapshots a user dropped in for ingest) are always kept. Then every ancestor of
a kept snapshot is kept too, transitively, so no retained incremental snapshot ever
loses the chain it depends on; everything else is deleted.

:func:`collect_snapshots` and :func:`remove_snapshot` are the synchronous file side
(``<snapshots_dir>/<topic_dir>/<snapshot_id>/meta.json``). Removal renames the
directory to a dot-name first (watchers ignore dot-directories), then deletes it,
so nobody ever sees a half-deleted snapshot.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass

from storage.errors import StorageError
from storage.snapshot_files import read_meta_bytes
from storage.snapshot_meta import META_FILE, SnapshotError, parse_meta


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotInfo:
    """What retention needs to know of one snapshot."""

    snapshot_id: str
    partition: Hashable  # e.g. (topic_dir, partition); ancestors resolve within it
    ancestor_id: str | None
    created_at: float  # seconds since the epoch
    pinned: bool = False  # never deleted (not managed by the policy)
    path: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class RetentionPolicy:
    """``keep_last`` newest per partition and/or everything younger than ``max_age``."""

    keep_last: int | None = None
    max_age: float | None = None  # seconds
    now: float = 0.0  # seconds since the epoch

    def __post_init__(self) -> None:
        if self.keep_last is not None and self.keep_last < 0:
            raise ValueError("keep_last must be >= 0")
        if self.max_age is not None and self.max_age < 0:
            raise ValueError("max_age must be >= 0")


@dataclass(frozen=True, slots=True, kw_only=True)
class RetentionPlan:
    """The outcome: every input snapshot is in exactly one of keep / delete."""

    keep: tuple[SnapshotInfo, ...]
    delete: tuple[SnapshotInfo, ...]
    kept_as_ancestor: tuple[SnapshotInfo, ...]  # kept only because others need them


def order_key(s: SnapshotInfo) -> tuple[float, int, str]:
    """Oldest first: creation time, then numeric id (ns timestamps), then id."""
    numeric = int(s.snapshot_id) if s.snapshot_id.isdigit() else -1
    return (s.created_at, numeric, s.snapshot_id)


def plan_retention(
    snapshots: Iterable[SnapshotInfo], policy: RetentionPolicy
) -> RetentionPlan:
    """Decide which snapshots to delete (see the module docstring)."""
    by_partition: dict[Hashable, list[SnapshotInfo]] = {}
    for s in snapshots:
        by_partition.setdefault(s.partition, []).append(s)
    keep: list[SnapshotInfo] = []
    delete: list[SnapshotInfo] = []
    as_ancestor: list[SnapshotInfo] = []
    for items in by_partition.values():
        items.sort(key=order_key)
        wanted = _wanted(items, policy)
        by_id: dict[str, list[int]] = {}
        for i, s in enumerate(items):
            by_id.setdefault(s.snapshot_id, []).append(i)
        kept = set(wanted)
        stack = list(wanted)
        while stack:  # close over ancestors; ``kept`` bounds the walk (cycles too)
            anc = items[stack.pop()].ancestor_id
            for j in by_id.get(anc, ()) if anc is not None else ():
                if j not in kept:
                    kept.add(j)
                    stack.append(j)
        for i, s in enumerate(items):
            if i in kept:
                keep.append(s)
                if i not in wanted:
                    as_ancestor.append(s)
            else:
                delete.append(s)
    return RetentionPlan(
        keep=tuple(keep), delete=tuple(delete), kept_as_ancestor=tuple(as_ancestor)
    )


def _wanted(items: Sequence[SnapshotInfo], policy: RetentionPolicy) -> set[int]:
    """Indexes (into oldest-first ``items``) the policy keeps for their own sake."""
    if policy.keep_last is None and policy.max_age is None:
        return set(range(len(items)))
    wanted = {i for i, s in enumerate(items) if s.pinned}
    managed = [i for i, s in enumerate(items) if not s.pinned]
    if policy.keep_last:
        wanted.update(managed[-policy.keep_last :])
    if policy.max_age is not None:
        cutoff = policy.now - policy.max_age
        wanted.update(i for i in managed if items[i].created_at > cutoff)
    return wanted


# -- the file side -------------------------------------------------------------------


def created_seconds(snapshot_id: str, created_at: str | None, mtime: float) -> float:
    """A snapshot's creation time: its ns-timestamp id, else meta's created_at, else mtime."""
    if snapshot_id.isdigit() and len(snapshot_id) >= 18:
        return int(snapshot_id) / 1e9
    if created_at:
        with contextlib.suppress(ValueError):
            parsed = dt.datetime.fromisoformat(created_at)
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=dt.UTC)
            return parsed.timestamp()
    return mtime


def collect_snapshots(
    snapshots_dir: str, root: str, *, topic_dirs: Iterable[str] | None = None
) -> list[SnapshotInfo]:
    """Every readable snapshot at ``<snapshots_dir>/<topic_dir>/<id>/``.

    ``partition`` is ``(topic_dir, partition)``; ``path`` is relative to
    ``snapshots_dir``. Dot-names, symlinks and unreadable ``meta.json`` are skipped.
    """
    out: list[SnapshotInfo] = []
    try:
        names = sorted(os.listdir(snapshots_dir)) if topic_dirs is None else topic_dirs
    except OSError:
        return out
    for topic_dir in names:
        parent = os.path.join(snapshots_dir, topic_dir)
        if topic_dir.startswith(".") or os.path.islink(parent):
            continue
        try:
            entries = sorted(os.listdir(parent))
        except OSError:
            continue
        for name in entries:
            path = os.path.join(parent, name)
            if name.startswith(".") or os.path.islink(path):
                continue
            try:
                mtime = os.stat(os.path.join(path, META_FILE)).st_mtime
                meta = parse_meta(read_meta_bytes(path, root))
            except (OSError, SnapshotError):
                continue
            sid = meta.snapshot_id or name
            out.append(
                SnapshotInfo(
                    snapshot_id=sid,
                    partition=(topic_dir, meta.partition),
                    ancestor_id=meta.ancestor_snapshot_id,
                    created_at=created_seconds(sid, meta.created_at, mtime),
                    path=f"{topic_dir}/{name}",
                )
            )
    return out


def remove_snapshot(snapshots_dir: str, rel: str) -> None:
    """Delete ``<snapshots_dir>/<rel>``: rename it to a dot-name, then remove that.

    Raises:
        StorageError: the rename failed for another reason than "already gone".
    """
    path = os.path.join(snapshots_dir, rel)
    parent, name = os.path.split(path)
    trash = os.path.join(parent, f".{name}.deleting")
    shutil.rmtree(trash, ignore_errors=True)  # left by an interrupted removal
    try:
        os.replace(path, trash)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StorageError(f"removing snapshot {path}: {exc}") from exc
    shutil.rmtree(trash, ignore_errors=True)
