"""OffsetFetch (key 9), v0–9.

Behaviour: answers a group's committed offsets for the listed partitions (offset -1,
empty metadata and no error where nothing is committed) or, when topics is null
(v2+), every partition the group committed. Unknown groups answer like groups
without commits. A group another broker coordinates (cluster mode) gets
NOT_COORDINATOR (top level from v2, per group from v8, per partition before v2).
require_stable (v7+): a partition with a pending transactional offset
(TxnOffsetCommit whose transaction has not ended) answers offset -1 and
UNSTABLE_OFFSET_COMMIT (KIP-447), so the consumer retries; without it the last
committed offset is answered (pending ones are never shown).
Version notes: v2 null topics = all and a top-level error code; v3 throttle time; v5
committed leader epoch; v6 flexible; v8 several groups per request; v9 member
id/epoch (KIP-848, ignored); v10 (topic ids) is not offered.
"""

from __future__ import annotations

from itertools import groupby

from broker.groups.offsets import FetchedOffset
from broker.net.dispatch import handler
from broker.net.request import RequestContext
from protocol.error_codes import ErrorCode
from protocol.messages.offset_fetch import (
    OffsetFetchRequest,
    OffsetFetchResponse,
    OffsetFetchResponseGroup,
    OffsetFetchResponsePartition,
    OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
)


def _rows(
    rctx: RequestContext,
    group_id: str,
    wanted: list[tuple[str, int]] | None,
    require_stable: bool,
) -> tuple[ErrorCode, list[FetchedOffset]]:
    refused = rctx.group_refusal(group_id)
    if refused != ErrorCode.NONE:
        rows = [
            FetchedOffset(
                topic=t,
                partition=p,
                offset=-1,
                leader_epoch=-1,
                metadata="",
                error=refused,
            )
            for t, p in wanted or ()
        ]
        return refused, rows
    return ErrorCode.NONE, rctx.broker.groups.fetch_offsets(
        group_id, wanted, require_stable=require_stable
    )


def _by_topic(rows: list[FetchedOffset]) -> list[tuple[str, list[FetchedOffset]]]:
    order: dict[str, list[FetchedOffset]] = {}
    for topic, items in groupby(rows, key=lambda r: r.topic):
        order.setdefault(topic, []).extend(items)
    return list(order.items())


@handler(api_key=9, name="offset_fetch", max_version=9)
def offset_fetch(
    rctx: RequestContext, request: OffsetFetchRequest
) -> OffsetFetchResponse:
    if rctx.api_version >= 8:
        groups = []
        for g in request.groups:
            wanted = (
                None
                if g.topics is None
                else [(t.name, p) for t in g.topics for p in t.partition_indexes]
            )
            code, rows = _rows(rctx, g.group_id, wanted, request.require_stable)
            groups.append(
                OffsetFetchResponseGroup(
                    group_id=g.group_id,
                    error_code=code,
                    topics=tuple(
                        OffsetFetchResponseTopics(
                            name=topic,
                            partitions=tuple(
                                OffsetFetchResponsePartitions(
                                    partition_index=r.partition,
                                    committed_offset=r.offset,
                                    committed_leader_epoch=r.leader_epoch,
                                    metadata=r.metadata,
                                    error_code=r.error,
                                )
                                for r in items
                            ),
                        )
                        for topic, items in _by_topic(rows)
                    ),
                )
            )
        return OffsetFetchResponse(groups=tuple(groups))
    wanted = (
        None
        if request.topics is None
        else [(t.name, p) for t in request.topics for p in t.partition_indexes]
    )
    stable = rctx.api_version >= 7 and request.require_stable
    code, rows = _rows(rctx, request.group_id, wanted, stable)
    return OffsetFetchResponse(
        error_code=code,
        topics=tuple(
            OffsetFetchResponseTopic(
                name=topic,
                partitions=tuple(
                    OffsetFetchResponsePartition(
                        partition_index=r.partition,
                        committed_offset=r.offset,
                        committed_leader_epoch=r.leader_epoch,
                        metadata=r.metadata,
                        error_code=r.error if code == ErrorCode.NONE else code,
                    )
                    for r in items
                ),
            )
            for topic, items in _by_topic(rows)
        ),
    )
