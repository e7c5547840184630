"""Hot ingest of partition snapshots: the watcher task and its metrics.

Task tree (in the server's serving task group)::

    snapshot watcher
    ├── inotify reader   (data/snapshots and its subtrees; any event -> rescan)
    ├── periodic rescan  (every snapshot.scan.interval.ms, default 5000)
    └── scan loop        one scan at a time; the first one runs at start-up

A scan lists candidates (storage.snapshot_ingest.discover), skips those whose final
status was decided on the same fingerprint, checks the rest for completeness (names,
meta.json, sizes: cheap, in a worker thread; never trusting events), validates the
complete ones (every batch's CRC, dense offsets, checksums) in a worker process,
resolves their topic (creating it with the snapshot's name, partition count and id
when missing), and applies ready snapshots partition by partition in ancestor /
last_offset order. Applying holds the partition's append gate (broker.snapshots.gate),
so produce requests to that partition queue behind the ingest. A small remainder is
appended on the loop thread; a large one is staged by a worker process into segments
beside the log (throttled by snapshot.ingest.bytes.per.sec, 0 = unlimited) and
adopted by rename (PartitionLog.adopt). The worker processes
(broker.snapshots.worker_main) run at nice 19 and share no GIL with the event loop,
so other partitions' produce and fetch latency stays low during an ingest. Long
polls on the partition are woken at once. Every status change is a
``snapshot_status`` event and is persisted in
``<data_dir>/ailurus/snapshot-ingest.json``.

Settings are broker settings (broker.config): ``--set snapshot.scan.interval.ms=``,
``snapshot.settle.ms`` (files untouched this long count as settled, default 2000) and
``snapshot.ingest.bytes.per.sec``, or ``AILURUS_SNAPSHOT_SCAN_INTERVAL_MS`` etc.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, NamedTuple

import anyio
import anyio.abc
import structlog

from broker.config import BrokerConfig
from broker.disk.guard import DiskGuard
from broker.durability.acks import Durability
from broker.groups.service import GroupService
from broker.metrics import Histogram
from broker.producers.service import ProducerService
from broker.snapshots.gate import AppendGate
from broker.snapshots.inotify import Inotify
from broker.topics.service import TopicService
from storage.errors import PartitionLimit, StorageError, TopicExists, UnknownTopic
from storage.snapshot import (
    Plan,
    Snapshot,
    Status,
    apply_order,
    plan_apply,
    precheck_snapshot,
    read_batches,
    snapshot_from_json,
)
from storage.snapshot_groups import read_group_offsets
from storage.snapshot_ingest import (
    FINAL,
    SNAPSHOTS_DIR,
    Candidate,
    Entry,
    IngestState,
    discover,
    fingerprint,
    watch_dirs,
)
from storage.snapshot_meta import (
    UUID_RE,
    SnapshotError,
    SnapshotIncomplete,
    SnapshotInvalid,
)
from storage.snapshot_stage import STAGING_DIR, StageJob, clear_staging

if TYPE_CHECKING:
    from storage.log_manager import TopicMeta
    from storage.partition_log import PartitionLog

log = structlog.get_logger("broker.snapshots")

_INLINE_BYTES = 8 * 1024 * 1024  # appended on the loop thread in one call below this
_PLAN_ATTEMPTS = 5
# The worker runs as ``python -m broker...``: from the directory that holds broker/.
_PROJECT_ROOT: Final = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotSettings:
    """Watcher settings, taken from the broker config."""

    scan_interval_s: float = 5.0
    settle_s: float = 2.0
    ingest_bytes_per_s: int = 0  # 0: unlimited

    @classmethod
    def from_config(cls, config: BrokerConfig) -> SnapshotSettings:
        """``snapshot.scan.interval.ms``, ``snapshot.settle.ms``, ``...bytes.per.sec``."""
        return cls(
            scan_interval_s=config.snapshot_scan_interval_ms / 1000,
            settle_s=config.snapshot_settle_ms / 1000,
            ingest_bytes_per_s=config.snapshot_ingest_bytes_per_sec,
        )


# -- metrics -------------------------------------------------------------------------


@dataclass(slots=True)
class SnapshotMetrics:
    """Counters of the ingest, rendered into ``GET /metrics``."""

    ingested: int = 0
    rejected: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    bytes_ingested: int = 0
    created: int = 0
    scans: int = 0
    inspections: int = 0  # snapshot directories read and judged (cached verdicts aside)
    duration: Histogram = field(default_factory=Histogram)

    def lines(self) -> Iterable[str]:
        """Prometheus text lines."""
        yield "# HELP ailurus_snapshots_ingested_total Snapshots applied."
        yield "# TYPE ailurus_snapshots_ingested_total counter"
        yield f"ailurus_snapshots_ingested_total {self.ingested}"
        yield "# HELP ailurus_snapshots_rejected_total Snapshots rejected, by reason."
        yield "# TYPE ailurus_snapshots_rejected_total counter"
        for reason, n in sorted(self.rejected.items()):
            yield f'ailurus_snapshots_rejected_total{{reason="{reason}"}} {n}'
        yield "# HELP ailurus_snapshot_ingested_bytes_total Bytes appended by ingest."
        yield "# TYPE ailurus_snapshot_ingested_bytes_total counter"
        yield f"ailurus_snapshot_ingested_bytes_total {self.bytes_ingested}"
        yield "# HELP ailurus_snapshots_created_total Snapshot directories created."
        yield "# TYPE ailurus_snapshots_created_total counter"
        yield f"ailurus_snapshots_created_total {self.created}"
        yield "# HELP ailurus_snapshot_scans_total Passes over data/snapshots."
        yield "# TYPE ailurus_snapshot_scans_total counter"
        yield f"ailurus_snapshot_scans_total {self.scans}"
        yield (
            "# HELP ailurus_snapshot_inspections_total Snapshot directories read and"
            " judged (a verdict cached for unchanged files is not counted)."
        )
        yield "# TYPE ailurus_snapshot_inspections_total counter"
        yield f"ailurus_snapshot_inspections_total {self.inspections}"
        yield "# HELP ailurus_snapshot_ingest_seconds Time to apply one snapshot."
        yield "# TYPE ailurus_snapshot_ingest_seconds histogram"
        yield from self.duration.render("ailurus_snapshot_ingest_seconds", "")


# -- the service -----------------------------------------------------------------------


class SnapshotService:
    """The watcher and everything the admin API asks of snapshots for one broker."""

    def __init__(
        self,
        config: BrokerConfig,
        topics: TopicService,
        durability: Durability,
        gate: AppendGate,
        producers: ProducerService,
        groups: GroupService,
        disk: DiskGuard | None,
        settings: SnapshotSettings | None = None,
    ) -> None:
        self.topics = topics
        self.durability = durability
        self.gate = gate
        self.producers = producers
        self.groups = groups
        self.disk = disk
        self.settings = settings or SnapshotSettings.from_config(config)
        self.data_dir = os.path.abspath(config.data_dir)
        self.root = os.path.realpath(self.data_dir)
        self.snapshots_dir = os.path.join(self.data_dir, SNAPSHOTS_DIR)
        self.state = IngestState.load(self.data_dir)
        self.metrics = SnapshotMetrics()
        self._ready: dict[
            str, tuple[str, Snapshot]
        ] = {}  # rel -> (fingerprint, snapshot)
        self._wake = anyio.Event()
        self._save_lock = anyio.Lock()
        self._scan_lock = anyio.Lock()
        self.scans = 0

    # -- task ------------------------------------------------------------------------
    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Scan at start-up, then on every inotify event and periodically."""
        os.makedirs(self.snapshots_dir, exist_ok=True)
        # left by an ingest a crash interrupted; its snapshot is planned again
        await anyio.to_thread.run_sync(clear_staging, self.data_dir)
        inotify = Inotify.open()
        try:
            async with anyio.create_task_group() as tg:
                if inotify is not None:
                    tg.start_soon(self._inotify_loop, inotify)
                tg.start_soon(self._timer_loop)
                task_status.started()
                while True:
                    if inotify is not None:
                        inotify.watch(
                            await anyio.to_thread.run_sync(
                                lambda: list(watch_dirs(self.snapshots_dir))
                            )
                        )
                    await self.scan()
                    await self._wake.wait()
                    self._wake = anyio.Event()
                    await anyio.sleep(0.05)  # coalesce a burst of events
        finally:
            if inotify is not None:
                inotify.close()

    def wake(self) -> None:
        """Ask for a rescan."""
        self._wake.set()

    async def _inotify_loop(self, inotify: Inotify) -> None:
        while True:
            await anyio.wait_readable(inotify.fd)
            if inotify.drain():
                self.wake()

    async def _timer_loop(self) -> None:
        while True:
            await anyio.sleep(self.settings.scan_interval_s)
            self.wake()

    # -- scanning ---------------------------------------------------------------------
    async def scan(self) -> None:
        """One full pass over data/snapshots (serialised with other scans)."""
        async with self._scan_lock:
            await self._scan()
            self.scans += 1
            self.metrics.scans += 1

    async def _scan(self) -> None:
        found = await anyio.to_thread.run_sync(self._discover)
        changed = self._forget_vanished({c.rel for c, _ in found})
        ready: list[tuple[Candidate, str, Snapshot]] = []
        for cand, fp in found:
            entry = self.state.entries.get(cand.rel)
            if entry is not None and (
                entry.status is Status.CREATED
                or (entry.status in FINAL and entry.fingerprint == fp)
            ):
                continue
            if cand.rejected is not None:
                changed |= self._set(
                    cand.rel,
                    Entry(status=Status.INVALID, reason=cand.rejected, fingerprint=fp),
                )
                continue
            cached = self._ready.get(cand.rel)
            if cached is not None and cached[0] == fp:
                ready.append((cand, fp, cached[1]))
                continue
            try:
                snap = await self._inspect(cand.path)
            except SnapshotIncomplete as exc:
                changed |= self._set(
                    cand.rel,
                    Entry(status=Status.WAITING, reason=str(exc), fingerprint=fp),
                )
                continue
            except SnapshotInvalid as exc:
                changed |= self._set(
                    cand.rel,
                    Entry(status=Status.INVALID, reason=str(exc), fingerprint=fp),
                )
                continue
            except (StorageError, OSError) as exc:
                changed |= self._set(
                    cand.rel,
                    Entry(
                        status=Status.WAITING,
                        reason=f"unreadable: {exc}",
                        fingerprint=fp,
                    ),
                )
                continue
            self._ready[cand.rel] = (fp, snap)
            ready.append((cand, fp, snap))
        by_partition: defaultdict[tuple[str, int], list[tuple[str, str, Snapshot]]] = (
            defaultdict(list)
        )
        for cand, fp, snap in ready:
            target = await self._resolve(cand, snap)
            if isinstance(target, Entry):
                target.fingerprint = fp
                changed |= self._set(cand.rel, target)
                continue
            by_partition[(target.name, snap.meta.partition)].append(
                (cand.rel, fp, snap)
            )
        for (topic, partition), snaps in by_partition.items():
            changed |= await self._apply_partition(topic, partition, snaps)
        if changed:
            await self.save()

    def _forget_vanished(self, seen: set[str]) -> bool:
        """Drop entries of snapshot directories that are gone (a snapshot being
        created here is kept for a minute: it appears only when renamed)."""
        now = time.time_ns() // 1_000_000
        gone = [
            rel
            for rel, e in self.state.entries.items()
            if rel not in seen
            and not (e.status is Status.CREATED and now - e.updated_at < 60_000)
            and not (
                e.status is Status.CREATED
                and os.path.isdir(os.path.join(self.snapshots_dir, rel))
            )
        ]
        for rel in gone:
            del self.state.entries[rel]
            self._ready.pop(rel, None)
            log.info("snapshot_status", snapshot=rel, status="removed", reason="")
        return bool(gone)

    def _discover(self) -> list[tuple[Candidate, str]]:
        return [
            (c, "rejected" if c.rejected else fingerprint(c.path))
            for c in discover(self.snapshots_dir, self.root)
        ]

    async def _inspect(self, path: str) -> Snapshot:
        """Sizes here (cheap, fails fast on a copy in progress), then the full
        validation in a worker process."""
        settle_s = self.settings.settle_s
        self.metrics.inspections += 1
        await anyio.to_thread.run_sync(
            functools.partial(precheck_snapshot, path, self.root, settle_s=settle_s)
        )
        return await run_inspect_worker(path, self.root, settle_s)

    async def _resolve(self, cand: Candidate, snap: Snapshot) -> TopicMeta | Entry:
        """The snapshot's topic, created when missing; an Entry when it cannot be."""
        meta = snap.meta
        logs = self.topics.logs
        ids = [meta.topic_id] if meta.topic_id else []
        names = [meta.topic] if meta.topic else []
        if UUID_RE.match(cand.topic_dir):
            ids.append(cand.topic_dir.lower())
        else:
            names.append(cand.topic_dir)
        topic: TopicMeta | None = None
        for tid in ids:
            with contextlib.suppress(UnknownTopic):
                topic = logs.topic_by_id(uuid.UUID(tid))
                break
        if topic is None:
            for name in names:
                with contextlib.suppress(UnknownTopic):
                    topic = logs.topic(name)
                    break
        if topic is None:
            if not names:
                return Entry(
                    status=Status.WAITING,
                    reason="unknown-topic: no topic with that id and no name",
                )
            count = max(meta.partition_count or 1, meta.partition + 1)
            try:
                topic = await self.topics.create_topic(
                    names[0],
                    count,
                    dict(meta.topic_configs),
                    topic_id=uuid.UUID(ids[0]) if ids else None,
                    reason="snapshot",
                )
            except TopicExists:
                return Entry(status=Status.WAITING, reason="topic is being created")
            except PartitionLimit as exc:
                # Refused before any file was made; the snapshot stays as it is.
                return Entry(status=Status.INVALID, reason=f"partition-limit: {exc}")
            except StorageError as exc:
                return Entry(
                    status=Status.INVALID, reason=f"topic-create-failed: {exc}"
                )
        if meta.partition >= topic.partition_count:
            return Entry(
                status=Status.WAITING,
                reason=f"unknown-partition: {topic.name} has {topic.partition_count} partitions",
            )
        return topic

    async def _apply_partition(
        self, topic: str, partition: int, snaps: list[tuple[str, str, Snapshot]]
    ) -> bool:
        plog = self.topics.logs.partition(topic, partition)
        fps = {rel: fp for rel, fp, _ in snaps}
        rel_of = {id(s): rel for rel, _, s in snaps}
        pending = apply_order([s for _, _, s in snaps])
        changed = False
        async with self.gate.hold(plog):
            progress = True
            while progress and pending:
                progress = False
                for snap in list(pending):
                    rel = rel_of[id(snap)]
                    started = time.perf_counter()
                    try:
                        plan, reason, written = await self._apply_one(plog, snap)
                    except (StorageError, OSError) as exc:
                        entry = self._entry(
                            Status.WAITING,
                            f"apply failed: {exc}",
                            fps[rel],
                            snap,
                            topic,
                        )
                        changed |= self._set(rel, entry)
                        log.error("snapshot_apply_failed", snapshot=rel, error=str(exc))
                        pending.remove(snap)
                        continue
                    if plan is Status.WAITING_FOR_ANCESTOR:
                        changed |= self._set(
                            rel, self._entry(plan, reason, fps[rel], snap, topic)
                        )
                        continue
                    pending.remove(snap)
                    progress = True
                    entry = self._entry(plan, reason, fps[rel], snap, topic)
                    if plan is Status.APPLIED:
                        entry.bytes_applied = written
                        self.metrics.ingested += 1
                        self.metrics.bytes_ingested += written
                        self.metrics.duration.observe(time.perf_counter() - started)
                        self._after_apply(plog, topic)
                        await self._restore_group_offsets(snap, topic, partition)
                    self._ready.pop(rel, None)
                    changed |= self._set(rel, entry)
        return changed

    async def _apply_one(
        self, plog: PartitionLog, snap: Snapshot
    ) -> tuple[Status, str, int]:
        """Plan, then append. A small remainder is read in a worker thread and
        appended on the event-loop thread, where produce appends too, after checking
        the log did not move since the plan; a large one is appended chunk by chunk
        in a worker thread while the append gate holds producers back."""
        for _ in range(_PLAN_ATTEMPTS):
            plan = await anyio.to_thread.run_sync(plan_apply, snap, plog, self.root)
            if plan.status is not Status.APPLYING:
                return plan.status, plan.reason, 0
            data = await anyio.to_thread.run_sync(
                read_batches, snap, plan.from_offset, self.root, _INLINE_BYTES
            )
            if data is None:
                written = await self._stage_and_adopt(plog, snap, plan)
                return Status.APPLIED, "", written
            if plog.log_end_offset != plan.log_end:
                continue  # a producer appended meanwhile: plan again
            if plan.reset_start:
                plog.reset_start(plan.from_offset)
            if data:
                plog.append_verbatim(data)
            await anyio.to_thread.run_sync(plog.sync)
            return Status.APPLIED, "", len(data)
        return Status.WAITING, "the log kept moving during the apply", 0

    async def _stage_and_adopt(
        self, plog: PartitionLog, snap: Snapshot, plan: Plan
    ) -> int:
        """Stage the plan's batches in a worker process, then adopt the segments.

        The append gate is held (no producer moves the log end), so the staged
        segments follow on from it when they are adopted.
        """
        guard = self.disk
        if guard is not None and not guard.admit(snap.stored_bytes):
            # the worker writes past the guarded FileOps: the floor is checked here
            raise StorageError(
                f"not enough disk space for {snap.stored_bytes} bytes above the "
                f"free-space floor of {guard.min_free_bytes}"
            )
        if plan.reset_start:
            await anyio.to_thread.run_sync(plog.reset_start, plan.from_offset)
        staging = os.path.join(
            self.data_dir,
            STAGING_DIR,
            f"{plog.topic}-{plog.partition}-{uuid.uuid4().hex}",
        )
        job = StageJob.for_plan(
            snap,
            plan,
            root=self.root,
            staging_dir=staging,
            topic=plog.topic,
            config=plog.config,
            bytes_per_s=self.settings.ingest_bytes_per_s,
        )
        try:
            written = (await run_stage_worker(job)).written
            await anyio.to_thread.run_sync(plog.adopt, staging)
            await anyio.to_thread.run_sync(plog.sync)
            # the adopted segments are durable: a restart need not re-scan them
            await anyio.to_thread.run_sync(plog.checkpoint)
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(
                    functools.partial(shutil.rmtree, staging, ignore_errors=True)
                )
        return written

    def _entry(
        self, status: Status, reason: str, fp: str, snap: Snapshot, topic: str
    ) -> Entry:
        return Entry(
            status=status,
            reason=reason,
            fingerprint=fp,
            topic=topic,
            partition=snap.meta.partition,
            snapshot_id=snap.meta.snapshot_id,
            base_offset=snap.base_offset,
            last_offset=snap.last_offset,
            size=snap.stored_bytes,
        )

    def _after_apply(self, plog: PartitionLog, topic: str) -> None:
        try:
            write_caching = self.topics.logs.topic(topic).config.write_caching
        except UnknownTopic:
            return
        self.durability.after_append(plog, write_caching)
        self.durability.waiters.notify(plog)
        # the ingested batches carry producer ids and sequences the idempotence state
        # has not seen: drop it so the next idempotent produce rebuilds it from the log
        self.producers.forget(plog)

    async def _restore_group_offsets(
        self, snap: Snapshot, topic: str, partition: int
    ) -> None:
        if snap.meta.group_offsets is None:
            return
        from broker.snapshots.create import restore_group_offsets

        try:
            # checked when the snapshot was validated; read again (and checked
            # again): the file may have changed since
            offsets = await anyio.to_thread.run_sync(
                read_group_offsets, snap.path, self.root, snap.meta
            )
        except SnapshotError as exc:
            log.warning(
                "snapshot_group_offsets_invalid", snapshot=snap.path, error=str(exc)
            )
            return
        await restore_group_offsets(self.groups, topic, partition, offsets)

    def _set(self, rel: str, entry: Entry) -> bool:
        if entry.status in (Status.INVALID, Status.DIVERGED):
            entry.reason = entry.reason or str(entry.status)
        changed = self.state.set(rel, entry)
        if changed:
            if entry.status in (Status.INVALID, Status.DIVERGED):
                reason = (
                    entry.reason.split(":", 1)[0]
                    if entry.status is Status.INVALID
                    else "diverged"
                )
                self.metrics.rejected[reason] += 1
            log.info(
                "snapshot_status",
                snapshot=rel,
                status=str(entry.status),
                reason=entry.reason,
                topic=entry.topic,
                partition=entry.partition,
                last_offset=entry.last_offset,
            )
        return changed

    async def save(self) -> None:
        """Persist the ingest state (serialised; the write runs in a worker thread)."""
        async with self._save_lock:
            data = self.state.encode()
            await anyio.to_thread.run_sync(self.state.write, data)


