"""The high-watermark checkpoint of a data dir (Kafka's ``replication-offset-checkpoint``).

In cluster mode the high watermark of a partition with followers depends on their
fetches and is kept in the broker's memory; this file carries it across restarts,
so a partition's leader starts from what consumers could already read instead of
from 0 (Kafka's ``OffsetCheckpointFile``, read by ``ReplicaManager`` at start).
Text, as Kafka writes it::

    <data_dir>/replication-offset-checkpoint

    0                   version
    2                   number of entries
    orders 0 1234       topic partition high-watermark
    orders 1 99

Topic names never contain spaces (Kafka's legal characters are ``[a-zA-Z0-9._-]``).
The file is written whole and atomically (``.tmp``, fsync, rename, fsync of the
directory), so a crash leaves the old file or the new one. A file that cannot be
parsed (damaged by hand or by the disk) raises :class:`CorruptCheckpoint`: the
caller starts without it, and learns the high watermarks from followers again.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Final

from storage.errors import StorageError, StorageIOError
from storage.fileops import DEFAULT_FILEOPS, FileOps

__all__ = [
    "FILE_NAME",
    "VERSION",
    "CorruptCheckpoint",
    "HighWatermarkCheckpoint",
    "decode",
    "encode",
]

FILE_NAME: Final = "replication-offset-checkpoint"
VERSION: Final = 0
_MAX_BYTES: Final = 64 * 1024 * 1024  # far above any real cluster's partitions

Offsets = Mapping[tuple[str, int], int]


class CorruptCheckpoint(StorageError):
    """The checkpoint file exists but is not a checkpoint (ignore it)."""


def encode(offsets: Offsets) -> bytes:
    """The file's bytes for ``offsets`` (sorted by topic, then partition)."""
    lines = [str(VERSION), str(len(offsets))]
    for (topic, partition), offset in sorted(offsets.items()):
        if not topic or any(c.isspace() for c in topic):
            raise ValueError(f"topic name {topic!r} cannot be checkpointed")
        lines.append(f"{topic} {partition} {offset}")
    return ("\n".join(lines) + "\n").encode()


def decode(data: bytes) -> dict[tuple[str, int], int]:
    """The offsets a checkpoint file holds.

    Raises:
        CorruptCheckpoint: not UTF-8, another version, a count that does not match
            the entries, a malformed entry, a negative value or a repeated
            partition.
    """
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise CorruptCheckpoint("not UTF-8") from None
    if not text.endswith("\n"):
        raise CorruptCheckpoint("no final newline (torn write)")
    lines = text[:-1].split("\n")
    if len(lines) < 2:
        raise CorruptCheckpoint("no version and count lines")
    if lines[0] != str(VERSION):
        raise CorruptCheckpoint(f"unknown version {lines[0][:20]!r}")
    count = _number(lines[1], "count")
    entries = lines[2:]
    if count != len(entries):
        raise CorruptCheckpoint(f"{len(entries)} entries, count line says {count}")
    out: dict[tuple[str, int], int] = {}
    for n, line in enumerate(entries, start=3):
        fields = line.split(" ")
        if len(fields) != 3 or not fields[0]:
            raise CorruptCheckpoint(f"line {n}: not 'topic partition offset'")
        key = (fields[0], _number(fields[1], f"line {n} partition"))
        if key in out:
            raise CorruptCheckpoint(f"line {n}: {key[0]}-{key[1]} repeated")
        out[key] = _number(fields[2], f"line {n} offset")
    return out


def _number(field: str, what: str) -> int:
    if not field.isascii() or not field.isdigit() or len(field) > 19:
        raise CorruptCheckpoint(f"{what}: {field[:20]!r} is not a non-negative int64")
    return int(field)


class HighWatermarkCheckpoint:
    """Reads and atomically replaces ``<data_dir>/replication-offset-checkpoint``.

    Blocking file I/O: call it from a worker thread.
    """

    def __init__(
        self, data_dir: str | os.PathLike[str], *, fileops: FileOps = DEFAULT_FILEOPS
    ) -> None:
        self.path = os.path.join(os.fspath(data_dir), FILE_NAME)
        self._ops = fileops

    def read(self) -> dict[tuple[str, int], int]:
        """The checkpointed high watermarks ({} when there is no file yet).

        Raises:
            CorruptCheckpoint: the file is damaged.
            StorageIOError: it could not be read.
        """
        try:
            with open(self.path, "rb") as f:
                data = f.read(_MAX_BYTES + 1)
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise StorageIOError(
                f"cannot read {self.path}: {exc}", errno=exc.errno
            ) from exc
        if len(data) > _MAX_BYTES:
            raise CorruptCheckpoint(f"larger than {_MAX_BYTES} bytes")
        return decode(data)

    def write(self, offsets: Offsets) -> None:
        """Replace the file with ``offsets`` (tmp file, fsync, rename, fsync dir).

        Raises:
            StorageIOError: it could not be written (the old file stays).
        """
        try:
            self._ops.write_file_atomic(self.path, encode(offsets))
        except OSError as exc:
            raise StorageIOError(
                f"cannot write {self.path}: {exc}", errno=exc.errno
            ) from exc
