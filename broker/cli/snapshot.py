"""``ailurus snapshot``: create, list, show (admin API); verify, restore, prune (files).

``create``/``list``/``show`` talk to a running broker's admin API (``--admin-url``);
on a terminal ``create`` shows a pulsing progress bar with the elapsed time while the
broker works, erased before the per-partition table is printed.
``verify DIR`` validates a snapshot offline (sizes, checksums, every batch CRC, dense
offsets, last_term). ``restore --from DIR|ARCHIVE`` copies a snapshot, or a chain of
them, into a data dir's ``snapshots/`` under a dot-name and renames it into place, so
a live broker ingests it whole; ``--to-offset N`` keeps the chain up to offset N (the
last snapshot is cut after the batch holding N). ``prune`` removes old snapshots but
never one a retained snapshot depends on (its ancestors).
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import sys
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import click
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from broker.cli.output import (
    echo_json,
    is_json,
    options,
    print_pairs,
    print_table,
    run_command,
)
from broker.client.errors import ClientError
from storage.snapshot import Snapshot, apply_order, inspect_snapshot
from storage.snapshot_meta import (
    CODECS,
    META_FILE,
    SegmentMeta,
    SnapshotError,
    SnapshotMeta,
    compress_file,
    iter_chunks,
    open_segment,
)
from storage.snapshot_meta import (
    parse_meta as parse_meta_bytes,
)


class SnapshotCliError(ClientError):
    """A snapshot command failed; the message is one line."""


def _admin(method: str, path: str, body: object | None = None) -> object:
    return _request(options()[1], method, path, body)


def _request(
    admin_url: str, method: str, path: str, body: object | None = None
) -> object:
    """One admin API call (no click context needed: safe in a worker thread)."""
    url = admin_url.rstrip("/") + path
    if not url.startswith(("http://", "https://")):
        raise SnapshotCliError(f"--admin-url {url!r} is not an http(s) URL")
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    # mutating admin endpoints need the broker's bearer token when it has one
    token = os.environ.get("AILURUS_ADMIN_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(  # noqa: S310 (scheme checked above)
        url, data=data, method=method, headers=headers
    )
    try:
        with urllib.request.urlopen(req, timeout=300) as resp:  # noqa: S310
            return json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read()).get("error", exc.reason)
        except ValueError:
            message = exc.reason
        raise SnapshotCliError(f"admin API {exc.code}: {message}") from None
    except urllib.error.URLError as exc:
        raise SnapshotCliError(f"admin API {url} unreachable: {exc.reason}") from None


@click.group(name="snapshot")
def snapshot() -> None:
    """Create, list, verify, restore and prune partition snapshots."""


COMMAND = snapshot


@snapshot.command()
@click.option("--topic", required=True, help="Topic to snapshot.")
@click.option(
    "--partition",
    "partitions",
    type=int,
    multiple=True,
    help="Only these partitions (repeatable).",
)
@click.option(
    "--incremental",
    is_flag=True,
    help="Only batches after the latest snapshot of each partition.",
)
@click.option(
    "--compression",
    type=click.Choice(sorted(CODECS)),
    default="none",
    show_default=True,
)
@click.option(
    "--with-group-offsets",
    is_flag=True,
    help="Store the groups' committed offsets too.",
)
@run_command
def create(
    topic: str,
    partitions: tuple[int, ...],
    incremental: bool,
    compression: str,
    with_group_offsets: bool,
) -> None:
    """Snapshot a topic's partitions at one consistent point (each high watermark)."""
    body = {
        "topic": topic,
        "partitions": list(partitions) or None,
        "incremental": incremental,
        "compression": compression,
        "with_group_offsets": with_group_offsets,
    }
    if sys.stdout.isatty() and not is_json():
        results = _with_progress(
            f"snapshotting {topic}",
            functools.partial(_request, options()[1], "POST", "/v1/snapshots", body),
        )
    else:
        results = _admin("POST", "/v1/snapshots", body)
    assert isinstance(results, list)
    if is_json():
        echo_json(results)
        return
    rows = []
    for r in results:
        if "snapshot_id" in r:
            rows.append(
                (
                    r["partition"],
                    r["snapshot_id"],
                    r["base_offset"],
                    r["last_offset"],
                    r["size"],
                    r["path"],
                )
            )
        else:
            rows.append(
                (
                    r["partition"],
                    "-",
                    "-",
                    "-",
                    "-",
                    f"skipped: {r.get('reason') or r.get('error')}",
                )
            )
    print_table(["partition", "snapshot_id", "base", "last", "size", "path"], rows)


