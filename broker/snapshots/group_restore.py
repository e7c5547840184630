"""Committed offsets restored with a snapshot (``create --with-group-offsets``).

On a single node they go to the local offset store (:func:`restore_group_offsets`).
In a cluster they are committed through each group's coordinator, into the
replicated offsets store (``__consumer_offsets``, broker.groups.replicated): the
groups this broker coordinates directly, the others through the coordinator's
admin API (``POST /v1/snapshots/group-offsets``, answered by
:func:`restore_coordinated`). Either way a group's offset is restored only where
the group has no newer commit. In a cluster the restored offsets carry no leader
epoch (-1): the ingesting leader stamped its own epoch on the batches, so the
source log's epochs mean nothing here and a client must not validate against them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import anyio
import structlog

from broker.cluster.cache import MetadataCache
from broker.cluster.model import NO_LEADER
from broker.groups.service import GroupService, monotonic_ms
from broker.snapshots.peers import PeerError, peer_request
from protocol.error_codes import ErrorCode
from storage.offset_store import CommittedOffset
from storage.snapshot_groups import GroupOffset

log = structlog.get_logger("broker.snapshots")

RESTORE_PATH = "/v1/snapshots/group-offsets"


def _committed(
    topic: str, partition: int, o: GroupOffset, epoch: int
) -> CommittedOffset:
    return CommittedOffset(
        topic=topic,
        partition=partition,
        offset=o.offset,
        leader_epoch=epoch,
        metadata=o.metadata,
        commit_ms=o.commit_ms,
    )


def _restored(group: str, topic: str, partition: int, offset: int) -> None:
    log.info(
        "snapshot_group_offset_restored",
        group=group,
        topic=topic,
        partition=partition,
        offset=offset,
    )


async def restore_group_offsets(
    groups: GroupService, topic: str, partition: int, offsets: Sequence[GroupOffset]
) -> int:
    """Commit snapshot offsets where the group has no newer commit; how many were."""
    store = groups.offsets
    restored = 0
    for o in offsets:
        current = store.fetch(o.group, [(topic, partition)]).get((topic, partition))
        if current is not None and current.commit_ms >= o.commit_ms:
            continue
        store.commit(o.group, [_committed(topic, partition, o, o.leader_epoch)])
        groups.ensure_group(o.group, monotonic_ms())
        restored += 1
        _restored(o.group, topic, partition, o.offset)
    if restored:
        await anyio.to_thread.run_sync(store.sync)
    return restored


async def restore_coordinated(
    groups: GroupService, topic: str, partition: int, offsets: Sequence[GroupOffset]
) -> dict[str, str]:
    """Commit offsets of groups this broker coordinates into the replicated store
    where the group has no newer commit; each group's outcome (``restored``,
    ``newer-commit`` or the error code's name)."""
    replicated = groups.replicated
    out: dict[str, str] = {}
    for o in offsets:
        if replicated is None:
            out[o.group] = ErrorCode.NOT_COORDINATOR.name
            continue
        refusal = replicated.refusal(o.group)
        if refusal != ErrorCode.NONE:
            out[o.group] = refusal.name
            continue
        found = replicated.fetch(o.group, [(topic, partition)])
        current = found.get((topic, partition))
        if current is not None and current.commit_ms >= o.commit_ms:
            out[o.group] = "newer-commit"
            continue
        code = await replicated.commit(o.group, [_committed(topic, partition, o, -1)])
        if code != ErrorCode.NONE:
            out[o.group] = ErrorCode(code).name
            log.warning(
                "snapshot_group_offset_not_restored",
                group=o.group,
                topic=topic,
                partition=partition,
                error=ErrorCode(code).name,
            )
            continue
        groups.ensure_group(o.group, monotonic_ms())
        out[o.group] = "restored"
        _restored(o.group, topic, partition, o.offset)
    return out


async def restore_through_coordinators(
    groups: GroupService,
    cache: MetadataCache,
    topic: str,
    partition: int,
    offsets: Sequence[GroupOffset],
    *,
    token: str | None,
) -> dict[str, str]:
    """Restore each group's offset through its coordinator (cluster mode); each
    group's outcome."""
    by_node: defaultdict[int, list[GroupOffset]] = defaultdict(list)
    for o in offsets:
        by_node[cache.group_coordinator(o.group)].append(o)
    out: dict[str, str] = {}
    for node, some in by_node.items():
        info = None if node == NO_LEADER else cache.broker(node)
        if node == cache.node_id:
            out |= await restore_coordinated(groups, topic, partition, some)
            continue
        if info is None or info.admin is None:
            for o in some:
                out[o.group] = ErrorCode.COORDINATOR_NOT_AVAILABLE.name
            continue
        body = {
            "topic": topic,
            "partition": partition,
            "offsets": [o.to_json() for o in some],
        }
        try:
            answer = await peer_request(
                info.admin, "POST", RESTORE_PATH, body, token=token, timeout_s=60
            )
        except PeerError as exc:
            log.warning(
                "snapshot_group_offsets_not_restored", coordinator=node, error=str(exc)
            )
            for o in some:
                out[o.group] = f"coordinator {node}: {exc}"
            continue
        if isinstance(answer, dict):
            out |= {str(k): str(v) for k, v in answer.items()}
    return out
