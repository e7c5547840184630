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
    {"op":"txn_offset","producer_id":7,"producer_epoch":0,"group":"g","topic":"t",
     "partition":0,"offset":42,...}              (the fields of a commit line)
    {"op":"txn_end","producer_id":7,"producer_epoch":0,"commit":true,"groups":["g"]}
    {"op":"txn_producer","producer_id":7,"producer_epoch":0}
    {"op":"group","group":"g","generation":3,"members":[...],...}
                                                 (storage/group_meta.py)

Transactional offsets (TxnOffsetCommit) are ``txn_offset`` lines: pending, invisible
to :meth:`OffsetStore.fetch`, until a ``txn_end`` line of their producer completes
them (COMMIT: they become committed unless a line written after them committed the
partition meanwhile; ABORT: they go), with the rules of :mod:`storage.txn_offsets`
(a line's order is its position). Recovery replays them, so the pending set and the
producers' epochs survive a restart; compaction keeps the pending lines and one
``txn_producer`` line per producer's last epoch (for fencing), and writes every line
in the order of the lines it replaces.

A ``group`` line stores a group's membership as of its last completed generation
(:class:`~storage.group_meta.StoredGroup`, the last one per group wins; compaction
keeps only that one); ``delete_group`` forgets it with the offsets.

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
from pathlib import Path
from typing import Final

from storage.errors import ProducerFenced, StorageIOError
from storage.fileops import DEFAULT_FILEOPS, FileOps
from storage.group_meta import StoredGroup
from storage.offset_lines import (
    INT32_MAX,
    INT64_MAX,
    INT64_MIN,
    BadLine,
    CommittedOffset,
    Skipped,
    SkippedEntry,
    as_int,
    as_str,
    encode_line,
    string_problem,
    wire_problem,
)
from storage.txn_offsets import TxnOffsets, later

__all__ = [
    "INT32_MAX",
    "INT64_MAX",
    "INT64_MIN",
    "CommittedOffset",
    "OffsetStore",
    "SkippedEntry",
    "string_problem",
    "wire_problem",
]

_DIR: Final = "consumer_offsets"
_FILE: Final = "offsets.jsonl"
_COMPACT_MIN_LINES: Final = 10_000
_MAX_SKIPPED_KEPT: Final = 100


class OffsetStore:
    """Committed offsets per group, durable once :meth:`sync` covered them."""

    def __init__(self, data_dir: Path, *, fileops: FileOps = DEFAULT_FILEOPS) -> None:
        self._ops = fileops
        self._dir = Path(data_dir) / _DIR
        self._path = str(self._dir / _FILE)
        self._lock = threading.Lock()
        self._groups: dict[str, dict[tuple[str, int], CommittedOffset]] = {}
        # position (line order) of each committed offset's line, and the pending
        # transactional offsets (storage/txn_offsets.py)
        self._at: dict[str, dict[tuple[str, int], int]] = {}
        self._txn: TxnOffsets[CommittedOffset] = TxnOffsets()
        self._meta: dict[str, StoredGroup] = {}  # group → its last ``group`` line
        self._lines = 0
        self._pos = 0  # position of the last line written (never goes back)
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
            except (ValueError, RecursionError, BadLine):
                break
            self._lines += 1
            self._pos = self._lines
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

    def _entry(self, obj: dict[str, object], line: int) -> tuple[str, CommittedOffset]:
        group = as_str(obj.get("group"))
        expire = obj.get("expire_ms")
        entry = CommittedOffset(
            topic=as_str(obj.get("topic")),
            partition=as_int(obj.get("partition")),
            offset=as_int(obj.get("offset")),
            leader_epoch=as_int(obj.get("leader_epoch", -1)),
            metadata=as_str(obj.get("metadata", "")),
            commit_ms=as_int(obj.get("commit_ms", 0)),
            expire_ms=None if expire is None else as_int(expire),
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
            raise Skipped
        return group, entry

    def _apply(self, obj: object, line: int) -> None:
        if not isinstance(obj, dict):
            raise BadLine
        op = obj.get("op")
        if op in ("commit", "txn_offset"):
            try:
                group, entry = self._entry(obj, line)
            except Skipped:
                return
            if op == "commit":
                self._put(group, entry, line)
            else:
                self._txn.add(
                    as_int(obj.get("producer_id")),
                    as_int(obj.get("producer_epoch")),
                    group,
                    (entry.topic, entry.partition),
                    line,
                    entry,
                )
        elif op == "txn_end":
            groups = obj.get("groups")
            if not isinstance(groups, list):
                raise BadLine
            self._complete(
                as_int(obj.get("producer_id")),
                as_int(obj.get("producer_epoch")),
                [as_str(g) for g in groups],
                obj.get("commit") is True,
            )
        elif op == "txn_producer":
            self._txn.note_epoch(
                as_int(obj.get("producer_id")), as_int(obj.get("producer_epoch"))
            )
        elif op == "delete":
            group = as_str(obj.get("group"))
            key = (as_str(obj.get("topic")), as_int(obj.get("partition")))
            self._forget(group, [key])
        elif op == "group":
            stored = StoredGroup.from_json(obj)
            self._meta[stored.group] = stored
        elif op == "delete_group":
            group = as_str(obj.get("group"))
            self._meta.pop(group, None)
            self._groups.pop(group, None)
            self._at.pop(group, None)
            self._txn.drop(group)
        elif op == "delete_topic":
            self._drop_topic(as_str(obj.get("topic")))
        else:
            raise BadLine

    def _put(self, group: str, entry: CommittedOffset, at: int) -> None:
        key = (entry.topic, entry.partition)
        self._groups.setdefault(group, {})[key] = entry
        self._at.setdefault(group, {})[key] = at

    def _forget(self, group: str, keys: Iterable[tuple[str, int]]) -> None:
        """Drop committed and pending offsets of ``keys`` (OffsetDelete, expiry)."""
        keys = list(keys)
        table = self._groups.get(group)
        at = self._at.get(group, {})
        for key in keys:
            at.pop(key, None)
            if table is not None:
                table.pop(key, None)
        if table is not None and not table:
            del self._groups[group]
            self._at.pop(group, None)
        self._txn.drop(group, keys)

    def _complete(
        self, producer_id: int, producer_epoch: int, groups: list[str], commit: bool
    ) -> int | None:
        """Apply a transaction's end; how many offsets became committed (None:
        stale)."""
        done = self._txn.complete(producer_id, producer_epoch, groups, commit)
        if done is None:
            return None
        applied = 0
        for group, key, pending in done:
            if later(pending.at, self._at.get(group, {}).get(key)):
                self._put(group, pending.value, pending.at)
                applied += 1
        return applied

    def _drop_topic(self, topic: str) -> int:
        dropped = 0
        for group in list(self._groups):
            keys = [k for k in self._groups[group] if k[0] == topic]
            self._forget(group, keys)
            dropped += len(keys)
        self._txn.drop_topic(topic)
        return dropped

    # -- writes (event-loop thread) --------------------------------------------------

    def _write(self, lines: Iterable[Mapping[str, object]]) -> int:
        payload = b"".join(encode_line(obj) for obj in lines)
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
        count = payload.count(b"\n")
        self._lines += count
        self._pos += count
        self._written_seq += 1
        return self._written_seq

    def commit(self, group: str, offsets: Iterable[CommittedOffset]) -> int:
        """Record offsets for ``group`` (visible at once); durable after :meth:`sync`.

        Returns the write sequence number to compare with :attr:`durable_seq`.
        """
        entries = list(offsets)
        with self._lock:
            first = self._pos + 1
            seq = self._write(e.to_json(group) for e in entries)
            for i, e in enumerate(entries):
                self._put(group, e, first + i)
            return seq

    def txn_commit(
        self,
        group: str,
        producer_id: int,
        producer_epoch: int,
        offsets: Iterable[CommittedOffset],
    ) -> int:
        """Record a producer's transactional offsets for ``group``: pending (not
        fetched) until :meth:`complete_txn`; durable after :meth:`sync`.

        Raises:
            ProducerFenced: ``producer_epoch`` is older than the producer's.
        """
        entries = list(offsets)
        with self._lock:
            known = self._txn.known_epoch(producer_id)
            if producer_epoch < known:
                raise ProducerFenced(
                    f"offsets of producer {producer_id} with epoch {producer_epoch}, "
                    f"current epoch {known}"
                )
            first = self._pos + 1
            seq = self._write(
                {
                    **e.to_json(group),
                    "op": "txn_offset",
                    "producer_id": producer_id,
                    "producer_epoch": producer_epoch,
                }
                for e in entries
            )
            for i, e in enumerate(entries):
                self._txn.add(
                    producer_id,
                    producer_epoch,
                    group,
                    (e.topic, e.partition),
                    first + i,
                    e,
                )
            return seq

    def complete_txn(
        self,
        producer_id: int,
        producer_epoch: int,
        groups: Iterable[str],
        commit: bool,
    ) -> tuple[int, int | None]:
        """A producer's transaction ended for ``groups``: COMMIT makes its pending
        offsets committed (unless committed later), ABORT drops them.

        Returns (write sequence number, offsets made committed); None instead of
        a count when the completion is stale (older epoch): nothing is written.
        """
        names = sorted(set(groups))
        with self._lock:
            pending = self._txn.producer_groups(producer_id) & set(names)
            if producer_epoch < self._txn.pending_epoch(producer_id):
                return self._written_seq, None
            if not pending and producer_epoch <= self._txn.known_epoch(producer_id):
                return self._written_seq, 0
            seq = self._write(
                [
                    {
                        "op": "txn_end",
                        "producer_id": producer_id,
                        "producer_epoch": producer_epoch,
                        "commit": commit,
                        "groups": sorted(pending),
                    }
                ]
            )
            return seq, self._complete(
                producer_id, producer_epoch, sorted(pending), commit
            )

    def delete_offsets(self, group: str, partitions: Iterable[tuple[str, int]]) -> int:
        """Forget some of a group's offsets (OffsetDelete)."""
        with self._lock:
            table = self._groups.get(group, {})
            keys = [k for k in partitions if k in table]
            seq = self._write(
                {"op": "delete", "group": group, "topic": t, "partition": p}
                for t, p in keys
            )
            self._forget(group, keys)
            return seq

    def store_group(self, stored: StoredGroup) -> int:
        """Record a group's membership (a completed generation, or it emptied);
        durable after :meth:`sync`."""
        with self._lock:
            seq = self._write([stored.to_json()])
            self._meta[stored.group] = stored
            return seq

    def stored_groups(self) -> list[StoredGroup]:
        """Every group's last stored membership."""
        with self._lock:
            return list(self._meta.values())

    def delete_group(self, group: str) -> int:
        """Forget every offset and the stored membership of ``group``
        (DeleteGroups, an empty group without offsets forgotten)."""
        with self._lock:
            if (
                group not in self._groups
                and group not in self._txn.groups()
                and group not in self._meta
            ):
                return self._written_seq
            seq = self._write([{"op": "delete_group", "group": group}])
            self._meta.pop(group, None)
            self._groups.pop(group, None)
            self._at.pop(group, None)
            self._txn.drop(group)
            return seq

    def delete_topic(self, topic: str) -> int:
        """Drop every group's offsets of a deleted topic; returns how many went."""
        with self._lock:
            if not any(
                k[0] == topic for o in self._groups.values() for k in o
            ) and not any(k[0] == topic for _, _, _, k, _ in self._txn.items()):
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
                self._at.get(g, {}).pop((t, p), None)
                if not table:
                    del self._groups[g]
                    self._at.pop(g, None)
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

    def pending(self, group: str) -> set[tuple[str, int]]:
        """The group's partitions with a pending transactional offset."""
        with self._lock:
            return self._txn.pending_keys(group)

    def txn_groups(self) -> set[str]:
        """Groups with pending transactional offsets."""
        with self._lock:
            return self._txn.groups()

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
        live += len(self._txn) + len(self._txn.epochs()) + len(self._meta)
        return self._lines > max(_COMPACT_MIN_LINES, 2 * live)

    def compact(self) -> None:
        """Rewrite the log with only live entries (atomic rename); all becomes durable."""
        with self._lock:
            if self._closed:
                return
            lines = self._live_lines()
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

    def _live_lines(self) -> list[bytes]:
        """The compacted log: the producers' epochs, then every committed and
        pending offset in the order of the lines that wrote them (which decides
        between them when a transaction commits), then each group's membership."""
        head = [
            encode_line({"op": "txn_producer", "producer_id": pid, "producer_epoch": e})
            for pid, e in sorted(self._txn.epochs().items())
        ]
        tail = [encode_line(m.to_json()) for m in self._meta.values()]
        live: list[tuple[int, Mapping[str, object]]] = [
            (self._at.get(group, {}).get(key, 0), e.to_json(group))
            for group, table in self._groups.items()
            for key, e in table.items()
        ]
        live.extend(
            (
                pending.at,
                {
                    **pending.value.to_json(group),
                    "op": "txn_offset",
                    "producer_id": pid,
                    "producer_epoch": epoch,
                },
            )
            for pid, epoch, group, _key, pending in self._txn.items()
        )
        live.sort(key=lambda item: item[0])
        return head + [encode_line(obj) for _, obj in live] + tail

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
