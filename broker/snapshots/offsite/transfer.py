"""Offsite snapshot storage: push snapshot directories to any fsspec URL, pull them back.

Synchronous functions (the CLI calls them directly; the broker would run them in
``anyio.to_thread.run_sync``). Any fsspec URL works: ``s3://bucket/prefix`` (s3fs,
any S3-compatible endpoint through ``endpoint_url``, credentials from the usual AWS
variables), ``file:///path``, ``gs://``, ``memory://`` ...

Remote layout mirrors ``<data_dir>/snapshots``::

    <url>/<topic_id>/<snapshot_id>/00000000000000000000.log   every file of the snapshot
                                  /...                         (segments, group offsets)
                                  /ailurus-manifest.json       name, size, crc32c, md5 of
                                                               each file incl. meta.json
                                  /meta.json                   written LAST

Guarantees:

- **Visibility**: a remote snapshot exists for :func:`pull` and :func:`list_remote`
  only once its ``meta.json`` is there, and ``meta.json`` is written only after every
  other object was uploaded *and verified*. Repairing a remote snapshot first deletes
  its ``meta.json``, so "meta.json present" always means "complete".
- **Idempotent, resumable push**: an object already present with the same size and
  checksum is skipped, so re-running an interrupted push uploads only what is missing.
- **Verified**: local files are checked against ``meta.json``'s checksums before
  upload (a corrupt local snapshot is never shipped); each upload is checked against
  the server's MD5 ETag when it has one (single-part S3 uploads), else by reading the
  object back and comparing CRC32C.
- **Atomic landing**: :func:`pull` downloads into a dot-directory beside the target
  (the snapshot watcher ignores dot-directories), checks size and CRC32C of every file
  against the manifest and ``meta.json``, fsyncs, then renames it into place, so a
  running broker sees the whole snapshot or nothing. A checksum mismatch rejects the
  snapshot and leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import crc32c
import structlog

from broker.snapshots.offsite.remote import (
    CHUNK,
    MANIFEST_NAME,
    MANIFEST_VERSION,
    MAX_META_BYTES,
    META_NAME,
    ChecksumMismatch,
    FileDigest,
    FileEvent,
    OffsiteError,
    ProgressFn,
    SnapshotConflict,
    SnapshotRef,
    TransferResult,
    check_against_meta,
    check_bytes,
    check_manifest,
    check_name,
    digest_file,
    expected_from_meta,
    find_local_snapshots,
    fsync_dir,
    fsync_file,
    local_files,
    order_key,
    read_meta,
)

__all__ = [
    "MANIFEST_NAME",
    "META_NAME",
    "ChecksumMismatch",
    "FileEvent",
    "OffsiteError",
    "ProgressFn",
    "SnapshotConflict",
    "SnapshotRef",
    "TransferResult",
    "digest_file",
    "find_local_snapshots",
    "list_remote",
    "open_remote",
    "pull",
    "push",
    "select_chain",
]

log = structlog.get_logger("ailurus.offsite")

# -- remote file systems ----------------------------------------------------------------


def open_remote(
    url: str,
    *,
    endpoint_url: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> tuple[Any, str]:
    """The fsspec file system of ``url`` and the root path inside it.

    ``endpoint_url`` (or ``AWS_ENDPOINT_URL``) selects an S3-compatible server for
    ``s3://`` URLs; credentials come from the usual AWS variables and profiles.
    """
    try:
        import fsspec  # type: ignore[import-untyped]
    except ImportError as e:  # pragma: no cover - depends on the install
        raise OffsiteError(
            "offsite storage needs fsspec: pip install 'ailurus[s3]'"
        ) from e
    options: dict[str, Any] = dict(storage_options or {})
    protocol = url.split("://", 1)[0] if "://" in url else "file"
    endpoint = endpoint_url or os.environ.get("AWS_ENDPOINT_URL")
    if protocol in ("s3", "s3a") and endpoint:
        options.setdefault("endpoint_url", endpoint)
    try:
        fs, root = fsspec.core.url_to_fs(url, **options)
    except (ImportError, ValueError) as e:
        raise OffsiteError(f"cannot open {url}: {e}") from e
    return fs, str(root).rstrip("/")


def _is_local(fs: Any) -> bool:
    protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return "file" in protocols or "local" in protocols


# -- push -------------------------------------------------------------------------------


def push(
    source: Path,
    url: str,
    *,
    endpoint_url: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
    topics: Iterable[str] = (),
    snapshot_ids: Iterable[str] = (),
    on_file: ProgressFn | None = None,
) -> list[TransferResult]:
    """Upload the snapshots under ``source`` to ``url``, oldest first.

    Args:
        source: a snapshot root (``<data_dir>/snapshots``), a topic dir or one snapshot.
        topics / snapshot_ids: only these (empty: all).
        on_file: called after each file is uploaded or skipped (progress bars, tests).

    Raises:
        ChecksumMismatch: a local file does not match its meta.json, or an upload
            could not be verified.
        SnapshotConflict: the remote holds a different snapshot under the same ID.
    """
    fs, root = open_remote(
        url, endpoint_url=endpoint_url, storage_options=storage_options
    )
    wanted_topics, wanted_ids = set(topics), set(snapshot_ids)
    results = []
    for ref, snap_dir in find_local_snapshots(source):
        if wanted_topics and not wanted_topics & {
            ref.topic,
            str(ref.meta.get("topic")),
        }:
            continue
        if wanted_ids and ref.snapshot_id not in wanted_ids:
            continue
        results.append(_push_one(fs, root, snap_dir, ref, on_file))
    return results


def _push_one(
    fs: Any, root: str, snap_dir: Path, ref: SnapshotRef, on_file: ProgressFn | None
) -> TransferResult:
    check_name(ref.topic, "topic directory")
    check_name(ref.snapshot_id, "snapshot")
    where = str(snap_dir)
    expected = expected_from_meta(ref.meta)
    files = local_files(snap_dir)
    names = {p.name for p in files}
    missing = sorted(set(expected) - names)
    if missing:
        raise OffsiteError(f"{where}: segment files missing: {missing}")
    digests = []
    for path in files:
        digest = digest_file(path)
        if digest.name in expected:
            check_against_meta(where, digest, expected[digest.name], path)
        digests.append(digest)
    meta_bytes = (snap_dir / META_NAME).read_bytes()
    meta_digest = digest_file(snap_dir / META_NAME)
    manifest = _manifest_bytes(ref, [*digests, meta_digest])

    remote_dir = f"{root}/{ref.topic}/{ref.snapshot_id}"
    remote_meta = f"{remote_dir}/{META_NAME}"
    fs.invalidate_cache(remote_dir)
    meta_present = fs.exists(remote_meta)
    if meta_present and _read_remote(fs, remote_meta) != meta_bytes:
        raise SnapshotConflict(
            f"{url_join(root, ref.key)} holds a different meta.json for this snapshot ID"
        )
    if _is_local(fs):
        fs.makedirs(remote_dir, exist_ok=True)

    todo = [
        (path, d)
        for path, d in zip(files, digests, strict=True)
        if not _remote_matches(fs, f"{remote_dir}/{d.name}", d)
    ]
    manifest_ok = _remote_bytes_equal(fs, f"{remote_dir}/{MANIFEST_NAME}", manifest)
    if meta_present and not todo and manifest_ok:
        for d in digests:
            _notify(on_file, ref, d, skipped=True)
        log.info("offsite_push_already_present", snapshot=ref.key)
        return TransferResult(
            topic=ref.topic,
            snapshot_id=ref.snapshot_id,
            status="already-present",
            files_transferred=0,
            files_skipped=len(digests),
            bytes_transferred=0,
        )
    if meta_present:
        # Retract first: "meta.json present" must keep meaning "complete".
        fs.rm_file(remote_meta)
        log.warning("offsite_push_repairing", snapshot=ref.key, files=len(todo))
    pending = {d.name for _, d in todo}
    for d in digests:
        if d.name not in pending:
            _notify(on_file, ref, d, skipped=True)
    sent = 0
    for path, d in todo:
        target = f"{remote_dir}/{d.name}"
        fs.put_file(str(path), target)
        fs.invalidate_cache(remote_dir)
        if not _remote_matches(fs, target, d):
            raise ChecksumMismatch(
                f"{url_join(root, ref.key)}/{d.name}: upload not verified"
            )
        sent += d.size
        _notify(on_file, ref, d, skipped=False)
    _write_object(fs, f"{remote_dir}/{MANIFEST_NAME}", manifest)
    _write_object(fs, remote_meta, meta_bytes)  # last: makes the snapshot visible
    fs.invalidate_cache(remote_dir)
    if not _remote_matches(fs, remote_meta, meta_digest):
        raise ChecksumMismatch(
            f"{url_join(root, ref.key)}/meta.json: upload not verified"
        )
    log.info("offsite_pushed", snapshot=ref.key, files=len(todo), bytes=sent)
    return TransferResult(
        topic=ref.topic,
        snapshot_id=ref.snapshot_id,
        status="pushed",
        files_transferred=len(todo),
        files_skipped=len(digests) - len(todo),
        bytes_transferred=sent,
    )


def url_join(root: str, key: str) -> str:
    """``root/key`` for messages."""
    return f"{root}/{key}"


def _notify(
    on_file: ProgressFn | None, ref: SnapshotRef, d: FileDigest, *, skipped: bool
) -> None:
    if on_file is not None:
        on_file(FileEvent(snapshot=ref.key, name=d.name, size=d.size, skipped=skipped))


def _manifest_bytes(ref: SnapshotRef, digests: Sequence[FileDigest]) -> bytes:
    doc = {
        "version": MANIFEST_VERSION,
        "topic": ref.topic,
        "snapshot_id": ref.snapshot_id,
        "files": [d.as_json() for d in digests],
    }
    return json.dumps(doc, indent=1, sort_keys=True).encode() + b"\n"


def _write_object(fs: Any, path: str, data: bytes) -> None:
    """Write a small object whole: temp name + rename on local disks, one PUT elsewhere."""
    if _is_local(fs):
        tmp = Path(f"{path}.tmp-{secrets.token_hex(4)}")
        with tmp.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    else:
        fs.pipe_file(path, data)


def _read_remote(fs: Any, path: str) -> bytes:
    data = fs.cat_file(path)
    return bytes(data)


def _remote_bytes_equal(fs: Any, path: str, data: bytes) -> bool:
    try:
        return _read_remote(fs, path) == data
    except FileNotFoundError:
        return False


def _remote_matches(fs: Any, path: str, d: FileDigest) -> bool:
    """Whether the object at ``path`` has ``d``'s size and checksum."""
    try:
        info = fs.info(path)
    except FileNotFoundError:
        return False
    if int(info.get("size", -1)) != d.size:
        return False
    etag = str(info.get("ETag") or info.get("etag") or "").strip('"').lower()
    if re.fullmatch(r"[0-9a-f]{32}", etag):
        # Single-part S3 upload: the server computed the MD5 of what it received.
        return etag == d.md5
    crc = 0
    with fs.open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            crc = crc32c.crc32c(chunk, crc)
    return crc == d.crc32c


