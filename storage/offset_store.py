"""Durable committed offsets of consumer groups (Kafka's ``__consumer_offsets``).

One append-only JSON-lines log in the data dir, easy to read with ``jq`` and to copy
into a snapshot, compacted (rewritten with only the live entries) on clean close and
whenever it grows past twice its live size::

    <data_dir>/consumer_offsets/offsets.jsonl

    {"op":"commit","group":"g","topic":"t","partition":0,"offset":42,
     "leader_epoch":-1,"metadata":"","commit_ms":1700000000000,"expire_ms":null}
    {"op":"delete","group":"g","topic":"t","partition":0}
    {"op":"delete_group","group":"g"}
    {"op":"delete_topic","topic":"t"}

Every line ends with ``\\n``. :meth:`OffsetStore.commit` writes lines (no fsync) and
returns a write sequence number; :meth:`OffsetStore.sync` fsyncs and advances
:attr:`OffsetStore.durable_seq` ("committed = fsynced"), so the broker's async driver
batches many commits into one fsync (group commit). On open, a torn last line (crash
mid-write) or the first undecodable line and everything after it is cut off, the way
segment recovery cuts a torn batch; :attr:`OffsetStore.recovered_bytes_dropped` says
how much. A well-formed commit line whose values no Kafka response can carry (an offset
beyond int64, a leader epoch beyond int32, a string that is not UTF-8 or longer than a
protocol STRING; written by an older version) is skipped, not applied, and listed in
:attr:`OffsetStore.skipped` for the broker to log; the lines after it still load.

A failed fsync fails the store: later writes and syncs raise
:class:`~storage.errors.StorageIOError` until it is reopened (and recovered).

Thread-safety: ``commit``/``delete_*``/``fetch`` run on the event-loop thread while
``sync``/``compact`` run in a worker thread; one lock orders them, and ``sync``
fsyncs a duplicate of the descriptor so a concurrent compaction's swap is harmless.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from storage.errors import StorageIOError
from storage.fileops import DEFAULT_FILEOPS, FileOps

__all__ = ["CommittedOffset", "OffsetStore", "SkippedEntry", "wire_problem"]

_DIR: Final = "consumer_offsets"
_FILE: Final = "offsets.jsonl"
_COMPACT_MIN_LINES: Final = 10_000
_MAX_SKIPPED_KEPT: Final = 100


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


def _line(obj: Mapping[str, object]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


@dataclass(frozen=True, slots=True, kw_only=True)
class SkippedEntry:
    """A commit line recovery left out: its line number (1-based) and why."""

    line: int
    group: str  # as ``repr`` shows it: the raw value may not print or encode
    reason: str


class _BadLine(Exception):
    pass


def _as_int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _BadLine
    return value


def _as_str(value: object) -> str:
    if not isinstance(value, str):
        raise _BadLine
    return value


class OffsetStore:
    """Committed offsets per group, durable once :meth:`sync` covered them."""

    def __init__(self, data_dir: Path, *, fileops: FileOps = DEFAULT_FILEOPS) -> None:
        self._ops = fileops
        self._dir = Path(data_dir) / _DIR
        self._path = str(self._dir / _FILE)
        self._lock = threading.Lock()
        self._groups: dict[str, dict[tuple[str, int], CommittedOffset]] = {}
        self._lines = 0
        self._written_seq = 0
        self._durable_seq = 0
        self._closed = False
        # Set by a failed fsync: nothing more is durable until reopened.
        self._failed: str | None = None
        self.recovered_bytes_dropped = 0
        self.skipped: list[SkippedEntry] = []  # the first 100 of them
        self.skipped_count = 0
        try:
            self._ops.makedirs(str(self._dir))
            self._recover()
            self._fd = self._ops.open(
                self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND
            )
            self._size = self._ops.fstat_size(self._fd)
        except OSError as exc:
            raise StorageIOError(
                f"cannot open offset store: {exc}", errno=exc.errno
            ) from exc

    # -- recovery ------------------------------------------------------------------

    def _recover(self) -> None:
        try:
            with open(self._path, "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            return
        good = 0
        pos = 0
        while pos < len(data):
            end = data.find(b"\n", pos)
            if end < 0:
                break  # torn tail: no newline
            try:
                self._apply(json.loads(data[pos:end]), self._lines + 1)
            except (ValueError, RecursionError, _BadLine):
                break
            self._lines += 1
            pos = end + 1
            good = pos
        if good < len(data):
            self.recovered_bytes_dropped = len(data) - good
            fd = self._ops.open(self._path, os.O_WRONLY)
            try:
                self._ops.ftruncate(fd, good)
                self._ops.fsync(fd)
            finally:
                self._ops.close(fd)

    def _apply(self, obj: object, line: int) -> None:
        if not isinstance(obj, dict):
            raise _BadLine
        op = obj.get("op")
        if op == "commit":
            group = _as_str(obj.get("group"))
            expire = obj.get("expire_ms")
            entry = CommittedOffset(
                topic=_as_str(obj.get("topic")),
                partition=_as_int(obj.get("partition")),
                offset=_as_int(obj.get("offset")),
                leader_epoch=_as_int(obj.get("leader_epoch", -1)),
                metadata=_as_str(obj.get("metadata", "")),
                commit_ms=_as_int(obj.get("commit_ms", 0)),
                expire_ms=None if expire is None else _as_int(expire),
            )
            problem = wire_problem(group, entry)
            if problem is not None:
                self.skipped_count += 1
                if len(self.skipped) < _MAX_SKIPPED_KEPT:
                    self.skipped.append(
                        SkippedEntry(
                            line=line, group=repr(group)[:200], reason=problem[:200]
                        )
                    )
                return
            self._groups.setdefault(group, {})[(entry.topic, entry.partition)] = entry
        elif op == "delete":
            group = _as_str(obj.get("group"))
            key = (_as_str(obj.get("topic")), _as_int(obj.get("partition")))
            offsets = self._groups.get(group)
            if offsets is not None:
                offsets.pop(key, None)
                if not offsets:
                    del self._groups[group]
        elif op == "delete_group":
            self._groups.pop(_as_str(obj.get("group")), None)
        elif op == "delete_topic":
            self._drop_topic(_as_str(obj.get("topic")))
        else:
            raise _BadLine

    def _drop_topic(self, topic: str) -> int:
        dropped = 0
        for group in list(self._groups):
            offsets = self._groups[group]
            for key in [k for k in offsets if k[0] == topic]:
                del offsets[key]
                dropped += 1
            if not offsets:
                del self._groups[group]
        return dropped

    # -- writes (event-loop thread) --------------------------------------------------

    def _write(self, lines: Iterable[Mapping[str, object]]) -> int:
        payload = b"".join(_line(obj) for obj in lines)
        if not payload:
            return self._written_seq
        if self._closed:
            raise StorageIOError("offset store is closed")
        if self._failed is not None:
            raise StorageIOError(f"offset store failed earlier: {self._failed}")
        view = memoryview(payload)
        try:
            while view:
                n = self._ops.pwrite(self._fd, view, self._size)
                view = view[n:]
                self._size += n
        except OSError as exc:
            raise StorageIOError(
                f"offset write failed: {exc}", errno=exc.errno
            ) from exc
        self._lines += payload.count(b"\n")
        self._written_seq += 1
        return self._written_seq

    def commit(self, group: str, offsets: Iterable[CommittedOffset]) -> int:
        """Record offsets for ``group`` (visible at once); durable after :meth:`sync`.

        Returns the write sequence number to compare with :attr:`durable_seq`.
        """
        entries = list(offsets)
        with self._lock:
            seq = self._write(e.to_json(group) for e in entries)
            table = self._groups.setdefault(group, {}) if entries else None
            for e in entries:
                assert table is not None
                table[(e.topic, e.partition)] = e
            return seq

    def delete_offsets(self, group: str, partitions: Iterable[tuple[str, int]]) -> int:
        """Forget some of a group's offsets (OffsetDelete)."""
        with self._lock:
            table = self._groups.get(group, {})
            keys = [k for k in partitions if k in table]
            seq = self._write(
                {"op": "delete", "group": group, "topic": t, "partition": p}
                for t, p in keys
            )
            for k in keys:
                del table[k]
            if not table:
                self._groups.pop(group, None)
            return seq

    def delete_group(self, group: str) -> int:
        """Forget every offset of ``group`` (DeleteGroups)."""
        with self._lock:
            if group not in self._groups:
                return self._written_seq
            seq = self._write([{"op": "delete_group", "group": group}])
            del self._groups[group]
            return seq

    def delete_topic(self, topic: str) -> int:
        """Drop every group's offsets of a deleted topic; returns how many went."""
        with self._lock:
            if not any(k[0] == topic for o in self._groups.values() for k in o):
                return 0
            self._write([{"op": "delete_topic", "topic": topic}])
            return self._drop_topic(topic)

    def expire(
        self,
        *,
        now_ms: int,
        retention_ms: int,
        protected_groups: Collection[str] = (),
        empty_since_ms: Mapping[str, int] | None = None,
    ) -> list[tuple[str, str, int]]:
        """Drop offsets older than ``offsets.retention.minutes`` (Kafka ≥ 2.1 rules).

        Offsets of ``protected_groups`` (groups with members) never expire. Otherwise
        an offset expires at its explicit ``expire_ms``, else ``retention_ms`` after
        the later of its commit and the time its group became empty.
        """
        since = empty_since_ms or {}
        gone: list[tuple[str, str, int]] = []
        with self._lock:
            for group, table in self._groups.items():
                if group in protected_groups:
                    continue
                for (topic, part), e in table.items():
                    if e.expire_ms is not None:
                        expired = now_ms >= e.expire_ms
                    else:
                        base = max(e.commit_ms, since.get(group, e.commit_ms))
                        expired = now_ms - base >= retention_ms
                    if expired:
                        gone.append((group, topic, part))
            self._write(
                {"op": "delete", "group": g, "topic": t, "partition": p}
                for g, t, p in gone
            )
            for g, t, p in gone:
                table = self._groups[g]
                del table[(t, p)]
                if not table:
                    del self._groups[g]
        return gone

    # -- reads ---------------------------------------------------------------------

    def fetch(
        self, group: str, partitions: Iterable[tuple[str, int]] | None = None
    ) -> dict[tuple[str, int], CommittedOffset]:
        """The group's committed offsets: all of them, or those of ``partitions``."""
        with self._lock:
            table = self._groups.get(group, {})
            if partitions is None:
                return dict(table)
            return {k: table[k] for k in partitions if k in table}

    def groups(self) -> list[str]:
        """Groups that have at least one committed offset."""
        with self._lock:
            return sorted(self._groups)

    @property
    def written_seq(self) -> int:
        """Sequence number of the last write (visible, maybe not yet durable)."""
        return self._written_seq

    @property
    def durable_seq(self) -> int:
        """Every write with a sequence number ≤ this has been fsynced."""
        return self._durable_seq

    @property
    def durable_offset(self) -> int:
        """Alias of :attr:`durable_seq`, so the broker's group commit can drive us."""
        return self._durable_seq

    @property
    def needs_sync(self) -> bool:
        """Whether some write is not yet durable."""
        return self._durable_seq < self._written_seq

    @property
    def path(self) -> Path:
        """The log file (for inspection and snapshots)."""
        return Path(self._path)

    # -- durability (worker thread) ------------------------------------------------

    def sync(self) -> int:
        """fsync everything written so far; returns the new :attr:`durable_seq`."""
        with self._lock:
            if self._closed:
                return self._durable_seq
            if self._failed is not None:
                raise StorageIOError(f"offset store failed earlier: {self._failed}")
            target = self._written_seq
            if target == self._durable_seq:
                return target
            fd = self._ops.dup(self._fd)
        try:
            self._ops.fdatasync(fd)
        except OSError as exc:
            # After a failed fsync the page cache may have dropped the data (Linux
            # reports the error once): never claim durability again until reopened.
            self._failed = str(exc)
            raise StorageIOError(
                f"offset fsync failed: {exc}", errno=exc.errno
            ) from exc
        finally:
            self._ops.close(fd)
        with self._lock:
            self._durable_seq = max(self._durable_seq, target)
            return self._durable_seq

    def should_compact(self) -> bool:
        """Whether the log holds more than twice its live entries (and is not tiny)."""
        live = sum(len(t) for t in self._groups.values())
        return self._lines > max(_COMPACT_MIN_LINES, 2 * live)

    def compact(self) -> None:
        """Rewrite the log with only live entries (atomic rename); all becomes durable."""
        with self._lock:
            if self._closed:
                return
            lines = [
                _line(e.to_json(group))
                for group, table in sorted(self._groups.items())
                for e in table.values()
            ]
            data = b"".join(lines)
            try:
                self._ops.write_file_atomic(self._path, data)
                new_fd = self._ops.open(self._path, os.O_WRONLY | os.O_APPEND)
            except OSError as exc:
                raise StorageIOError(
                    f"offset compaction failed: {exc}", errno=exc.errno
                ) from exc
            old, self._fd = self._fd, new_fd
            self._ops.close(old)
            self._size = len(data)
            self._lines = len(lines)
            self._durable_seq = self._written_seq

    def close(self, *, clean: bool = True) -> None:
        """Sync (and compact on a clean close) and release the file."""
        if self._closed:
            return
        if clean:
            self.compact()
        else:
            self.sync()
        with self._lock:
            self._closed = True
            self._ops.close(self._fd)
