"""DescribeLogDirs (key 35), v0–4.

Behaviour: the broker has one log dir, ``<data-dir>/kafka``; it answers that dir
with every partition replica it holds (in cluster mode, the replicas assigned to
this broker, leader or follower; the empty local logs it keeps for the others are
not replicas), or only the named ones (named partitions this broker does not hold
are left out, as Kafka does). Per partition: its size (every segment file);
``offset_lag``, the high watermark minus the log end offset, never negative, as
Kafka computes it (0 on a leader), where a follower (cluster mode) takes the high
watermark its leader last reported to its replica fetcher, so the lag says how far
the replica is behind; and ``is_future_key`` false (no replica is ever moved
between dirs). v4 adds the volume's total and usable bytes.
Version notes: v1 same as v0; v2 flexible; v3 top-level error code; v4
total/usable bytes.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable

from broker.net.dispatch import handler
from broker.net.request import RequestContext
from protocol.error_codes import ErrorCode
from protocol.messages.describe_log_dirs import (
    DescribeLogDirsPartition,
    DescribeLogDirsRequest,
    DescribeLogDirsResponse,
    DescribeLogDirsResult,
    DescribeLogDirsTopic,
)
from storage.errors import StorageError
from storage.log_manager import KAFKA_DIR
from storage.partition_log import PartitionLog


def _replica_here(rctx: RequestContext, plog: PartitionLog) -> bool:
    """Whether this broker holds a replica of the partition: always on a single
    node; in cluster mode when it is among the partition's replicas (every broker
    keeps an empty local log for the partitions it does not host)."""
    cache = rctx.broker.topics.cache
    if cache is None:
        return True
    record = cache.partition(plog.topic, plog.partition)
    return record is not None and cache.node_id in record.replicas


def _wanted(
    rctx: RequestContext, request: DescribeLogDirsRequest
) -> Iterable[tuple[str, list[PartitionLog]]]:
    logs = rctx.broker.topics.logs
    if request.topics is None:
        for meta in logs.topics():
            yield (
                meta.name,
                [p for p in logs.partitions(meta.name) if _replica_here(rctx, p)],
            )
        return
    for t in request.topics:
        held = []
        for index in dict.fromkeys(t.partitions):
            try:
                plog = logs.partition(t.topic, index)
            except StorageError:
                continue  # not held here: left out
            if _replica_here(rctx, plog):
                held.append(plog)
        yield t.topic, held


@handler(api_key=35, name="describe_log_dirs", max_version=4)
def describe_log_dirs(
    rctx: RequestContext, request: DescribeLogDirsRequest
) -> DescribeLogDirsResponse:
    topics_svc = rctx.broker.topics
    replicas = rctx.broker.replicas
    logs = topics_svc.logs
    topics: list[DescribeLogDirsTopic] = []
    for name, plogs in _wanted(rctx, request):
        try:
            meta = logs.topic(name)
        except StorageError:
            continue
        partitions = []
        for plog in plogs:
            end = plog.log_end_offset
            state = topics_svc.state(meta, plog)
            high_watermark = state.high_watermark
            if replicas is not None and not state.is_local_leader:
                # a follower: behind the high watermark its leader last reported
                high_watermark = replicas.fetchers.leader_high_watermark(
                    plog.topic, plog.partition
                )
            partitions.append(
                DescribeLogDirsPartition(
                    partition_index=plog.partition,
                    partition_size=plog.size_bytes,
                    offset_lag=max(high_watermark - end, 0),
                    is_future_key=False,
                )
            )
        if partitions:
            topics.append(DescribeLogDirsTopic(name=name, partitions=tuple(partitions)))
    log_dir = os.path.abspath(os.path.join(logs.data_dir, KAFKA_DIR))
    try:
        usage = shutil.disk_usage(log_dir)
        total, usable = usage.total, usage.free
    except OSError:
        total = usable = -1
    return DescribeLogDirsResponse(
        error_code=ErrorCode.NONE,
        results=(
            DescribeLogDirsResult(
                error_code=ErrorCode.NONE,
                log_dir=log_dir,
                topics=tuple(topics),
                total_bytes=total,
                usable_bytes=usable,
            ),
        ),
    )
