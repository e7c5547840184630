"""Offsite snapshot storage, shared pieces: names, errors, values, local snapshot
discovery and checksums. :mod:`broker.snapshots.offsite.transfer` (push, pull) is the public entry point
and re-exports what callers need from here."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import crc32c

from storage import strict_json

META_NAME: Final = "meta.json"
MANIFEST_NAME: Final = "ailurus-manifest.json"
MANIFEST_VERSION: Final = 1
MAX_META_BYTES: Final = 1024 * 1024  # as storage.snapshot_meta: bigger is hostile
CHUNK: Final = 1 << 20
_SAFE_NAME: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.=+-]{0,254}")


class OffsiteError(Exception):
    """A push or pull could not be done; the message says which snapshot and why."""


class ChecksumMismatch(OffsiteError):
    """A file's size or checksum differs from what the snapshot records."""


class SnapshotConflict(OffsiteError):
    """The destination holds a different snapshot under the same ID."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FileDigest:
    """Size and checksums of one snapshot file."""

    name: str
    size: int
    crc32c: int
    md5: str

    def as_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "size": self.size,
            "crc32c": self.crc32c,
            "md5": self.md5,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotRef:
    """One snapshot directory (local or remote), by its path under the snapshot root."""

    topic: str  # the topic directory: topic ID (or topic name)
    snapshot_id: str
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.topic}/{self.snapshot_id}"

    @property
    def partition(self) -> int:
        return int(self.meta.get("partition", 0))

    @property
    def last_offset(self) -> int | None:
        value = self.meta.get("last_offset")
        return None if value is None else int(value)

    @property
    def ancestor_id(self) -> str | None:
        """The ancestor snapshot ID, or None for a full snapshot (all-zero ID)."""
        value = self.meta.get("ancestor_snapshot_id")
        if value is None or not str(value).strip("0"):
            return None
        return str(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferResult:
    """What push or pull did with one snapshot."""

    topic: str
    snapshot_id: str
    status: str  # pushed | pulled | already-present | rejected (pull, keep_going)
    files_transferred: int
    files_skipped: int
    bytes_transferred: int
    reason: str = ""

    def as_json(self) -> dict[str, object]:
        return {
            "topic": self.topic,
            "snapshot_id": self.snapshot_id,
            "status": self.status,
            "files_transferred": self.files_transferred,
            "files_skipped": self.files_skipped,
            "bytes_transferred": self.bytes_transferred,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class FileEvent:
    """Progress: one file of one snapshot was transferred or skipped."""

    snapshot: str  # "<topic>/<snapshot_id>"
    name: str
    size: int
    skipped: bool


ProgressFn = Callable[[FileEvent], None]


# -- local snapshots --------------------------------------------------------------------


def check_name(name: str, what: str) -> str:
    if not _SAFE_NAME.fullmatch(name) or name in (".", ".."):
        raise OffsiteError(f"unsafe {what} name {name!r}")
    return name


def read_meta(data: bytes, where: str) -> dict[str, Any]:
    """Parse meta.json far enough to pick and order snapshots (ingest checks the rest)."""
    if len(data) > MAX_META_BYTES:
        raise OffsiteError(f"{where}: meta.json is larger than {MAX_META_BYTES} bytes")
    try:
        meta = strict_json.loads(data)
    except (strict_json.JsonSyntax, strict_json.JsonRejected) as e:
        raise OffsiteError(f"{where}: meta.json is not valid JSON: {e}") from e
    if not isinstance(meta, dict):
        raise OffsiteError(f"{where}: meta.json must hold an object")
    for key in ("partition", "last_offset", "base_offset"):
        value = meta.get(key)
        if value is not None and (type(value) is not int or value < 0):
            raise OffsiteError(
                f"{where}: meta.json {key} must be a non-negative integer"
            )
    ancestor = meta.get("ancestor_snapshot_id")
    if ancestor is not None and not isinstance(ancestor, str | int):
        raise OffsiteError(f"{where}: meta.json ancestor_snapshot_id must be a string")
    return meta


def find_local_snapshots(source: Path) -> list[tuple[SnapshotRef, Path]]:
    """Snapshot directories under ``source`` with their paths, oldest first.

    ``source`` is a snapshot root (``<data_dir>/snapshots``, holding
    ``<topic>/<snapshot_id>/meta.json``), one topic directory (holding
    ``<snapshot_id>/meta.json``; snapshot IDs are all digits), or one snapshot
    directory. Dot-directories (snapshots still being written) and flat copies
    (``<topic>/meta.json``) are skipped.
    """
    if (source / META_NAME).is_file():
        dirs = [source]
    elif source.is_dir():
        nested = [m.parent for m in source.glob(f"*/*/{META_NAME}")]
        direct = [
            m.parent for m in source.glob(f"*/{META_NAME}") if m.parent.name.isdigit()
        ]
        dirs = direct if direct and not nested else nested
    else:
        raise OffsiteError(f"{source} is not a directory")
    found = []
    for d in sorted(dirs):
        if d.name.startswith(".") or d.parent.name.startswith("."):
            continue
        if (d / META_NAME).stat().st_size > MAX_META_BYTES:
            raise OffsiteError(f"{d}: meta.json is larger than {MAX_META_BYTES} bytes")
        meta = read_meta((d / META_NAME).read_bytes(), str(d))
        found.append(
            (SnapshotRef(topic=d.parent.name, snapshot_id=d.name, meta=meta), d)
        )
    return sorted(found, key=lambda item: order_key(item[0]))


def order_key(ref: SnapshotRef) -> tuple[int, str, str]:
    sid = int(ref.snapshot_id) if ref.snapshot_id.isdigit() else 0
    return (sid, ref.topic, ref.snapshot_id)


def digest_file(path: Path, name: str | None = None) -> FileDigest:
    """Size, CRC32C and MD5 of a local file, in one pass."""
    crc = 0
    md5 = hashlib.md5(usedforsecurity=False)
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            crc = crc32c.crc32c(chunk, crc)
            md5.update(chunk)
            size += len(chunk)
    return FileDigest(
        name=name or path.name, size=size, crc32c=crc, md5=md5.hexdigest()
    )


def expected_from_meta(meta: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """meta.json's per-file records (segments and ``.txnindex`` files), by name."""
    out: dict[str, dict[str, Any]] = {}
    for key in ("segments", "txn_indexes"):
        listed = meta.get(key)
        if isinstance(listed, list):
            for seg in listed:
                if isinstance(seg, dict) and isinstance(seg.get("file"), str):
                    out[seg["file"]] = seg
    return out


