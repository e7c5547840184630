"""LogManager: every topic and partition log under one data dir.

Layout::

    <data_dir>/.lock                      lock.py (flock, holder's pid)
    <data_dir>/.clean_shutdown            present only between a clean close and the
                                          next open: tails are trusted if it exists
    <data_dir>/kafka/<topic>/topic.json   the topic manifest (below)
    <data_dir>/kafka/<topic>/<partition>/ partition_log.py
    <data_dir>/kafka/<topic>~<hex>.deleting   a topic being deleted (removed on open)

``topic.json`` (written atomically: ``topic.json.tmp``, fsync, rename, fsync dir)::

    {"version": 1, "name": "orders", "topic_id": "6ba7b810-9dad-11d1-80b4-00c04fd430c8",
     "partition_count": 3, "configs": {"retention.ms": "3600000"}}

A topic directory without ``topic.json`` is a create that did not finish and is
removed on open; partition directories beyond ``partition_count`` are an
add_partitions that did not finish and are removed too. A create or add_partitions
that fails while running closes what it opened and removes those directories at
once, so no half-created topic holds descriptors or files.

Limits: ``max_partitions`` caps the partitions of all topics together (creates and
add_partitions beyond it raise :class:`PartitionLimit`; topics already on disk are
always opened), and ``max_open_segments`` bounds the segment descriptors held open
at once (:class:`~storage.fd_cache.FdCache`). ``~`` cannot appear in a
Kafka topic name, so scratch names never collide with topics.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Final

from storage.config import TopicConfig
from storage.errors import (
    InvalidConfig,
    InvalidTopicName,
    LogClosed,
    PartitionLimit,
    StorageError,
    StorageIOError,
    TopicExists,
    UnknownPartition,
    UnknownTopic,
)
from storage.fd_cache import FdCache
from storage.fileops import DEFAULT_FILEOPS, FileOps
from storage.lock import DataDirLock
from storage.partition_log import PartitionLog, PartitionRecovery

CLEAN_SHUTDOWN_FILE: Final = ".clean_shutdown"
KAFKA_DIR: Final = "kafka"
MANIFEST: Final = "topic.json"
_TOPIC_NAME: Final = re.compile(r"[a-zA-Z0-9._-]{1,249}")


@dataclass(frozen=True, slots=True, kw_only=True)
class TopicMeta:
    """A topic's identity and configuration."""

    name: str
    topic_id: bytes  # 16 bytes (Metadata's UUID); ``topic_uuid`` for the uuid form
    partition_count: int
    config: TopicConfig = field(compare=False)

    @property
    def topic_uuid(self) -> uuid.UUID:
        """The topic id as a ``uuid.UUID``."""
        return uuid.UUID(bytes=self.topic_id)


def validate_topic_name(name: str) -> None:
    """Raise :class:`InvalidTopicName` for names Kafka refuses (``Topic.validate``)."""
    if name in (".", "..") or not _TOPIC_NAME.fullmatch(name):
        raise InvalidTopicName(f"invalid topic name {name!r}")


