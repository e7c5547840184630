"""Handing a verified snapshot to the partition's leader (cluster mode).

A snapshot dropped into a broker that does not lead its partition is verified there
(as every snapshot is), then streamed to the leader's admin API; the sender records
it as ``handed-over`` and leaves its own copy untouched. The leader re-verifies
everything before the snapshot becomes visible to its watcher, which ingests it as
any dropped-in snapshot.

The upload (``PUT /v1/snapshots/upload``, admin token required)::

    Content-Length: 4 + M + sum of the file sizes
    u32 M (big-endian) | manifest: M bytes of JSON | the files, in manifest order

    manifest = {"topic_dir": "<topic id or name>", "name": "<snapshot dir name>",
                "from_broker": 2, "copy": false,
                "files": [{"name": "meta.json", "size": 812},       always first
                          {"name": "group-offsets.json", "size": 90},   optional
                          {"name": "00000000000000000000.log", "size": 4096}, ...]}

Bounds the receiver enforces before writing a byte past them: the manifest at most
64 KiB; names only ``meta.json``, ``group-offsets.json``, segment or ``.txnindex``
names, each once; ``meta.json`` and ``group-offsets.json`` at most 1 MiB each; the segment files
together exactly the ``size`` that ``meta.json`` declares; the body exactly the
announced length; the disk's free-space floor. The files land in a dot-named
directory (``<topic_dir>/.upload-<random>``, invisible to the watcher), are fsynced
and fully verified (every batch CRC, offsets, file checksums) in a worker process,
then renamed to ``<topic_dir>/<name>`` (``<name>-<random>`` when a different
snapshot already has that name; an identical one is answered as received) and the
watcher is woken.

The same upload with ``"copy": true`` gathers a snapshot into the broker that was
asked to create it (broker.snapshots.routing): the leader that cut it sends it back,
and the receiver records it as its own (``created``) before the rename, so its
watcher never ingests it.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import struct
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

import anyio
import structlog

from broker.disk.guard import DiskGuard
from broker.snapshots.peers import PeerError, peer_upload
from storage.errors import StorageError
from storage.snapshot import Snapshot
from storage.snapshot_meta import (
    GROUP_OFFSETS_FILE,
    MAX_META_BYTES,
    META_FILE,
    SEGMENT_RE,
    TOPIC_RE,
    TXNINDEX_RE,
    UUID_RE,
    SnapshotError,
    parse_meta,
)

log = structlog.get_logger("broker.snapshots")

UPLOAD_PATH = "/v1/snapshots/upload"
MAX_MANIFEST = 64 * 1024
_CHUNK = 1024 * 1024
_U32 = struct.Struct(">I")


class UploadRefused(Exception):
    """An upload the receiver will not take; ``status`` is the HTTP answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class BodyReader(Protocol):
    """The request body as the admin server streams it (broker.admin.server)."""

    @property
    def remaining(self) -> int: ...

    async def read(self, max_bytes: int = ...) -> bytes: ...

    async def read_exactly(self, n: int) -> bytes: ...


class Receiver(Protocol):
    """What taking an upload needs of the snapshot service."""

    @property
    def snapshots_dir(self) -> str: ...

    @property
    def disk(self) -> DiskGuard | None: ...

    async def verify(self, path: str, *, settle_s: float) -> Snapshot: ...

    async def keep_as_created(self, rel: str, snap: Snapshot) -> None:
        """Record ``rel`` as this broker's own snapshot (never ingested)."""
        ...

    def wake(self) -> None: ...


@dataclass(frozen=True, slots=True)
class UploadFile:
    name: str
    size: int


# -- sending ---------------------------------------------------------------------------


def _files(snap: Snapshot) -> list[UploadFile]:
    names = [META_FILE]
    if snap.meta.group_offsets is not None:
        names.append(GROUP_OFFSETS_FILE)
    names += [s.file for s in snap.segments]
    names += [s.file for s in snap.meta.txn_indexes or ()]
    return [UploadFile(n, os.stat(os.path.join(snap.path, n)).st_size) for n in names]