def _parse_crc(value: object) -> int | None:
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return int(value, 16)
    return None


def check_against_meta(
    where: str, digest: FileDigest, seg: Mapping[str, Any], path: Path | None
) -> None:
    size = seg.get("size")
    if isinstance(size, int) and size != digest.size:
        raise ChecksumMismatch(
            f"{where}/{digest.name}: size {digest.size}, meta.json says {size}"
        )
    crc = _parse_crc(seg.get("crc32c"))
    if crc is not None and crc != digest.crc32c:
        raise ChecksumMismatch(
            f"{where}/{digest.name}: crc32c {digest.crc32c:08x}, meta.json says {crc:08x}"
        )
    sha = seg.get("sha256")
    if isinstance(sha, str) and path is not None:
        h = hashlib.sha256()
        with path.open("rb") as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
        if h.hexdigest() != sha.lower():
            raise ChecksumMismatch(
                f"{where}/{digest.name}: sha256 differs from meta.json"
            )


def local_files(snap_dir: Path) -> list[Path]:
    files = []
    for p in sorted(snap_dir.iterdir()):
        if p.name in (META_NAME, MANIFEST_NAME) or p.name.startswith("."):
            continue
        if p.is_symlink() or not p.is_file():
            raise OffsiteError(f"{p}: only regular files can be pushed")
        files.append(p)
    return files


def check_manifest(where: str, digest: FileDigest, entry: Mapping[str, Any]) -> None:
    if int(entry["size"]) != digest.size or int(entry["crc32c"]) != digest.crc32c:
        raise ChecksumMismatch(
            f"{where}/{digest.name}: got size {digest.size} crc32c {digest.crc32c:08x}, "
            f"manifest says size {entry['size']} crc32c {int(entry['crc32c']):08x}"
        )


def check_bytes(where: str, name: str, data: bytes, entry: Mapping[str, Any]) -> None:
    crc = crc32c.crc32c(data)
    if int(entry["size"]) != len(data) or int(entry["crc32c"]) != crc:
        raise ChecksumMismatch(f"{where}/{name}: differs from the manifest")


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # some file systems cannot fsync directories
        fsync_file(path)
