"""Opening and closing the data dir: the log manager's lifecycle on the broker side.

Opening recovers every partition in a worker thread (the event loop keeps serving
the admin API meanwhile) and logs what recovery found; closing does the final fsync
and writes the clean-shutdown marker.
"""

from __future__ import annotations

import time

import anyio
import structlog

from broker.config import BrokerConfig
from broker.fdlimits import current_nofile, storage_limits
from broker.startup import EXIT_DATA_DIR, StartupError, data_dir_error
from storage.errors import StorageError
from storage.fileops import FileOps
from storage.lock import DataDirLock
from storage.log_manager import LogManager

# The storage events have always been the context's.
log = structlog.get_logger("broker.context")


async def open_log_manager(
    config: BrokerConfig, fileops: FileOps, dir_lock: DataDirLock
) -> LogManager:
    """Open (and recover) the data dir in a worker thread; log what recovery found.

    The manager owns ``dir_lock`` from then on; on failure the lock is released.

    Raises:
        StartupError: the data dir cannot be opened (a person must fix it).
    """
    started = time.perf_counter()
    limits = storage_limits(config, current_nofile())
    log.info(
        "storage_limits",
        max_partitions=limits.max_partitions,
        max_open_segment_files=limits.max_open_segment_files,
        max_partitions_per_request=config.max_partitions_per_request,
        auto_create_topics_per_request=config.auto_create_topics_per_request,
    )
    try:
        manager = await anyio.to_thread.run_sync(
            lambda: LogManager(
                str(config.data_dir),
                dict(config.topic_defaults),
                fileops=fileops,
                dir_lock=dir_lock,
                max_partitions=limits.max_partitions,
                max_open_segments=limits.max_open_segment_files,
            )
        )
    except PermissionError as e:
        dir_lock.release()
        raise data_dir_error(config.data_dir, e) from e
    except (StorageError, OSError) as e:
        dir_lock.release()
        raise StartupError(
            f"cannot open data dir {config.data_dir}: {e}", exit_code=EXIT_DATA_DIR
        ) from e
    _log_storage_open(manager, time.perf_counter() - started)
    return manager


async def close_log_manager(manager: LogManager) -> None:
    """Final fsync and clean close (writes the clean-shutdown marker)."""
    try:
        await anyio.to_thread.run_sync(lambda: manager.close(clean=True))
    except StorageError as e:
        log.error("storage_close_failed", error=str(e))
        return
    log.info("storage_closed", clean=True)


def _log_storage_open(manager: LogManager, seconds: float) -> None:
    """One INFO line for the start; a WARNING per partition only if data was repaired.

    A data dir used for the first time is a clean start. After an unclean stop every
    partition's tail is re-verified; partitions where that found nothing to cut are
    only counted, not listed.
    """
    repaired = 0
    for rec in manager.recovery:
        if not rec.truncated and not rec.removed_files:
            continue
        repaired += 1
        log.warning(
            "recovery",
            topic=rec.topic,
            partition=rec.partition,
            clean=rec.clean,
            truncated=rec.truncated,
            log_end_offset=rec.log_end_offset,
            scanned_segments=sum(1 for s in rec.segments if s.scanned),
            truncated_bytes=sum(s.truncated_bytes for s in rec.segments),
            reasons=[s.reason for s in rec.segments if s.reason],
            removed_segments=rec.removed_segments,
            removed_files=rec.removed_files,
        )
    for path in manager.removed:
        log.warning("recovery_removed", path=path)
    if manager.new:
        start = "new"
    elif manager.clean_start:
        start = "clean"
    else:
        start = "recovered"
    log.info(
        "storage_open",
        data_dir=manager.data_dir,
        start=start,
        clean_start=start != "recovered",
        topics=len(manager.topics()),
        partitions=len(manager.recovery),
        verified_partitions=sum(1 for rec in manager.recovery if not rec.clean),
        repaired_partitions=repaired,
        seconds=round(seconds, 3),
    )