def upload_header(
    topic_dir: str,
    name: str,
    from_broker: int,
    files: list[UploadFile],
    *,
    copy: bool = False,
) -> bytes:
    """The body's start: the manifest's length, then the manifest."""
    manifest = json.dumps(
        {
            "topic_dir": topic_dir,
            "name": name,
            "from_broker": from_broker,
            "copy": copy,
            "files": [{"name": f.name, "size": f.size} for f in files],
        }
    ).encode()
    return _U32.pack(len(manifest)) + manifest


async def _stream(
    path: str, header: bytes, files: list[UploadFile]
) -> AsyncIterator[bytes]:
    yield header
    for f in files:
        left = f.size
        async with await anyio.open_file(os.path.join(path, f.name), "rb") as fh:
            while left > 0:
                chunk = await fh.read(min(_CHUNK, left))
                if not chunk:
                    raise PeerError(0, f"{f.name} shrank while being sent")
                left -= len(chunk)
                yield chunk


async def send_snapshot(
    snap: Snapshot,
    *,
    topic_dir: str,
    name: str,
    from_broker: int,
    address: str,
    token: str | None,
    copy: bool = False,
) -> str:
    """Stream a verified snapshot to the admin API at ``address``; the directory
    (relative to its snapshots dir) it landed in there. ``copy``: the receiver
    keeps it as its own and never ingests it.

    Raises:
        PeerError: the peer refused it or could not be reached.
    """
    files = await anyio.to_thread.run_sync(_files, snap)
    header = upload_header(topic_dir, name, from_broker, files, copy=copy)
    length = len(header) + sum(f.size for f in files)
    # generous: a loaded leader writes, fsyncs and verifies it before answering
    timeout = 120 + length / (10 * 1024 * 1024)
    answer = await peer_upload(
        address,
        UPLOAD_PATH,
        length,
        _stream(snap.path, header, files),
        token=token,
        timeout_s=timeout,
    )
    if not isinstance(answer, dict) or not isinstance(answer.get("path"), str):
        raise PeerError(0, "the peer's answer names no snapshot")
    return str(answer["path"])


# -- receiving ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Manifest:
    topic_dir: str
    name: str
    sender: int
    copy: bool
    files: list[UploadFile]


