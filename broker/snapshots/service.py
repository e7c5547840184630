"""Hot ingest of partition snapshots: the watcher task and its scan loop.

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
last_offset order (broker.snapshots.apply). Applying holds the partition's append gate (broker.snapshots.gate),
so produce requests to that partition queue behind the ingest. A small remainder is
appended on the loop thread; a large one is staged by a worker process into segments
beside the log (throttled by snapshot.ingest.bytes.per.sec, 0 = unlimited) and
adopted by rename (PartitionLog.adopt). The worker processes
(broker.snapshots.workers) run at nice 19 and share no GIL with the event loop,
so other partitions' produce and fetch latency stays low during an ingest. Long
polls on the partition are woken at once. Every status change is a
``snapshot_status`` event and is persisted in
``<data_dir>/ailurus/snapshot-ingest.json``.

Settings are broker settings (broker.snapshots.settings): ``--set
snapshot.scan.interval.ms=``, ``snapshot.settle.ms`` (files untouched this long count
as settled, default 2000) and ``snapshot.ingest.bytes.per.sec``, or
``AILURUS_SNAPSHOT_SCAN_INTERVAL_MS`` etc. Counters: broker.snapshots.metrics.
"""

from __future__ import annotations

import functools
import os
import time
from collections import defaultdict

import anyio
import anyio.abc
import structlog

from broker.config import BrokerConfig
from broker.disk.guard import DiskGuard
from broker.durability.acks import Durability
from broker.groups.service import GroupService
from broker.producers.service import ProducerService
from broker.snapshots.apply import Handover, SnapshotApplier
from broker.snapshots.gate import AppendGate
from broker.snapshots.handover import send_snapshot
from broker.snapshots.inotify import Inotify
from broker.snapshots.metrics import SnapshotMetrics
from broker.snapshots.peers import PeerError
from broker.snapshots.settings import SnapshotSettings
from broker.snapshots.workers import run_inspect_worker
from broker.topics.service import TopicService
from storage.errors import StorageError
from storage.snapshot import Snapshot, Status, precheck_snapshot
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
from storage.snapshot_meta import SnapshotIncomplete, SnapshotInvalid
from storage.snapshot_stage import clear_staging

log = structlog.get_logger("broker.snapshots")


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
        self.groups = groups
        self.disk = disk
        self.node_id = config.node_id
        self.admin_token = config.admin_token  # a cluster's brokers share it
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
        self._applier = SnapshotApplier(
            topics=topics,
            durability=durability,
            gate=gate,
            producers=producers,
            groups=groups,
            disk=disk,
            settings=self.settings,
            metrics=self.metrics,
            data_dir=self.data_dir,
            root=self.root,
            record=self._set,
            settled=self._settled,
            admin_token=self.admin_token,
        )

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
            target = await self._applier.resolve(cand, snap)
            if isinstance(target, Handover):
                changed |= self._set(
                    cand.rel, await self._hand_over(cand, fp, snap, target)
                )
                continue
            if isinstance(target, Entry):
                target.fingerprint = fp
                changed |= self._set(cand.rel, target)
                continue
            by_partition[(target.name, snap.meta.partition)].append(
                (cand.rel, fp, snap)
            )
        for (topic, partition), snaps in by_partition.items():
            changed |= await self._applier.apply_partition(topic, partition, snaps)
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
        self.metrics.inspections += 1
        return await self.verify(path, settle_s=self.settings.settle_s)

    async def verify(self, path: str, *, settle_s: float) -> Snapshot:
        """Validate a snapshot directory completely (sizes, then every batch and
        checksum in a worker process)."""
        await anyio.to_thread.run_sync(
            functools.partial(precheck_snapshot, path, self.root, settle_s=settle_s)
        )
        return await run_inspect_worker(path, self.root, settle_s)

    async def keep_as_created(self, rel: str, snap: Snapshot) -> None:
        """Record ``rel`` as this broker's own snapshot (a copy gathered from the
        leader that cut it): listed as ``created``, never ingested here."""
        meta = snap.meta
        self.state.set(
            rel,
            Entry(
                status=Status.CREATED,
                topic=meta.topic,
                partition=meta.partition,
                snapshot_id=meta.snapshot_id,
                base_offset=snap.base_offset,
                last_offset=snap.last_offset,
                size=snap.stored_bytes,
            ),
        )
        await self.save()

    async def _hand_over(
        self, cand: Candidate, fp: str, snap: Snapshot, target: Handover
    ) -> Entry:
        """Stream a verified snapshot to its partition's leader (cluster mode)."""
        entry = Entry(
            status=Status.WAITING,
            fingerprint=fp,
            topic=target.topic,
            partition=snap.meta.partition,
            snapshot_id=snap.meta.snapshot_id,
            base_offset=snap.base_offset,
            last_offset=snap.last_offset,
            size=snap.stored_bytes,
        )
        cache = self.topics.cache
        info = None if cache is None else cache.broker(target.leader)
        if info is None or info.admin is None:
            entry.reason = f"handover: broker {target.leader} has no admin API"
            return entry
        # named by the cluster's topic name there: the leader resolves it as we did
        leaf = cand.rel.partition("/")[2]
        name = snap.meta.snapshot_id or leaf or self.state.next_snapshot_id()
        try:
            where = await send_snapshot(
                snap,
                topic_dir=target.topic,
                name=name,
                from_broker=self.node_id,
                address=info.admin,
                token=self.admin_token,
            )
        except PeerError as exc:
            entry.reason = f"handover to broker {target.leader} failed: {exc}"
            return entry
        self._settled(cand.rel)
        self.metrics.handed_over += 1
        entry.status = Status.HANDED_OVER
        entry.reason = (
            f"broker {target.leader} leads {target.topic}/{snap.meta.partition}; "
            f"sent to it as {where}"
        )
        return entry

    def _settled(self, rel: str) -> None:
        self._ready.pop(rel, None)

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
