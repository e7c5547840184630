"""Snapshot operations the admin API offers: create, list, show; group offsets.

``create`` takes every requested partition's high watermark in one event-loop step
(the consistent point), then writes one snapshot directory per partition in worker
threads (storage.snapshot.create_snapshot). Each directory is recorded as
``created`` in the ingest state *before* it is renamed into place, so this broker's
watcher never ingests its own snapshots. Committed group offsets for the partitions
(``with_group_offsets``) are stored beside the segments and restored on ingest only
where the group has no newer commit (broker.snapshots.apply); a commit that breaks the file's rules (see
storage.snapshot_groups: a control character in the group id, a negative offset,
metadata over 4096 bytes) is left out with a warning, so the snapshot stays valid.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence

import anyio
import structlog

from broker.snapshots.service import SnapshotService
from storage.errors import StorageError
from storage.offset_store import OffsetStore
from storage.snapshot import CreateRequest, Status, create_snapshot, read_snapshot_meta
from storage.snapshot_groups import GroupOffset, entry_problem
from storage.snapshot_ingest import Entry
from storage.snapshot_meta import (
    CODECS,
    META_FILE,
    SnapshotError,
    SnapshotInvalid,
    SnapshotMeta,
)

log = structlog.get_logger("broker.snapshots")


class SnapshotRequestError(Exception):
    """A create request the broker refuses (unknown topic, bad option)."""


def latest_snapshot(
    snapshots_dir: str, dir_name: str, root: str, partition: int
) -> SnapshotMeta | None:
    """The newest snapshot (highest numeric id) of a partition in a topic directory."""
    parent = os.path.join(snapshots_dir, dir_name)
    best: tuple[int, SnapshotMeta] | None = None
    try:
        names = os.listdir(parent)
    except OSError:
        return None
    for name in names:
        if name.startswith(".") or not name.isdigit():
            continue
        path = os.path.join(parent, name)
        if not os.path.isfile(os.path.join(path, META_FILE)):
            continue
        try:
            meta = read_snapshot_meta(path, root)
        except SnapshotError:
            continue
        if meta.partition != partition or meta.snapshot_id is None:
            continue
        if best is None or int(name) > best[0]:
            best = (int(name), meta)
    return None if best is None else best[1]


async def create_snapshots(
    svc: SnapshotService,
    *,
    topic: str,
    partitions: Sequence[int] | None = None,
    incremental: bool = False,
    compression: str = "none",
    with_group_offsets: bool = False,
    given_offsets: Mapping[int, Sequence[GroupOffset]] | None = None,
) -> list[dict[str, object]]:
    """Snapshot partitions of ``topic`` at one consistent point; one result each.

    ``given_offsets``: the committed offsets to store (cluster mode: gathered from
    the replicated offsets store by broker.snapshots.routing) instead of the local
    store's.
    """
    logs = svc.topics.logs
    if compression not in CODECS:
        raise SnapshotRequestError(f"unknown compression {compression!r}")
    try:
        meta = logs.topic(topic)
    except StorageError as exc:
        raise SnapshotRequestError(f"unknown topic {topic!r}") from exc
    parts = list(range(meta.partition_count)) if not partitions else list(partitions)
    for p in parts:
        if not 0 <= p < meta.partition_count:
            raise SnapshotRequestError(f"{topic} has no partition {p}")
    plogs = {p: logs.partition(topic, p) for p in parts}
    states = {p: svc.topics.state(meta, plog) for p, plog in plogs.items()}
    dir_name = str(meta.topic_uuid)
    store = svc.groups.offsets if with_group_offsets else None
    results: list[dict[str, object]] = []
    for p in parts:
        if not states[p].is_local_leader:
            # cluster mode: only the leader's log is the partition's (the routing
            # in broker.snapshots.routing sends each partition to its leader)
            results.append(
                {
                    "topic": topic,
                    "partition": p,
                    "error": f"not-leader: broker {states[p].leader_id} leads "
                    f"{topic}/{p}",
                }
            )
            continue
        started = time.perf_counter()
        ancestor = None
        if incremental:
            ancestor = await anyio.to_thread.run_sync(
                latest_snapshot, svc.snapshots_dir, dir_name, svc.root, p
            )
        groups = None
        if with_group_offsets and given_offsets is not None:
            groups = list(given_offsets.get(p, []))
        elif with_group_offsets:
            groups = _group_offsets(store, topic, p)
        sid = svc.state.next_snapshot_id()
        rel = f"{dir_name}/{sid}"
        svc.state.set(
            rel, Entry(status=Status.CREATED, topic=topic, partition=p, snapshot_id=sid)
        )
        await svc.save()
        req = CreateRequest(
            snapshots_dir=svc.snapshots_dir,
            dir_name=dir_name,
            snapshot_id=sid,
            topic=topic,
            topic_id=dir_name,
            partition=p,
            partition_count=meta.partition_count,
            end_offset=states[p].high_watermark,
            compression=compression,
            ancestor=ancestor,
            topic_configs=dict(meta.config.overrides),
            group_offsets=groups,
            leader_epoch=states[p].leader_epoch,
        )
        try:
            path, smeta = await anyio.to_thread.run_sync(create_snapshot, plogs[p], req)
        except SnapshotInvalid as exc:
            svc.state.entries.pop(rel, None)
            await svc.save()
            results.append(
                {
                    "topic": topic,
                    "partition": p,
                    "skipped": exc.reason,
                    "reason": exc.detail,
                }
            )
            continue
        except StorageError as exc:
            svc.state.entries.pop(rel, None)
            await svc.save()
            log.error(
                "snapshot_create_failed", topic=topic, partition=p, error=str(exc)
            )
            results.append({"topic": topic, "partition": p, "error": str(exc)})
            continue
        entry = svc.state.entries[rel]
        entry.base_offset, entry.last_offset, entry.size = (
            smeta.base_offset,
            smeta.last_offset,
            smeta.size,
        )
        await svc.save()
        svc.metrics.created += 1
        seconds = round(time.perf_counter() - started, 6)
        log.info(
            "snapshot_status",
            snapshot=rel,
            status=str(Status.CREATED),
            topic=topic,
            partition=p,
            base_offset=smeta.base_offset,
            last_offset=smeta.last_offset,
            size=smeta.size,
            seconds=seconds,
        )
        results.append(
            {
                "topic": topic,
                "topic_id": dir_name,
                "partition": p,
                "snapshot_id": sid,
                "path": path,
                "base_offset": smeta.base_offset,
                "last_offset": smeta.last_offset,
                "last_term": smeta.last_term,
                "leader_epoch": smeta.leader_epoch,
                "size": smeta.size,
                "compression": smeta.compression,
                "ancestor_snapshot_id": smeta.ancestor_snapshot_id,
                "seconds": seconds,
            }
        )
    return results


def _group_offsets(
    store: OffsetStore | None, topic: str, partition: int
) -> list[GroupOffset]:
    if store is None:
        return []
    out = []
    for group in store.groups():
        found = store.fetch(group, [(topic, partition)]).get((topic, partition))
        if found is None:
            continue
        entry = GroupOffset(
            group=group,
            offset=found.offset,
            leader_epoch=found.leader_epoch,
            metadata=found.metadata,
            commit_ms=found.commit_ms,
        )
        # what ingest would refuse stays out (storage.snapshot_groups has the rules)
        problem = entry_problem(entry)
        if problem is not None:
            log.warning(
                "snapshot_group_offset_left_out",
                group=repr(group)[:200],
                topic=topic,
                partition=partition,
                reason=problem,
            )
            continue
        out.append(entry)
    return out


def describe(svc: SnapshotService, rel: str) -> dict[str, object] | None:
    """One snapshot's ingest entry and meta.json (None if unknown)."""
    entry = svc.state.entries.get(rel)
    path = os.path.join(svc.snapshots_dir, rel)
    if entry is None and not os.path.isdir(path):
        return None
    out: dict[str, object] = {"path": rel}
    if entry is not None:
        out |= entry.to_json()
        out.pop("fingerprint", None)
    try:
        out["meta"] = read_snapshot_meta(path, svc.root).to_json()
    except (SnapshotError, OSError) as exc:
        out["meta_error"] = str(exc)
    return out


def list_all(svc: SnapshotService) -> list[dict[str, object]]:
    """Every snapshot the broker knows of (the last scan forgot the vanished ones)."""
    out = []
    for rel, entry in sorted(svc.state.entries.items()):
        row: dict[str, object] = {"path": rel} | entry.to_json()
        row.pop("fingerprint", None)
        out.append(row)
    return out