# -- list / pull ------------------------------------------------------------------------


def list_remote(
    url: str,
    *,
    endpoint_url: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> list[SnapshotRef]:
    """The complete (meta.json present) snapshots at ``url``, oldest first."""
    fs, root = open_remote(
        url, endpoint_url=endpoint_url, storage_options=storage_options
    )
    return _list(fs, root)


def _list(
    fs: Any, root: str, rejected: list[TransferResult] | None = None
) -> list[SnapshotRef]:
    """Complete remote snapshots; bad ones raise, or go to ``rejected`` when given."""
    fs.invalidate_cache()
    refs = []
    for path in fs.glob(f"{root}/*/*/{META_NAME}"):
        parts = str(path).rstrip("/").split("/")
        topic, sid = parts[-3], parts[-2]
        if topic.startswith(".") or sid.startswith("."):
            continue
        where = f"{root}/{topic}/{sid}"
        try:
            if int(fs.info(str(path)).get("size", 0)) > MAX_META_BYTES:
                raise OffsiteError(
                    f"{where}: meta.json is larger than {MAX_META_BYTES} bytes"
                )
            meta = read_meta(_read_remote(fs, str(path)), where)
        except OffsiteError as e:
            if rejected is None:
                raise
            rejected.append(_rejected(topic, sid, e))
            continue
        refs.append(SnapshotRef(topic=topic, snapshot_id=sid, meta=meta))
    return sorted(refs, key=order_key)


def select_chain(
    refs: Sequence[SnapshotRef],
    *,
    topics: Iterable[str] = (),
    partitions: Iterable[int] = (),
    snapshot_ids: Iterable[str] = (),
    until: int | None = None,
) -> list[SnapshotRef]:
    """The snapshots matching the filters, plus the ancestors they need, oldest first.

    ``until`` (a nanosecond timestamp, i.e. a snapshot ID) keeps only snapshots taken
    at or before it: pulling that chain restores the partition to that point in time.
    """
    wanted_topics, wanted_parts, wanted_ids = (
        set(topics),
        set(partitions),
        set(snapshot_ids),
    )
    by_id = {(r.topic, r.snapshot_id): r for r in refs}
    chosen: dict[tuple[str, str], SnapshotRef] = {}
    for r in refs:
        if (
            wanted_topics
            and r.topic not in wanted_topics
            and str(r.meta.get("topic")) not in wanted_topics
        ):
            continue
        if wanted_parts and r.partition not in wanted_parts:
            continue
        if wanted_ids and r.snapshot_id not in wanted_ids:
            continue
        if until is not None and r.snapshot_id.isdigit() and int(r.snapshot_id) > until:
            continue
        cur: SnapshotRef | None = r
        while cur is not None and (cur.topic, cur.snapshot_id) not in chosen:
            chosen[(cur.topic, cur.snapshot_id)] = cur
            parent = cur.ancestor_id
            cur = by_id.get((cur.topic, parent)) if parent else None
    return sorted(chosen.values(), key=order_key)


def pull(
    url: str,
    data_dir: Path,
    *,
    endpoint_url: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
    topics: Iterable[str] = (),
    partitions: Iterable[int] = (),
    snapshot_ids: Iterable[str] = (),
    until: int | None = None,
    snapshots_dir: Path | None = None,
    on_file: ProgressFn | None = None,
    keep_going: bool = False,
) -> list[TransferResult]:
    """Download snapshots from ``url`` into ``<data_dir>/snapshots``, oldest first.

    Each lands atomically (dot-directory, verify, fsync, rename), so a running broker
    ingests it whole. Ancestors of the chosen snapshots come along. With
    ``keep_going`` a bad snapshot is reported as ``rejected`` (with its reason) and
    the others are still pulled, instead of raising.

    Raises:
        ChecksumMismatch: an object's size or checksum differs from the manifest or
            meta.json; nothing of that snapshot is left locally.
        SnapshotConflict: a different snapshot with the same ID is already local.
    """
    fs, root = open_remote(
        url, endpoint_url=endpoint_url, storage_options=storage_options
    )
    target_root = snapshots_dir if snapshots_dir is not None else data_dir / "snapshots"
    rejected: list[TransferResult] | None = [] if keep_going else None
    chosen = select_chain(
        _list(fs, root, rejected),
        topics=topics,
        partitions=partitions,
        snapshot_ids=snapshot_ids,
        until=until,
    )
    results = list(rejected or [])
    for ref in chosen:
        try:
            results.append(_pull_one(fs, root, target_root, ref, on_file))
        except OffsiteError as e:
            if not keep_going:
                raise
            results.append(_rejected(ref.topic, ref.snapshot_id, e))
    return results


def _rejected(topic: str, snapshot_id: str, error: OffsiteError) -> TransferResult:
    log.error(
        "offsite_pull_rejected", snapshot=f"{topic}/{snapshot_id}", reason=str(error)
    )
    return TransferResult(
        topic=topic,
        snapshot_id=snapshot_id,
        status="rejected",
        files_transferred=0,
        files_skipped=0,
        bytes_transferred=0,
        reason=str(error),
    )


def _pull_one(
    fs: Any, root: str, target_root: Path, ref: SnapshotRef, on_file: ProgressFn | None
) -> TransferResult:
    check_name(ref.topic, "topic directory")
    check_name(ref.snapshot_id, "snapshot")
    remote_dir = f"{root}/{ref.topic}/{ref.snapshot_id}"
    where = url_join(root, ref.key)
    meta_bytes = _read_remote(fs, f"{remote_dir}/{META_NAME}")
    expected = expected_from_meta(ref.meta)
    manifest = _read_manifest(fs, remote_dir, where)
    if manifest is not None:
        meta_entry = manifest.pop(META_NAME, None)
        if meta_entry is not None:
            check_bytes(where, META_NAME, meta_bytes, meta_entry)
        names = sorted(manifest)
    else:
        listed = [str(p).rsplit("/", 1)[-1] for p in fs.ls(remote_dir, detail=False)]
        names = sorted(n for n in listed if n not in (META_NAME, MANIFEST_NAME))
    for name in names:
        check_name(name, "file")
    missing = sorted(set(expected) - set(names))
    if missing:
        raise OffsiteError(f"{where}: segment files missing: {missing}")

    final = target_root / ref.topic / ref.snapshot_id
    if final.exists():
        return _compare_existing(
            final, ref, meta_bytes, names, manifest, expected, on_file
        )
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{ref.snapshot_id}.pull-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        total = 0
        for name in names:
            local = tmp / name
            fs.get_file(f"{remote_dir}/{name}", str(local))
            digest = digest_file(local)
            if manifest is not None:
                check_manifest(where, digest, manifest[name])
            if name in expected:
                check_against_meta(where, digest, expected[name], local)
            total += digest.size
            fsync_file(local)
            _notify(on_file, ref, digest, skipped=False)
        meta_path = tmp / META_NAME
        meta_path.write_bytes(meta_bytes)
        fsync_file(meta_path)
        fsync_dir(tmp)
        tmp.rename(final)
        fsync_dir(final.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("offsite_pulled", snapshot=ref.key, files=len(names), bytes=total)
    return TransferResult(
        topic=ref.topic,
        snapshot_id=ref.snapshot_id,
        status="pulled",
        files_transferred=len(names),
        files_skipped=0,
        bytes_transferred=total,
    )


def _compare_existing(
    final: Path,
    ref: SnapshotRef,
    meta_bytes: bytes,
    names: Sequence[str],
    manifest: Mapping[str, Mapping[str, Any]] | None,
    expected: Mapping[str, Mapping[str, Any]],
    on_file: ProgressFn | None,
) -> TransferResult:
    where = str(final)
    if (
        not (final / META_NAME).is_file()
        or (final / META_NAME).read_bytes() != meta_bytes
    ):
        raise SnapshotConflict(f"{where} already exists with a different meta.json")
    for name in names:
        path = final / name
        if not path.is_file():
            raise SnapshotConflict(f"{where}/{name} is missing from the local copy")
        digest = digest_file(path)
        try:
            if manifest is not None:
                check_manifest(where, digest, manifest[name])
            if name in expected:
                check_against_meta(where, digest, expected[name], path)
        except ChecksumMismatch as e:
            raise SnapshotConflict(
                f"local copy differs from the remote one: {e}"
            ) from e
        _notify(on_file, ref, digest, skipped=True)
    return TransferResult(
        topic=ref.topic,
        snapshot_id=ref.snapshot_id,
        status="already-present",
        files_transferred=0,
        files_skipped=len(names),
        bytes_transferred=0,
    )


def _read_manifest(
    fs: Any, remote_dir: str, where: str
) -> dict[str, dict[str, Any]] | None:
    try:
        data = _read_remote(fs, f"{remote_dir}/{MANIFEST_NAME}")
    except FileNotFoundError:
        return None
    try:
        doc = json.loads(data)
        files = {str(f["name"]): dict(f) for f in doc["files"]}
        for f in files.values():
            int(f["size"])
            int(f["crc32c"])
    except (UnicodeDecodeError, ValueError, KeyError, TypeError, RecursionError) as e:
        raise ChecksumMismatch(f"{where}/{MANIFEST_NAME} is corrupt: {e}") from e
    return files