def _with_progress(label: str, call: Callable[[], object]) -> object:
    """Run ``call`` in a worker thread behind a pulsing bar with the elapsed time.

    The bar (rich, transient) is erased when the call returns or fails, so only the
    result is left on the terminal.
    """
    outcome: list[object] = []
    failure: list[BaseException] = []

    def work() -> None:
        try:
            outcome.append(call())
        except BaseException as exc:  # noqa: BLE001 (re-raised in the caller)
            failure.append(exc)

    worker = threading.Thread(target=work, name="snapshot-create", daemon=True)
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        transient=True,
    ) as progress:
        task = progress.add_task(label, total=None)
        worker.start()
        while worker.is_alive():
            worker.join(0.1)
        if not failure:
            progress.update(task, total=1, completed=1)
    if failure:
        raise failure[0]
    return outcome[0]


@snapshot.command(name="list")
@run_command
def list_() -> None:
    """Every snapshot with its partition, offsets, size and ingest status."""
    rows = _admin("GET", "/v1/snapshots")
    assert isinstance(rows, list)
    if is_json():
        echo_json(rows)
        return
    print_table(
        ["path", "topic", "partition", "base", "last", "size", "status", "reason"],
        [
            (
                r["path"],
                r["topic"],
                r["partition"],
                r["base_offset"],
                r["last_offset"],
                r["size"],
                r["status"],
                r["reason"] or "",
            )
            for r in rows
        ],
    )


@snapshot.command()
@click.argument("topic_id")
@click.argument("snapshot_id")
@run_command
def show(topic_id: str, snapshot_id: str) -> None:
    """One snapshot: its ingest status and meta.json."""
    found = _admin("GET", f"/v1/snapshots/{topic_id}/{snapshot_id}")
    if is_json():
        echo_json(found)
        return
    assert isinstance(found, dict)
    meta = found.pop("meta", {})
    print_pairs(sorted(found.items()))
    if isinstance(meta, dict):
        print_pairs(
            (f"meta.{k}", v) for k, v in sorted(meta.items()) if k != "segments"
        )
        for seg in meta.get("segments", []):
            click.echo(f"segment  {seg}")


def _verify(path: Path) -> Snapshot:
    root = os.path.realpath(path)
    try:
        return inspect_snapshot(str(path), root, settle_s=0)
    except SnapshotError as exc:
        raise SnapshotCliError(f"{path}: {exc}") from None


@snapshot.command()
@click.argument(
    "directory", type=click.Path(exists=True, file_okay=False, path_type=Path)
)
@run_command
def verify(directory: Path) -> None:
    """Validate a snapshot directory offline (exit 1 if it would be rejected)."""
    s = _verify(directory)
    summary = {
        "path": str(directory),
        "valid": True,
        "topic": s.meta.topic,
        "partition": s.meta.partition,
        "base_offset": s.base_offset,
        "last_offset": s.last_offset,
        "last_term": s.last_term,
        "size": s.stored_bytes,
        "segments": len(s.segments),
        "ancestor_snapshot_id": s.meta.ancestor_snapshot_id,
    }
    if is_json():
        echo_json(summary)
    else:
        print_pairs(summary.items())


# -- restore ------------------------------------------------------------------------------


def _snapshot_dirs(source: Path) -> list[Path]:
    """The snapshot directories in ``source``: itself, or its children with meta.json."""
    if (source / META_FILE).is_file():
        return [source]
    found = sorted(
        p
        for p in source.iterdir()
        if p.is_dir() and not p.name.startswith(".") and (p / META_FILE).is_file()
    )
    if not found:
        inner = [
            p for p in source.iterdir() if p.is_dir() and not p.name.startswith(".")
        ]
        if len(inner) == 1:
            return _snapshot_dirs(inner[0])
        raise SnapshotCliError(f"no snapshot (meta.json) in {source}")
    return found


