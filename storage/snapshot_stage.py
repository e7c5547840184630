"""Build a snapshot's batches into segments beside the log, for adoption in one step.

A large ingest is not appended to the live log batch by batch: a worker process
(``broker/snapshots/worker_main.py``) builds the batches the plan appends into a
partition log of their own, in a staging directory on the data dir's file system::

    <data_dir>/ailurus/ingest-staging/<name>/00000000000000004096.log / .index / .timeindex
                                             .txnindex (the snapshot's aborted
                                             transactions in that segment)
                                             leader-epoch-checkpoint, checkpoint.json

and :meth:`storage.partition_log.PartitionLog.adopt` then renames those segments onto
the end of the live log. The copy, its CRC checks and its fsync happen in another
process (no share of the broker's GIL, no journal commits forced under the live
log's appends); the live log only takes renames.

In cluster mode the job carries the partition's current ``leader_epoch``: every
staged batch is stamped with it (:func:`stamp_leader_epoch`; the field is outside
the batch CRC), as a Kafka leader stamps what it appends, so the leader-epoch cache
stays monotonic and followers truncate against it like against produced data.

:class:`StageJob` is what the worker is told, as JSON on its stdin. Crash safety:
staging directories are scratch, removed at start-up (:func:`clear_staging`); a crash
part-way through an adoption leaves the live log with a prefix of the staged
segments, which the next scan completes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from protocol.records import iter_batches, patch_leader_epoch
from storage.config import TopicConfig
from storage.fileops import DEFAULT_FILEOPS, FileOps
from storage.partition_log import PartitionLog
from storage.snapshot import Plan, Snapshot, segment_chunks
from storage.snapshot_meta import SegmentMeta
from storage.txn_index import AbortedTxn

STAGING_DIR: Final = os.path.join("ailurus", "ingest-staging")


@dataclass(frozen=True, slots=True, kw_only=True)
class StageJob:
    """Build ``snapshot_path``'s batches from ``from_offset`` into ``staging_dir``."""

    snapshot_path: str
    root: str  # real path of the data dir (snapshot files must stay inside it)
    compression: str
    segments: tuple[tuple[str, int, int | None], ...]  # (file, base, last offset)
    from_offset: int
    staging_dir: str
    topic: str
    partition: int
    config: TopicConfig
    bytes_per_s: int = 0  # 0: as fast as the disk goes
    leader_epoch: int | None = None  # stamp every batch with it (cluster mode)
    # the snapshot's aborted transactions (producer id, first, marker offset, LSO)
    # indexed as they are; None: an older snapshot (derived from the markers)
    aborted: tuple[tuple[int, int, int, int], ...] | None = None

    @classmethod
    def for_plan(
        cls,
        snap: Snapshot,
        plan: Plan,
        *,
        root: str,
        staging_dir: str,
        topic: str,
        config: TopicConfig,
        bytes_per_s: int = 0,
        leader_epoch: int | None = None,
        aborted: dict[int, AbortedTxn] | None = None,
    ) -> StageJob:
        """The job that stages what ``plan`` appends of ``snap`` (``aborted``:
        :func:`storage.snapshot.aborted_of`)."""
        return cls(
            snapshot_path=snap.path,
            root=root,
            compression=snap.meta.compression,
            segments=tuple(
                (s.file, s.base_offset, s.last_offset) for s in snap.segments
            ),
            from_offset=plan.from_offset,
            staging_dir=staging_dir,
            topic=topic,
            partition=snap.meta.partition,
            config=config,
            bytes_per_s=bytes_per_s,
            leader_epoch=leader_epoch,
            aborted=None
            if aborted is None
            else tuple(
                (e.producer_id, e.first_offset, e.last_offset, e.last_stable_offset)
                for _, e in sorted(aborted.items())
                if e.last_offset >= plan.from_offset
            ),
        )

    def to_json(self) -> bytes:
        """The worker's stdin."""
        body = dataclasses.asdict(self)
        return json.dumps(body).encode()

    @classmethod
    def from_json(cls, data: bytes) -> StageJob:
        """Parse what :meth:`to_json` wrote (raises ValueError, KeyError, TypeError)."""
        body = json.loads(data)
        return cls(
            snapshot_path=str(body["snapshot_path"]),
            root=str(body["root"]),
            compression=str(body["compression"]),
            segments=tuple(
                (str(f), int(b), None if last is None else int(last))
                for f, b, last in body["segments"]
            ),
            from_offset=int(body["from_offset"]),
            staging_dir=str(body["staging_dir"]),
            topic=str(body["topic"]),
            partition=int(body["partition"]),
            config=TopicConfig(**body["config"]),
            bytes_per_s=int(body["bytes_per_s"]),
            leader_epoch=None
            if body.get("leader_epoch") is None
            else int(body["leader_epoch"]),
            aborted=None
            if body.get("aborted") is None
            else tuple(
                (int(p), int(f), int(last), int(lso))
                for p, f, last, lso in body["aborted"]
            ),
        )

    def aborted_entries(self) -> dict[int, AbortedTxn] | None:
        """:attr:`aborted` by marker offset, as ``append_verbatim`` takes them."""
        if self.aborted is None:
            return None
        return {
            last: AbortedTxn(
                producer_id=pid,
                first_offset=first,
                last_offset=last,
                last_stable_offset=lso,
            )
            for pid, first, last, lso in self.aborted
        }