class StageResult(NamedTuple):
    """What the staging worker reports."""

    written: int  # bytes staged
    nice: int  # the worker's CPU priority


async def run_worker(job: str, data: bytes) -> dict[str, object]:
    """Run broker/snapshots/worker_main.py's ``job`` on ``data``; its reply.

    Raises:
        SnapshotIncomplete, SnapshotInvalid: what the worker found.
        StorageError: the worker failed otherwise (its message says why).
    """
    result = await anyio.run_process(
        [sys.executable, "-m", "broker.snapshots.worker_main", str(os.getpid()), job],
        input=data,
        check=False,
        cwd=_PROJECT_ROOT,
    )
    lines = result.stdout.decode(errors="replace").strip().splitlines()
    try:
        reply = json.loads(lines[-1]) if lines else {}
    except ValueError:
        reply = {}
    if not isinstance(reply, dict):
        reply = {}
    if result.returncode == 0 and "error" not in reply and reply:
        return reply
    kind, reason, detail = reply.get("kind"), reply.get("reason"), reply.get("detail")
    if kind in ("SnapshotIncomplete", "SnapshotInvalid"):
        cls = SnapshotIncomplete if kind == "SnapshotIncomplete" else SnapshotInvalid
        raise cls(str(reason), str(detail))
    error = reply.get("error") or result.stderr.decode(errors="replace").strip()
    raise StorageError(
        f"snapshot {job} worker failed (exit {result.returncode}): {error or 'no output'}"
    )


async def run_inspect_worker(path: str, root: str, settle_s: float) -> Snapshot:
    """Validate the snapshot at ``path`` in a worker process (inspect_snapshot)."""
    data = json.dumps({"path": path, "root": root, "settle_s": settle_s}).encode()
    reply = await run_worker("inspect", data)
    snap = reply.get("snapshot")
    if not isinstance(snap, dict):
        raise StorageError("snapshot inspect worker: no snapshot in its reply")
    return snapshot_from_json(snap)


async def run_stage_worker(job: StageJob) -> StageResult:
    """Stage ``job`` in a worker process (storage.snapshot_stage.stage_snapshot)."""
    reply = await run_worker("stage", job.to_json())
    written, nice = reply.get("written"), reply.get("nice", 0)
    if not isinstance(written, int) or not isinstance(nice, int):
        raise StorageError("snapshot stage worker: no byte count in its reply")
    return StageResult(written, nice)