class LogManager:
    """Opens (and recovers) every partition of a data dir; creates and deletes topics.

    Construction does blocking I/O (recovery): the broker runs it in a worker thread.
    ``recovery`` lists what each partition's recovery found, for the broker to log.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        default_configs: Mapping[str, str] | None = None,
        *,
        fileops: FileOps = DEFAULT_FILEOPS,
        dir_lock: DataDirLock | None = None,
        max_partitions: int | None = None,
        max_open_segments: int | None = None,
    ) -> None:
        """Open ``data_dir``, taking its lock unless ``dir_lock`` already holds it.

        A given ``dir_lock`` (the caller locked the dir early, to fail fast) belongs
        to the manager from then on: it is released on close or a failed open.
        """
        data_dir = os.fspath(data_dir)
        self.data_dir = data_dir
        self.fileops = fileops
        self.max_partitions = max_partitions
        self.handles = (
            FdCache() if max_open_segments is None else FdCache(max_open_segments)
        )
        self.defaults = dict(default_configs or {})
        self._root = os.path.join(data_dir, KAFKA_DIR)
        self._lock = threading.Lock()
        self._topics: dict[str, TopicMeta] = {}
        self._by_id: dict[bytes, str] = {}
        self._logs: dict[tuple[str, int], PartitionLog] = {}
        # creates and grows in progress: topic name -> partitions reserved
        self._pending: dict[str, int] = {}
        self._pending_ids: set[bytes] = set()
        self.recovery: list[PartitionRecovery] = []
        self.removed: list[str] = []  # incomplete creates / deletes cleaned up on open
        self._dir_lock = dir_lock if dir_lock is not None else DataDirLock(data_dir)
        try:
            TopicConfig.from_overrides(None, self.defaults)  # validate early
            self._open()
        except BaseException:
            self._close_all(clean=False)
            self._dir_lock.release()
            raise
        self._closed = False

    def _open(self) -> None:
        fileops = self.fileops
        marker = os.path.join(self.data_dir, CLEAN_SHUTDOWN_FILE)
        self.clean_start = os.path.exists(marker)
        # no topics directory yet: a data dir used for the first time
        self.new = not os.path.isdir(self._root)
        try:
            fileops.makedirs(self._root)
            if self.clean_start:
                fileops.unlink(marker)
                fileops.fsync_dir(self.data_dir)
            names = sorted(fileops.listdir(self._root))
        except OSError as exc:
            raise StorageIOError(
                f"opening {self.data_dir}: {exc}", errno=exc.errno
            ) from exc
        for name in names:
            path = os.path.join(self._root, name)
            if "~" in name or not os.path.isdir(path):
                fileops.rmtree(path) if os.path.isdir(path) else fileops.unlink(path)
                self.removed.append(name)
                continue
            meta = self._read_manifest(path)
            if meta is None:
                fileops.rmtree(path)
                self.removed.append(name)
                continue
            if meta.name != name or meta.topic_id in self._by_id:
                raise StorageIOError(
                    f"{path}/{MANIFEST} names topic {meta.name!r} "
                    f"(id {meta.topic_uuid}): directory renamed or copied by hand?"
                )
            self._topics[meta.name] = meta
            self._by_id[meta.topic_id] = meta.name
            for entry in fileops.listdir(path):
                if entry.isdigit() and int(entry) >= meta.partition_count:
                    fileops.rmtree(os.path.join(path, entry))
                    self.removed.append(f"{name}/{entry}")
            for p in range(meta.partition_count):
                log = PartitionLog.open(
                    os.path.join(path, str(p)),
                    topic=meta.name,
                    partition=p,
                    config=meta.config,
                    fileops=fileops,
                    clean=self.clean_start,
                    handles=self.handles,
                )
                self._logs[meta.name, p] = log
                if log.recovery is not None:
                    self.recovery.append(log.recovery)

    def _read_manifest(self, topic_dir: str) -> TopicMeta | None:
        tmp = os.path.join(topic_dir, MANIFEST + ".tmp")
        if os.path.exists(tmp):
            self.fileops.unlink(tmp)
            self.removed.append(tmp)
        try:
            with open(os.path.join(topic_dir, MANIFEST), "rb") as f:
                data = json.loads(f.read())
            return TopicMeta(
                name=str(data["name"]),
                topic_id=uuid.UUID(str(data["topic_id"])).bytes,
                partition_count=int(data["partition_count"]),
                config=TopicConfig.from_overrides(
                    {str(k): str(v) for k, v in dict(data.get("configs", {})).items()},
                    self.defaults,
                ),
            )
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, InvalidConfig) as exc:
            raise StorageIOError(f"unreadable manifest in {topic_dir}: {exc}") from exc

    def _write_manifest(self, meta: TopicMeta) -> None:
        body = {
            "version": 1,
            "name": meta.name,
            "topic_id": str(meta.topic_uuid),
            "partition_count": meta.partition_count,
            "configs": dict(meta.config.overrides),
        }
        path = os.path.join(self._root, meta.name, MANIFEST)
        self.fileops.write_file_atomic(path, json.dumps(body, indent=1).encode())

    # -- queries -----------------------------------------------------------------
    def topics(self) -> list[TopicMeta]:
        """Every topic, by name."""
        with self._lock:
            return [self._topics[n] for n in sorted(self._topics)]

    def topic(self, name: str) -> TopicMeta:
        """A topic by name (raises UnknownTopic)."""
        with self._lock:
            try:
                return self._topics[name]
            except KeyError:
                raise UnknownTopic(name) from None

    def topic_by_id(self, topic_id: bytes | uuid.UUID) -> TopicMeta:
        """A topic by id (raises UnknownTopic)."""
        key = topic_id.bytes if isinstance(topic_id, uuid.UUID) else bytes(topic_id)
        with self._lock:
            name = self._by_id.get(key)
            if name is None:
                raise UnknownTopic(key.hex())
            return self._topics[name]

    def partition(self, name: str, index: int) -> PartitionLog:
        """A partition's log (raises UnknownTopic / UnknownPartition)."""
        with self._lock:
            log = self._logs.get((name, index))
            if log is not None:
                return log
            if name not in self._topics:
                raise UnknownTopic(name)
            raise UnknownPartition(f"{name}-{index}")

    def partitions(self, name: str) -> list[PartitionLog]:
        """All partitions of a topic, by index."""
        meta = self.topic(name)
        with self._lock:
            return [self._logs[name, p] for p in range(meta.partition_count)]

    def logs(self) -> list[PartitionLog]:
        """Every open partition log."""
        with self._lock:
            return list(self._logs.values())

    # -- topic operations --------------------------------------------------------
    def partition_total(self) -> int:
        """Partitions of all topics together (what ``max_partitions`` caps)."""
        with self._lock:
            return len(self._logs)

    def _check_room(self, adding: int, what: str) -> None:
        """Raise PartitionLimit unless ``adding`` more partitions fit (lock held);
        partitions of creates still running count as taken."""
        cap = self.max_partitions
        held = len(self._logs) + sum(self._pending.values())
        if cap is not None and held + adding > cap:
            raise PartitionLimit(
                f"{what} needs {adding} partitions; the broker holds "
                f"{held} of at most {cap}"
            )

    def create_topic(
        self,
        name: str,
        partitions: int,
        configs: Mapping[str, str] | None = None,
        topic_id: bytes | uuid.UUID | None = None,
    ) -> TopicMeta:
        """Create a topic and its empty partitions; the manifest is written last.

        The manager's lock is held only to check and reserve the name, id and
        partition count and to publish the topic, not while its files are made, so
        a large create does not stall readers and writers of other topics. Until it
        is published the topic is unknown to queries; a second create of the same
        name or id meanwhile raises TopicExists.

        Raises PartitionLimit before touching the disk when the partitions would
        exceed ``max_partitions``. If creating fails part-way (e.g. EMFILE, ENOSPC)
        the partitions opened so far are closed and the topic directory is removed
        before StorageIOError is raised: the topic does not exist, and nothing of it
        holds a descriptor or stays on disk (a crash in between leaves a directory
        without ``topic.json``, which the next open removes).
        """
        validate_topic_name(name)
        if partitions < 1:
            raise InvalidConfig(f"partition count {partitions} must be at least 1")
        config = TopicConfig.from_overrides(configs, self.defaults)
        if topic_id is None:
            tid = uuid.uuid4().bytes
        elif isinstance(topic_id, uuid.UUID):
            tid = topic_id.bytes
        else:
            tid = bytes(topic_id)
        if len(tid) != 16 or not any(tid):
            raise InvalidConfig(f"topic id {tid.hex()} is not 16 non-zero bytes")
        with self._lock:
            self._check_open()
            if name in self._topics or name in self._pending:
                raise TopicExists(name)
            if tid in self._by_id or tid in self._pending_ids:
                raise TopicExists(f"topic id {tid.hex()} is taken")
            self._check_room(partitions, f"topic {name}")
            self._pending[name] = partitions
            self._pending_ids.add(tid)
        meta = TopicMeta(
            name=name, topic_id=tid, partition_count=partitions, config=config
        )
        topic_dir = os.path.join(self._root, name)
        logs: list[PartitionLog] = []
        try:
            try:
                if os.path.exists(topic_dir):
                    self.fileops.rmtree(topic_dir)  # leftover of a failed create
                self.fileops.makedirs(topic_dir)
                logs.extend(
                    self._new_partition(topic_dir, name, p, config)
                    for p in range(partitions)
                )
                self.fileops.fsync_dir(topic_dir)
                self._write_manifest(meta)
                self.fileops.fsync_dir(self._root)
            except (OSError, StorageIOError) as exc:
                self._discard(logs, [topic_dir])
                raise StorageIOError(
                    f"creating topic {name}: {_reason(exc)}", errno=_errno(exc)
                ) from exc
            except BaseException:
                self._discard(logs, [topic_dir])
                raise
            with self._lock:
                closed = self._closed
                if not closed:
                    self._topics[name] = meta
                    self._by_id[tid] = name
                    for p, log in enumerate(logs):
                        self._logs[name, p] = log
            if closed:  # closed meanwhile: the next open finds the topic on disk
                for log in logs:
                    with contextlib.suppress(StorageError):
                        log.close(clean=False)
                raise LogClosed(f"log manager for {self.data_dir} is closed")
            return meta
        finally:
            with self._lock:
                del self._pending[name]
                self._pending_ids.discard(tid)

    def add_partitions(self, name: str, total: int) -> TopicMeta:
        """Grow a topic to ``total`` partitions (CreatePartitions).

        Like :meth:`create_topic`: the lock is not held while the new partitions'
        files are made, PartitionLimit is raised before any disk work, and a
        failure part-way closes and removes the new partitions (the topic keeps
        its old count). A second grow of the same topic meanwhile raises
        InvalidConfig; a topic deleted meanwhile raises UnknownTopic.
        """
        with self._lock:
            self._check_open()
            meta = self._topics.get(name)
            if meta is None:
                raise UnknownTopic(name)
            if name in self._pending:
                raise InvalidConfig(f"partitions are being added to {name} already")
            if total <= meta.partition_count:
                raise InvalidConfig(
                    f"{name} has {meta.partition_count} partitions; cannot go to {total}"
                )
            self._check_room(total - meta.partition_count, f"growing {name}")
            self._pending[name] = total - meta.partition_count
        topic_dir = os.path.join(self._root, name)
        new_dirs = [
            os.path.join(topic_dir, str(p)) for p in range(meta.partition_count, total)
        ]
        logs: dict[int, PartitionLog] = {}
        try:
            try:
                for p in range(meta.partition_count, total):
                    logs[p] = self._new_partition(topic_dir, name, p, meta.config)
                self.fileops.fsync_dir(topic_dir)
            except (OSError, StorageIOError) as exc:
                self._discard(list(logs.values()), new_dirs)
                raise StorageIOError(
                    f"adding partitions to {name}: {_reason(exc)}", errno=_errno(exc)
                ) from exc
            except BaseException:
                self._discard(list(logs.values()), new_dirs)
                raise
            with self._lock:
                current = self._topics.get(name)
                try:
                    self._check_open()
                    if current is None or current.topic_id != meta.topic_id:
                        raise UnknownTopic(name)
                    new = replace(current, partition_count=total)
                    self._write_manifest(new)  # small; under the lock like alter
                except (OSError, StorageError) as exc:
                    self._discard(list(logs.values()), new_dirs)
                    if isinstance(exc, OSError):
                        raise StorageIOError(
                            f"adding partitions to {name}: {_reason(exc)}",
                            errno=exc.errno,
                        ) from exc
                    raise
                for p, log in logs.items():
                    self._logs[name, p] = log
                self._topics[name] = new
                return new
        finally:
            with self._lock:
                del self._pending[name]

    def _new_partition(
        self, topic_dir: str, name: str, index: int, config: TopicConfig
    ) -> PartitionLog:
        return PartitionLog.open(
            os.path.join(topic_dir, str(index)),
            topic=name,
            partition=index,
            config=config,
            fileops=self.fileops,
            clean=True,
            handles=self.handles,
        )

    def _discard(self, logs: list[PartitionLog], paths: list[str]) -> None:
        """Undo a failed create: close the new logs, remove their directories."""
        for log in logs:
            with contextlib.suppress(StorageError):
                log.close(clean=False)
        for path in paths:
            # What cannot be removed now is removed by the next open: directories
            # the manifest does not account for are leftovers.
            with contextlib.suppress(OSError):
                if os.path.lexists(path):
                    self.fileops.rmtree(path)

    def alter_topic_configs(self, name: str, overrides: Mapping[str, str]) -> TopicMeta:
        """Replace a topic's config overrides (AlterConfigs; IncrementalAlter merges first)."""
        with self._lock:
            self._check_open()
            meta = self._topics.get(name)
            if meta is None:
                raise UnknownTopic(name)
            new = replace(meta, config=meta.config.with_overrides(overrides))
            try:
                self._write_manifest(new)
            except OSError as exc:
                raise StorageIOError(
                    f"altering {name}: {exc}", errno=exc.errno
                ) from exc
            self._topics[name] = new
            for p in range(new.partition_count):
                self._logs[name, p].config = new.config
            return new

    def set_defaults(self, defaults: Mapping[str, str]) -> None:
        """Replace the broker's topic defaults (static ``--set`` ones merged with the
        dynamic broker configs): every topic that does not override a key follows
        the new default at once, its partitions included. Nothing is written (the
        manifests hold the topics' own overrides only).

        Raises:
            InvalidConfig: an unknown key, or a value of the wrong type or range.
        """
        TopicConfig.from_overrides(None, defaults)  # validate before changing
        with self._lock:
            self._check_open()
            self.defaults = dict(defaults)
            for name, meta in list(self._topics.items()):
                config = TopicConfig.from_overrides(
                    meta.config.overrides, self.defaults
                )
                self._topics[name] = replace(meta, config=config)
                for p in range(meta.partition_count):
                    self._logs[name, p].config = config

    def delete_topic(self, name: str) -> TopicMeta:
        """Close the topic's logs and remove its files (rename first, then delete)."""
        with self._lock:
            self._check_open()
            meta = self._topics.pop(name, None)
            if meta is None:
                raise UnknownTopic(name)
            del self._by_id[meta.topic_id]
            logs = [self._logs.pop((name, p)) for p in range(meta.partition_count)]
        for log in logs:
            log.close(clean=False)
        topic_dir = os.path.join(self._root, name)
        trash = os.path.join(self._root, f"{name}~{meta.topic_id.hex()}.deleting")
        try:
            self.fileops.replace(topic_dir, trash)
            self.fileops.fsync_dir(self._root)
            self.fileops.rmtree(trash)
        except OSError as exc:
            raise StorageIOError(
                f"deleting topic {name}: {exc}", errno=exc.errno
            ) from exc
        return meta

    # -- housekeeping ------------------------------------------------------------
    def recovery_report(self) -> list[dict[str, object]]:
        """What opening found, one dict per partition that was repaired or
        re-scanned plus one per cleaned-up leftover (key-values for a log line)."""
        out: list[dict[str, object]] = []
        for rec in self.recovery:
            if rec.clean and not rec.truncated and not rec.removed_files:
                continue
            out.append(
                {
                    "topic": rec.topic,
                    "partition": rec.partition,
                    "clean": rec.clean,
                    "log_end_offset": rec.log_end_offset,
                    "truncated_bytes": sum(s.truncated_bytes for s in rec.segments),
                    "reasons": [s.reason for s in rec.segments if s.reason],
                    "removed_segments": rec.removed_segments,
                    "removed_files": rec.removed_files,
                    "indexes_rebuilt": [
                        s.base_offset for s in rec.segments if s.index_rebuilt
                    ],
                }
            )
        out.extend({"removed_leftover": name} for name in self.removed)
        return out

    def apply_retention(self, now_ms: int | None = None) -> list[dict[str, object]]:
        """Apply retention to every partition; one dict per deleted segment."""
        out: list[dict[str, object]] = []
        for log in self.logs():
            try:
                removed = log.apply_retention(now_ms)
            except (LogClosed, StorageIOError):
                continue  # a failed log is reported by its appends and syncs
            out.extend(
                {
                    "topic": log.topic,
                    "partition": log.partition,
                    "base_offset": seg.base_offset,
                    "last_offset": seg.last_offset,
                    "size": seg.size,
                    "log_start_offset": log.log_start_offset,
                }
                for seg in removed
            )
        return out

    # -- durability ------------------------------------------------------------------
    @staticmethod
    def sync_many(
        logs: Iterable[PartitionLog],
    ) -> dict[PartitionLog, int | StorageIOError]:
        """fsync several partitions (one group commit); run it in a worker thread.

        Returns each log's new durable offset, or the error its fsync raised (one
        failing partition does not stop the others).
        """
        out: dict[PartitionLog, int | StorageIOError] = {}
        for log in logs:
            try:
                out[log] = log.sync()
            except StorageIOError as exc:
                out[log] = exc
            except LogClosed:
                continue
        return out

    def close(self, clean: bool = True) -> None:
        """Close every log; a clean close leaves the clean-shutdown marker."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            ok = self._close_all(clean)
            if clean and ok:
                self.fileops.write_file_atomic(
                    os.path.join(self.data_dir, CLEAN_SHUTDOWN_FILE), b"clean\n"
                )
        finally:
            self._dir_lock.release()

    def _close_all(self, clean: bool) -> bool:
        ok = True
        for log in list(self._logs.values()):
            if log.failed is not None:
                ok = False  # its tail must be re-verified on the next open
            try:
                log.close(clean=clean)
            except StorageIOError:
                ok = False
        return ok

    def _check_open(self) -> None:
        if getattr(self, "_closed", False):
            raise LogClosed(f"log manager for {self.data_dir} is closed")


def _reason(exc: OSError | StorageIOError) -> str:
    return str(exc.strerror or exc) if isinstance(exc, OSError) else str(exc)


def _errno(exc: OSError | StorageIOError) -> int | None:
    return exc.errno