def stage_snapshot(job: StageJob, *, fileops: FileOps = DEFAULT_FILEOPS) -> int:
    """Build the job's batches into a log in ``job.staging_dir``; bytes staged.

    The staging directory is made afresh; every batch's CRC and offsets are checked
    again as it is appended (the files may have changed since they were validated);
    everything is fsynced before this returns.

    Raises:
        StorageError: a batch does not check out or does not follow on.
        SnapshotInvalid: a segment file is damaged.
        OSError: reading or writing failed.
    """
    if os.path.lexists(job.staging_dir):
        shutil.rmtree(job.staging_dir)
    log = PartitionLog.open(
        job.staging_dir,
        topic=job.topic,
        partition=job.partition,
        config=job.config,
        fileops=fileops,
        clean=True,
    )
    written = 0
    aborted = job.aborted_entries()
    try:
        log.reset_start(job.from_offset)
        throttle = _throttle(job.bytes_per_s)
        segments = [
            SegmentMeta(file=f, base_offset=b, last_offset=last)
            for f, b, last in job.segments
        ]
        for view, batches in segment_chunks(
            job.snapshot_path,
            job.compression,
            segments,
            job.from_offset,
            job.root,
            verify=False,  # append_verbatim checks every batch as it writes
        ):
            if not batches:
                continue
            if job.leader_epoch is not None:
                log.append_verbatim(
                    stamp_leader_epoch(view, job.leader_epoch), aborted=aborted
                )
            else:
                log.append_verbatim(view, aborted=aborted)
            log.start_writeback()  # little left for the final fsync: no long stall
            written += len(view)
            throttle(len(view))
    finally:
        log.close()  # fsyncs the segments, writes indexes, epochs and checkpoint
    _fsync_tree(fileops, job.staging_dir)
    return written


def stamp_leader_epoch(batches: bytes | memoryview, epoch: int) -> bytearray:
    """A copy of whole ``batches`` with every batch's partition leader epoch set to
    ``epoch`` (not covered by the CRC; Kafka's leader does the same on append)."""
    out = bytearray(batches)
    for pos, _ in iter_batches(out):
        patch_leader_epoch(out, epoch, pos)
    return out


def clear_staging(data_dir: str) -> None:
    """Remove every staging directory (start-up: nothing is mid-ingest then)."""
    shutil.rmtree(os.path.join(data_dir, STAGING_DIR), ignore_errors=True)


def _fsync_tree(fileops: FileOps, directory: str) -> None:
    for name in os.listdir(directory):
        fd = fileops.open(os.path.join(directory, name), os.O_RDONLY)
        try:
            fileops.fsync(fd)
        finally:
            fileops.close(fd)
    fileops.fsync_dir(directory)


def _throttle(rate: int) -> Callable[[int], None]:
    started = time.monotonic()
    done = 0

    def throttle(n: int) -> None:
        nonlocal done
        done += n
        if rate > 0:
            ahead = done / rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)

    return throttle