def _manifest(raw: bytes) -> Manifest:
    try:
        body = json.loads(raw)
        topic_dir, name = body["topic_dir"], body["name"]
        sender = int(body.get("from_broker", -1))
        copy = body.get("copy", False) is True
        files = [UploadFile(str(f["name"]), int(f["size"])) for f in body["files"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise UploadRefused(400, f"bad manifest: {exc}") from None
    if not isinstance(topic_dir, str) or not (
        UUID_RE.match(topic_dir) or TOPIC_RE.match(topic_dir)
    ):
        raise UploadRefused(400, "bad topic_dir")
    if topic_dir.startswith(".") or not isinstance(name, str):
        raise UploadRefused(400, "bad topic_dir or name")
    if not name or name.startswith(".") or not TOPIC_RE.match(name):
        raise UploadRefused(400, "bad snapshot name")
    if not files or files[0].name != META_FILE:
        raise UploadRefused(400, "meta.json must come first")
    seen = set()
    for f in files:
        if f.name in seen:
            raise UploadRefused(400, f"{f.name} listed twice")
        seen.add(f.name)
        if f.size < 0:
            raise UploadRefused(400, f"{f.name}: negative size")
        if f.name in (META_FILE, GROUP_OFFSETS_FILE):
            if f.size > MAX_META_BYTES:
                raise UploadRefused(413, f"{f.name} over {MAX_META_BYTES} bytes")
        elif SEGMENT_RE.match(f.name) is None and TXNINDEX_RE.match(f.name) is None:
            raise UploadRefused(400, f"{f.name!r} is not a snapshot file name")
    return Manifest(topic_dir, name, sender, copy, files)


async def _write(reader: BodyReader, path: str, size: int) -> None:
    async with await anyio.open_file(path, "xb") as fh:
        left = size
        while left > 0:
            chunk = await reader.read(min(_CHUNK, left))
            if not chunk:
                raise UploadRefused(400, "the body ended early")
            await fh.write(chunk)
            left -= len(chunk)
        await fh.flush()
        await anyio.to_thread.run_sync(os.fsync, fh.wrapped.fileno())


def _same_meta(a: str, b: str) -> bool:
    try:
        with (
            open(os.path.join(a, META_FILE), "rb") as x,
            open(os.path.join(b, META_FILE), "rb") as y,
        ):
            return x.read() == y.read()
    except OSError:
        return False


def _final_name(staging: str, parent: str, name: str) -> tuple[str, bool]:
    """The name ``staging`` gets in ``parent``; (name, whether it is new): an
    identical snapshot of that name is not taken twice, a different one keeps its
    name."""
    target = os.path.join(parent, name)
    if os.path.lexists(target):
        if _same_meta(staging, target):
            shutil.rmtree(staging, ignore_errors=True)
            return name, False
        name = f"{name}-{uuid.uuid4().hex[:8]}"
    return name, True


def _publish(staging: str, parent: str, name: str) -> None:
    """Rename ``staging`` into ``parent`` as ``name``, durably."""
    os.rename(staging, os.path.join(parent, name))
    fd = os.open(parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


async def receive_snapshot(svc: Receiver, reader: BodyReader) -> dict[str, object]:
    """Take one upload: bound, write, verify, publish; the answer's JSON.

    Raises:
        UploadRefused: the upload breaks a bound or does not verify (nothing of it
            is kept).
    """
    if reader.remaining < _U32.size:
        raise UploadRefused(400, "empty upload")
    (m,) = _U32.unpack(await reader.read_exactly(_U32.size))
    if m > MAX_MANIFEST:
        raise UploadRefused(413, "manifest too large")
    manifest = _manifest(await reader.read_exactly(m))
    topic_dir, files = manifest.topic_dir, manifest.files
    total = sum(f.size for f in files)
    if total != reader.remaining:
        raise UploadRefused(400, "the body's length does not match the manifest")
    guard = svc.disk
    if guard is not None and not guard.admit(total):
        raise UploadRefused(507, "not enough disk space above the free-space floor")
    parent = os.path.join(svc.snapshots_dir, topic_dir)
    staging = os.path.join(parent, f".upload-{uuid.uuid4().hex}")
    await anyio.to_thread.run_sync(functools.partial(os.makedirs, staging))
    try:
        for i, f in enumerate(files):
            if i == 1:
                # meta.json is in: the segments must add up to what it declares
                await anyio.to_thread.run_sync(_check_sizes, staging, files)
            await _write(reader, os.path.join(staging, f.name), f.size)
        if len(files) == 1:
            await anyio.to_thread.run_sync(_check_sizes, staging, files)
        try:
            snap = await svc.verify(staging, settle_s=0.0)
        except (SnapshotError, StorageError, OSError) as exc:
            raise UploadRefused(422, f"the snapshot does not verify: {exc}") from None
        final, new = await anyio.to_thread.run_sync(
            _final_name, staging, parent, manifest.name
        )
        if new:
            if manifest.copy:
                await svc.keep_as_created(f"{topic_dir}/{final}", snap)
            await anyio.to_thread.run_sync(_publish, staging, parent, final)
    except BaseException:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(
                functools.partial(shutil.rmtree, staging, ignore_errors=True)
            )
        raise
    rel = f"{topic_dir}/{final}"
    log.info(
        "snapshot_received",
        snapshot=rel,
        from_broker=manifest.sender,
        copy=manifest.copy,
        topic=snap.meta.topic,
        partition=snap.meta.partition,
        size=total,
        new=new,
    )
    if not manifest.copy:
        svc.wake()
    return {"path": rel, "status": "received" if new else "already-received"}


def _check_sizes(staging: str, files: list[UploadFile]) -> None:
    try:
        with open(os.path.join(staging, META_FILE), "rb") as fh:
            meta = parse_meta(fh.read(MAX_META_BYTES + 1))
    except SnapshotError as exc:
        raise UploadRefused(422, f"meta.json: {exc}") from None
    segments = sum(f.size for f in files if SEGMENT_RE.match(f.name))
    if segments != meta.size:
        raise UploadRefused(
            422, f"segment files hold {segments} bytes, meta.json says {meta.size}"
        )
