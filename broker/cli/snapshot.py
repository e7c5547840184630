"""``ailurus snapshot``: verify, restore, prune (files); the admin API commands
(create, list, show, status) are in :mod:`broker.cli.snapshot_admin`.

``verify DIR`` validates a snapshot offline (sizes, checksums, every batch CRC, dense
offsets, last_term). ``restore --from DIR|ARCHIVE`` copies a snapshot, or a chain of
them, into a data dir's ``snapshots/`` under a dot-name and renames it into place, so
a live broker ingests it whole; ``--to-offset N`` keeps the chain up to offset N (the
last snapshot is cut after the batch holding N). ``prune`` removes old snapshots but
never one a retained snapshot depends on (its ancestors).
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import click
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from broker.cli.admin_http import admin_request
from broker.cli.output import (
    echo_json,
    is_json,
    print_pairs,
    print_table,
    run_command,
)
from broker.cli.settings import current_settings
from broker.client.errors import ClientError
from protocol.records import BatchHeader
from storage.errors import StorageError
from storage.snapshot import Snapshot, Status, apply_order, inspect_snapshot
from storage.snapshot_files import compress_file, iter_chunks, open_segment
from storage.snapshot_ingest import IngestState
from storage.snapshot_meta import (
    CODECS,
    META_FILE,
    SegmentMeta,
    SnapshotError,
    SnapshotMeta,
)
from storage.snapshot_retention import (
    RetentionPolicy,
    collect_snapshots,
    order_key,
    plan_retention,
    remove_snapshot,
)
from storage.snapshot_txn import encode_by_segment, snapshot_aborted, stable_prefix

# snapshots the broker is still ingesting: prune keeps them
_INGESTING = frozenset({Status.WAITING, Status.WAITING_FOR_ANCESTOR, Status.APPLYING})


class SnapshotCliError(ClientError):
    """A snapshot command failed; the message is one line."""


def _admin(method: str, path: str, body: object | None = None) -> object:
    settings = current_settings()
    return admin_request(
        settings.admin_url, method, path, body, token=settings.admin_token
    )


@click.group(name="snapshot")
def snapshot() -> None:
    """Create, list, show, verify, restore and prune partition snapshots; status."""


COMMAND = snapshot


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
    """Write ``snap``'s batches up to the one holding ``to_offset`` into ``dest``,
    or fewer, so that no transaction is left open (with the ``.txnindex`` entries
    of the markers kept)."""
    import crc32c

    root = os.path.realpath(snap.path)
    picked: list[tuple[SegmentMeta, bytes, BatchHeader]] = []
    for seg in snap.segments:
        if seg.base_offset > to_offset:
            break
        fd = open_segment(os.path.join(snap.path, seg.file), root)
        try:
            for view, batches in iter_chunks(fd, snap.meta.compression, verify=True):
                for pos, h in batches:
                    if h.base_offset > to_offset:
                        break
                    picked.append((seg, bytes(view[pos : pos + h.size]), h))
        finally:
            os.close(fd)
    aborted = snapshot_aborted(snap.path, root, snap.meta, snap.segments)
    while True:
        picked = picked[: stable_prefix([h for _, _, h in picked])]
        cut = picked[-1][2].next_offset if picked else snap.base_offset
        # nor inside an aborted transaction whose records compaction removed
        lower = min(
            (
                e.first_offset
                for e in (aborted or {}).values()
                if snap.base_offset <= e.first_offset < cut <= e.last_offset
            ),
            default=None,
        )
        if lower is None:
            break
        picked = [p for p in picked if p[2].next_offset <= lower]
    if not picked:
        raise SnapshotCliError(
            f"{snap.path}: a transaction is open at offset {snap.base_offset}"
        )
    segments = []
    for seg in dict.fromkeys(s for s, _, _ in picked):
        mine = [(data, h) for s, data, h in picked if s is seg]
        data = compress_file(b"".join(d for d, _ in mine), snap.meta.compression)
        name = f"{seg.base_offset:020d}.log{CODECS[snap.meta.compression]}"
        (dest / name).write_bytes(data)
        segments.append(
            SegmentMeta(
                file=name,
                base_offset=seg.base_offset,
                last_offset=mine[-1][1].last_offset,
                size=len(data),
                crc32c=crc32c.crc32c(data),
            )
        )
    last = picked[-1][2]
    txn_indexes: tuple[SegmentMeta, ...] | None = None
    if aborted is not None:
        kept = [e for o, e in sorted(aborted.items()) if o <= last.last_offset]
        found = encode_by_segment([s.base_offset for s in segments], kept)
        listed = []
        for name, data in found.items():
            (dest / name).write_bytes(data)
            listed.append(
                SegmentMeta(
                    file=name,
                    base_offset=int(name[:20]),
                    size=len(data),
                    crc32c=crc32c.crc32c(data),
                )
            )
        txn_indexes = tuple(listed)
    m = snap.meta
    return SnapshotMeta(
        version=m.version,
        last_offset=last.last_offset,
        last_term=last.partition_leader_epoch,
        ancestor_snapshot_id=m.ancestor_snapshot_id,
        compression=m.compression,
        size=sum(s.size or 0 for s in segments),
        snapshot_id=m.snapshot_id,
        topic=m.topic,
        topic_id=m.topic_id,
        partition=m.partition,
        partition_count=m.partition_count,
        base_offset=snap.base_offset,
        max_timestamp=max(h.max_timestamp for _, _, h in picked),
        created_at=m.created_at,
        segments=tuple(segments),
        topic_configs=m.topic_configs,
        group_offsets=None,
        last_stable_offset=None if aborted is None else last.next_offset,
        txn_indexes=txn_indexes,
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
    envvar="AILURUS_DATA_DIR",
    default=Path("./data"),
    show_default=True,
    help="The broker's data directory (env AILURUS_DATA_DIR).",
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


@snapshot.command()
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="AILURUS_DATA_DIR",
    default=Path("./data"),
    show_default=True,
    help="The broker's data directory (env AILURUS_DATA_DIR).",
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
@click.option(
    "--pin",
    "pins",
    multiple=True,
    metavar="SNAPSHOT_ID",
    help="Never remove this snapshot (repeatable); its ancestors stay too.",
)
@run_command
def prune(
    data_dir: Path,
    keep_last: int | None,
    older_than: str | None,
    dry_run: bool,
    pins: tuple[str, ...],
) -> None:
    """Remove old snapshots, never one that a retained snapshot depends on.

    Snapshots the broker is still ingesting (waiting, waiting-for-ancestor,
    applying) and those given with --pin are kept. Each removal renames the
    directory to a dot-name first, so a watcher never sees half a snapshot.

    \b
    Examples:
      ailurus snapshot prune --keep-last 3
      ailurus snapshot prune --older-than 7d --dry-run
    """
    if keep_last is None and older_than is None:
        raise SnapshotCliError("give --keep-last and/or --older-than")
    max_age = None if older_than is None else parse_duration(older_than)
    snapshots_dir = str(data_dir / "snapshots")
    busy = {
        rel
        for rel, entry in IngestState.load(str(data_dir)).entries.items()
        if entry.status in _INGESTING
    }
    found = collect_snapshots(snapshots_dir, os.path.realpath(snapshots_dir))
    infos = [
        dataclasses.replace(s, pinned=s.path in busy or s.snapshot_id in pins)
        for s in found
    ]
    plan = plan_retention(
        infos,
        RetentionPolicy(keep_last=keep_last, max_age=max_age, now=time.time()),
    )
    removed = []
    for s in sorted(plan.delete, key=order_key):
        if not dry_run:
            try:
                remove_snapshot(snapshots_dir, s.path)
            except StorageError as exc:
                raise SnapshotCliError(str(exc)) from None
        removed.append(str(data_dir / "snapshots" / s.path))
    if is_json():
        echo_json({"removed": removed, "dry_run": dry_run})
    else:
        for path in removed:
            click.echo(("would remove " if dry_run else "removed ") + path)
