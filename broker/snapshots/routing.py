"""``snapshot create`` in a cluster: each partition is cut by its leader.

The broker asked (``POST /v1/snapshots``, the CLI's ``snapshot create``) looks up
each requested partition's leader in the watched cache, creates the partitions it
leads itself (broker.snapshots.create) and asks every other leader, through that
broker's admin API (its address is in its registration), to create the ones it
leads (the same route with ``"local": true``, so the request is never routed on).
A partition is cut at its leader's high watermark when the leader's request runs:
the partitions of one request are not cut at one instant across brokers.

Every result row says which broker made the snapshot (``broker_id``) and where:
``path`` is in *that* broker's ``data/snapshots/``. The leader then sends each
snapshot it cut, verified, back to the asking broker (the upload of
broker.snapshots.handover with ``copy``), which keeps it as its own (``created``,
never ingested): ``gathered_path`` is the snapshot's directory in the asking
broker's ``data/snapshots/``, so one request's snapshots are all in one place
(``gather_error`` says why one is not). A partition without a leader, or whose
leader cannot be reached, gets an ``error`` row.

With ``with_group_offsets`` the committed offsets come from the replicated offsets
store (``__consumer_offsets``): every live broker is asked for the commits of the
groups it coordinates (``GET /v1/snapshots/group-offsets``) and the merged set is
handed to each leader with its request.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Mapping, Sequence

import anyio
import structlog

from broker.cluster.cache import MetadataCache
from broker.cluster.model import NO_LEADER
from broker.snapshots.create import SnapshotRequestError, create_snapshots
from broker.snapshots.handover import send_snapshot
from broker.snapshots.peers import PeerError, peer_request
from broker.snapshots.service import SnapshotService
from storage.errors import StorageError
from storage.snapshot_groups import GroupOffset
from storage.snapshot_meta import CODECS

log = structlog.get_logger("broker.snapshots")
_GATHER_ATTEMPTS = 3  # a copy sent back that failed is tried again

GROUP_OFFSETS_PATH = "/v1/snapshots/group-offsets"


async def create_routed(
    svc: SnapshotService,
    *,
    topic: str,
    partitions: Sequence[int] | None = None,
    incremental: bool = False,
    compression: str = "none",
    with_group_offsets: bool = False,
) -> list[dict[str, object]]:
    """Snapshot partitions of ``topic``, each by its leader; one result each."""
    cache = svc.topics.cache
    if cache is None:
        return await create_snapshots(
            svc,
            topic=topic,
            partitions=partitions,
            incremental=incremental,
            compression=compression,
            with_group_offsets=with_group_offsets,
        )
    if compression not in CODECS:
        raise SnapshotRequestError(f"unknown compression {compression!r}")
    record = cache.topic(topic)
    if record is None:
        raise SnapshotRequestError(f"unknown topic {topic!r}")
    parts = list(range(record.partitions)) if not partitions else list(partitions)
    for p in parts:
        if not 0 <= p < record.partitions:
            raise SnapshotRequestError(f"{topic} has no partition {p}")
    by_leader: defaultdict[int, list[int]] = defaultdict(list)
    results: list[dict[str, object]] = []
    for p in parts:
        state = cache.partition(topic, p)
        leader = NO_LEADER if state is None else state.leader
        if leader == NO_LEADER or cache.broker(leader) is None:
            results.append(
                {"topic": topic, "partition": p, "error": "no-leader", "broker_id": -1}
            )
            continue
        by_leader[leader].append(p)
    offsets = await gather_group_offsets(svc, topic) if with_group_offsets else None
    options: dict[str, object] = {
        "incremental": incremental,
        "compression": compression,
        "with_group_offsets": with_group_offsets,
    }

    async def one(leader: int, ps: list[int]) -> None:
        if leader == cache.node_id:
            try:
                rows = await create_snapshots(
                    svc,
                    topic=topic,
                    partitions=ps,
                    incremental=incremental,
                    compression=compression,
                    with_group_offsets=with_group_offsets,
                    given_offsets=offsets,
                )
            except SnapshotRequestError as exc:  # e.g. the local log not made yet
                rows = [{"topic": topic, "partition": p, "error": str(exc)} for p in ps]
            for row in rows:
                if "path" in row:
                    row["gathered_path"] = row["path"]
        else:
            rows = await _remote(svc, cache, leader, topic, ps, options, offsets)
            for row in rows:
                copied = row.pop("copy_path", None)
                if isinstance(copied, str):
                    row["gathered_path"] = os.path.join(svc.snapshots_dir, copied)
        for row in rows:
            row["broker_id"] = leader
        results.extend(rows)

    async with anyio.create_task_group() as tg:
        for leader, ps in by_leader.items():
            tg.start_soon(one, leader, ps)
    results.sort(key=lambda r: int(str(r.get("partition", 0))))
    return results


async def _remote(
    svc: SnapshotService,
    cache: MetadataCache,
    leader: int,
    topic: str,
    parts: list[int],
    options: Mapping[str, object],
    offsets: Mapping[int, list[GroupOffset]] | None,
) -> list[dict[str, object]]:
    info = cache.broker(leader)
    address = None if info is None else info.admin
    if address is None:
        return [
            {"topic": topic, "partition": p, "error": "leader has no admin API"}
            for p in parts
        ]
    body: dict[str, object] = {"topic": topic, "partitions": parts, "local": True}
    body |= options
    me = cache.broker(cache.node_id)
    if me is not None and me.admin is not None:
        body["gather_to"] = me.admin
    if offsets is not None:
        body["group_offsets"] = {
            str(p): [o.to_json() for o in offsets.get(p, [])] for p in parts
        }
    try:
        answer = await peer_request(
            address,
            "POST",
            "/v1/snapshots",
            body,
            token=svc.admin_token,
            timeout_s=600,
        )
    except PeerError as exc:
        log.warning(
            "snapshot_create_routed_failed", topic=topic, broker=leader, error=str(exc)
        )
        return [
            {"topic": topic, "partition": p, "error": f"broker {leader}: {exc}"}
            for p in parts
        ]
    if not isinstance(answer, list):
        return [{"topic": topic, "partition": p, "error": "bad answer"} for p in parts]
    return [dict(row) for row in answer if isinstance(row, dict)]


async def send_copies(
    svc: SnapshotService, rows: list[dict[str, object]], address: str
) -> None:
    """Send each snapshot of ``rows`` (just created here), verified, to the broker
    that asked for them; note ``copy_path`` (there) or ``gather_error``."""
    for row in rows:
        path = row.get("path")
        if not isinstance(path, str):
            continue
        for attempt in range(1, _GATHER_ATTEMPTS + 1):
            try:
                snap = await svc.verify(path, settle_s=0.0)
                row["copy_path"] = await send_snapshot(
                    snap,
                    topic_dir=os.path.basename(os.path.dirname(path)),
                    name=os.path.basename(path),
                    from_broker=svc.node_id,
                    address=address,
                    token=svc.admin_token,
                    copy=True,
                )
                break
            except (PeerError, StorageError, OSError) as exc:
                log.warning(
                    "snapshot_gather_failed",
                    snapshot=path,
                    attempt=attempt,
                    error=str(exc),
                )
                if attempt == _GATHER_ATTEMPTS:
                    row["gather_error"] = str(exc)
                else:
                    await anyio.sleep(0.5 * attempt)  # a peer busy or restarting


async def gather_group_offsets(
    svc: SnapshotService, topic: str
) -> dict[int, list[GroupOffset]]:
    """Every live broker's committed offsets of ``topic`` (each has those of the
    groups it coordinates), by partition."""
    cache = svc.topics.cache
    assert cache is not None
    found: defaultdict[int, dict[str, GroupOffset]] = defaultdict(dict)

    def merge(rows: object) -> None:
        if not isinstance(rows, list):
            return
        for row in rows:
            if not isinstance(row, dict):
                continue
            try:
                p = int(row["partition"])
                o = GroupOffset.from_json(row)
            except (KeyError, TypeError, ValueError):
                continue
            best = found[p].get(o.group)
            if best is None or o.commit_ms > best.commit_ms:
                found[p][o.group] = o

    async def ask(address: str) -> None:
        try:
            merge(
                await peer_request(
                    address,
                    "GET",
                    f"{GROUP_OFFSETS_PATH}?topic={topic}",
                    token=svc.admin_token,
                    timeout_s=30,
                )
            )
        except PeerError as exc:
            log.warning("snapshot_group_offsets_unreachable", error=str(exc))

    merge(local_group_offsets(svc, topic))
    async with anyio.create_task_group() as tg:
        for b in cache.brokers():
            if b.node_id != cache.node_id and b.admin is not None:
                tg.start_soon(ask, b.admin)
    return {p: list(groups.values()) for p, groups in found.items()}


def local_group_offsets(svc: SnapshotService, topic: str) -> list[dict[str, object]]:
    """The committed offsets of ``topic`` in the groups this broker coordinates
    (cluster mode: the replicated store), one row per group and partition."""
    replicated = svc.groups.replicated
    if replicated is None:
        return []
    rows: list[dict[str, object]] = []
    for group in replicated.groups():
        for (t, p), c in replicated.fetch(group).items():
            if t != topic:
                continue
            rows.append(
                {"partition": p}
                | GroupOffset(
                    group=group,
                    offset=c.offset,
                    leader_epoch=c.leader_epoch,
                    metadata=c.metadata,
                    commit_ms=c.commit_ms,
                ).to_json()
            )
    return rows