def _extract(archive: Path, into: Path) -> Path:
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(into, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise SnapshotCliError(f"cannot extract {archive}: {exc}") from None
    return into


def _cut(snap: Snapshot, to_offset: int, dest: Path) -> SnapshotMeta:
    """Write ``snap``'s batches up to the one holding ``to_offset`` into ``dest``."""
    import crc32c

    segments = []
    last_term = -1
    last = -1
    max_ts = -1
    for seg in snap.segments:
        if seg.base_offset > to_offset:
            break
        fd = open_segment(
            os.path.join(snap.path, seg.file), os.path.realpath(snap.path)
        )
        parts: list[bytes] = []
        seg_last = -1
        try:
            for view, batches in iter_chunks(fd, snap.meta.compression, verify=True):
                for pos, h in batches:
                    if h.base_offset > to_offset:
                        break
                    parts.append(bytes(view[pos : pos + h.size]))
                    seg_last, last_term, last = (
                        h.last_offset,
                        h.partition_leader_epoch,
                        h.last_offset,
                    )
                    max_ts = max(max_ts, h.max_timestamp)
        finally:
            os.close(fd)
        data = compress_file(b"".join(parts), snap.meta.compression)
        name = f"{seg.base_offset:020d}.log{CODECS[snap.meta.compression]}"
        (dest / name).write_bytes(data)
        segments.append(
            SegmentMeta(
                file=name,
                base_offset=seg.base_offset,
                last_offset=seg_last,
                size=len(data),
                crc32c=crc32c.crc32c(data),
            )
        )
    m = snap.meta
    return SnapshotMeta(
        version=m.version,
        last_offset=last,
        last_term=last_term,
        ancestor_snapshot_id=m.ancestor_snapshot_id,
        compression=m.compression,
        size=sum(s.size or 0 for s in segments),
        snapshot_id=m.snapshot_id,
        topic=m.topic,
        topic_id=m.topic_id,
        partition=m.partition,
        partition_count=m.partition_count,
        base_offset=snap.base_offset,
        max_timestamp=max_ts,
        created_at=m.created_at,
        segments=tuple(segments),
        topic_configs=m.topic_configs,
        group_offsets=None,
    )


def _copy_tree(src: Path, dest: Path, progress: Progress | None) -> None:
    dest.mkdir(parents=True)
    for entry in sorted(src.iterdir()):
        if entry.is_symlink() or not entry.is_file():
            raise SnapshotCliError(f"{entry}: not a regular file")
        if progress is not None:
            task = progress.add_task(entry.name, total=entry.stat().st_size)
        with entry.open("rb") as fin, (dest / entry.name).open("xb") as fout:
            while chunk := fin.read(8 << 20):
                fout.write(chunk)
                if progress is not None:
                    progress.advance(task, len(chunk))
            fout.flush()
            os.fsync(fout.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@snapshot.command()
@click.option(
    "--from",
    "source",
    required=True,
    type=click.Path(exists=True, path_type=Path),
    help="Snapshot dir, chain dir or tar archive.",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("./data"),
    show_default=True,
)
@click.option(
    "--to-offset",
    type=int,
    default=None,
    help="Restore the chain up to this offset only.",
)
@run_command
def restore(source: Path, data_dir: Path, to_offset: int | None) -> None:
    """Copy a snapshot (chain) into DATA_DIR/snapshots/ atomically (temp name, rename)."""
    with tempfile.TemporaryDirectory(prefix="ailurus-restore-") as scratch:
        if source.is_file():
            source = _extract(source, Path(scratch) / "archive")
        snaps = [_verify(d) for d in _snapshot_dirs(source)]
        chain = apply_order(snaps)
        if to_offset is not None:
            chain = [s for s in chain if s.base_offset <= to_offset]
            if not chain:
                raise SnapshotCliError(f"no snapshot holds offset {to_offset}")
        tty = sys.stdout.isatty() and not is_json()
        restored = []
        with Progress(disable=not tty) as progress:
            for s in chain:
                topic_dir = s.meta.topic_id or Path(s.path).parent.name
                sid = s.meta.snapshot_id or Path(s.path).name
                if not re.fullmatch(
                    r"[0-9A-Za-z._-]{1,255}", topic_dir
                ) or not re.fullmatch(r"[0-9A-Za-z_-]{1,64}", sid):
                    raise SnapshotCliError(f"{s.path}: bad topic or snapshot id")
                parent = data_dir / "snapshots" / topic_dir
                final = parent / sid
                if final.exists():
                    raise SnapshotCliError(f"{final} already exists")
                tmp = parent / f".{sid}.restore-{os.getpid()}"
                parent.mkdir(parents=True, exist_ok=True)
                try:
                    if to_offset is not None and s.last_offset > to_offset:
                        tmp.mkdir()
                        meta = _cut(s, to_offset, tmp)
                        (tmp / META_FILE).write_bytes(meta.encode())
                    else:
                        _copy_tree(Path(s.path), tmp, progress if tty else None)
                    _fsync_dir(tmp)
                    os.rename(tmp, final)
                    _fsync_dir(parent)
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
                restored.append(
                    {
                        "path": str(final),
                        "base_offset": s.base_offset,
                        "last_offset": min(
                            s.last_offset,
                            to_offset if to_offset is not None else s.last_offset,
                        ),
                    }
                )
    if is_json():
        echo_json(restored)
    else:
        print_table(
            ["path", "base", "last"],
            [(r["path"], r["base_offset"], r["last_offset"]) for r in restored],
        )


# -- prune --------------------------------------------------------------------------------

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """``90s``, ``15m``, ``12h``, ``7d``, ``2w`` in seconds."""
    m = re.fullmatch(r"(\d+)([smhdw])", text.strip())
    if m is None:
        raise click.BadParameter(f"{text!r}: expected a number and one of s m h d w")
    return int(m.group(1)) * _UNITS[m.group(2)]


def _metas(snapshots: Path) -> Iterator[tuple[Path, SnapshotMeta]]:
    for topic_dir in sorted(snapshots.iterdir()) if snapshots.is_dir() else []:
        if (
            topic_dir.name.startswith(".")
            or topic_dir.is_symlink()
            or not topic_dir.is_dir()
        ):
            continue
        for d in sorted(topic_dir.iterdir()):
            if (
                d.name.startswith(".")
                or d.is_symlink()
                or not (d / META_FILE).is_file()
            ):
                continue
            try:
                yield d, parse_meta_bytes((d / META_FILE).read_bytes()[: 1 << 20])
            except SnapshotError:
                continue


@snapshot.command()
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("./data"),
    show_default=True,
)
@click.option(
    "--keep-last",
    type=click.IntRange(min=1),
    default=None,
    help="Keep the newest N per partition.",
)
@click.option(
    "--older-than",
    type=str,
    default=None,
    help="Remove snapshots older than this (e.g. 7d).",
)
@click.option("--dry-run", is_flag=True, help="Only say what would be removed.")
@run_command
def prune(
    data_dir: Path, keep_last: int | None, older_than: str | None, dry_run: bool
) -> None:
    """Remove old snapshots, never one that a retained snapshot depends on."""
    if keep_last is None and older_than is None:
        raise SnapshotCliError("give --keep-last and/or --older-than")
    cutoff = None if older_than is None else time.time() - parse_duration(older_than)
    by_partition: dict[tuple[str, int], list[tuple[Path, SnapshotMeta]]] = {}
    for d, meta in _metas(data_dir / "snapshots"):
        by_partition.setdefault((d.parent.name, meta.partition), []).append((d, meta))
    removed = []
    for items in by_partition.values():
        items.sort(key=lambda item: _age_key(item[0]))
        keep = set()
        for i, (d, _) in enumerate(items):
            young = cutoff is not None and _created_s(d) >= cutoff
            recent = keep_last is not None and i >= len(items) - keep_last
            if young or recent:
                keep.add(d)
        ids = {(m.snapshot_id or d.name): (d, m) for d, m in items}
        stack = [m for d, m in items if d in keep]
        while stack:  # ancestors of retained snapshots stay
            anc = stack.pop().ancestor_snapshot_id
            if anc in ids and ids[anc][0] not in keep:
                keep.add(ids[anc][0])
                stack.append(ids[anc][1])
        for d, _ in items:
            if d not in keep:
                removed.append(str(d))
                if not dry_run:
                    shutil.rmtree(d)
    if is_json():
        echo_json({"removed": removed, "dry_run": dry_run})
    else:
        for path in removed:
            click.echo(("would remove " if dry_run else "removed ") + path)


def _age_key(d: Path) -> tuple[int, str]:
    return (int(d.name) if d.name.isdigit() else int(_created_s(d) * 1e9), d.name)


def _created_s(d: Path) -> float:
    if d.name.isdigit() and len(d.name) >= 18:
        return int(d.name) / 1e9
    return (d / META_FILE).stat().st_mtime
