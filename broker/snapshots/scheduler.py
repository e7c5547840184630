"""Scheduled snapshots: snapshot chosen topics every interval, apply retention, push.

Settings (broker settings, resolved by broker.config: ``--set key=value``, then the
environment variable ``AILURUS_`` + the key in upper case with ``_`` for ``.``, e.g.
``AILURUS_SNAPSHOT_SCHEDULE_TOPICS``, then the config file's ``set:`` mapping)::

    snapshot.schedule.topics             comma-separated glob patterns (empty: off)
    snapshot.schedule.interval           e.g. 1s, 15m, 1h (default 1h)
    snapshot.schedule.full_every         N: every Nth snapshot of a chain is full (24;
                                         1 = always full, 0 = never after the first)
    snapshot.schedule.compression        none|gzip|lz4|zstd (default none)
    snapshot.schedule.with_group_offsets true|false (default false)
    snapshot.schedule.push_url           fsspec URL to push each new snapshot to
    snapshot.schedule.push_endpoint_url  S3-compatible endpoint for s3:// URLs
    snapshot.retention.keep_last         keep the newest N per partition
    snapshot.retention.max_age           keep everything younger than this (e.g. 7d)

One round (one at a time; the next is due one interval after the previous was due,
missed rounds are skipped, not caught up):

1. Match the patterns against the topics (names starting with ``__`` only match a
   pattern that starts with ``__``).
2. Per topic, one consistent point: an incremental snapshot of every partition
   (storage.snapshot via broker.snapshots.create.create_snapshots), or a full one when
   some partition's newest chain already holds ``full_every`` snapshots. Partitions
   with nothing new are skipped; one whose ancestor's offsets were deleted by log
   retention gets a full snapshot instead.
3. Push every new snapshot (broker.snapshots.offsite.transfer.push, idempotent); one that fails stays
   pending, is retried next round, and is never removed by retention meanwhile.
4. Retention (storage.snapshot_retention): only snapshots this broker created are
   managed; snapshots dropped in for ingest are never deleted; no retained snapshot
   loses an ancestor.

Everything heavy (file scans, copies, uploads, deletes) runs in worker threads.
``GET /v1/snapshots/schedule`` shows the settings and the last round.
"""

from __future__ import annotations

import fnmatch
import functools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import anyio
import anyio.abc
import structlog

from broker.config import (
    SCHEDULE_KEYS,
    ScheduleConfigError,
    ScheduleSettings,
    env_name,
    parse_duration,
)
from broker.snapshots.create import SnapshotRequestError, create_snapshots
from broker.snapshots.offsite import transfer as offsite
from broker.snapshots.offsite.remote import OffsiteError
from broker.snapshots.routing import gather_group_offsets
from broker.snapshots.service import SnapshotService
from broker.topics.service import TopicService
from storage.errors import StorageError
from storage.snapshot import Status
from storage.snapshot_retention import (
    RetentionPolicy,
    SnapshotInfo,
    collect_snapshots,
    plan_retention,
    remove_snapshot,
)

log = structlog.get_logger("broker.snapshot_scheduler")

# The settings live in broker.config (resolved with every other broker setting);
# re-exported here for the scheduler's callers.
KEYS: Final = SCHEDULE_KEYS
__all__ = [
    "KEYS",
    "ScheduleConfigError",
    "ScheduleSettings",
    "SnapshotScheduler",
    "env_name",
    "match_topics",
    "parse_duration",
]


def match_topics(names: list[str], patterns: tuple[str, ...]) -> list[str]:
    """Topics matching any glob; ``__internal`` ones only by a ``__`` pattern."""
    out = []
    for name in names:
        for pat in patterns:
            if name.startswith("__") and not pat.startswith("__"):
                continue
            if fnmatch.fnmatchcase(name, pat):
                out.append(name)
                break
    return out


def chain_length(snaps: list[SnapshotInfo], newest: SnapshotInfo) -> int:
    """How many snapshots the chain ending at ``newest`` holds (1 for a full one)."""
    by_id = {s.snapshot_id: s for s in snaps if s.partition == newest.partition}
    n, cur, seen = 1, newest, {newest.snapshot_id}
    while cur.ancestor_id is not None and cur.ancestor_id in by_id:
        if cur.ancestor_id in seen:
            break
        seen.add(cur.ancestor_id)
        cur = by_id[cur.ancestor_id]
        n += 1
    return n


def needs_full(snaps: list[SnapshotInfo], full_every: int) -> bool:
    """Whether some partition's newest chain already holds ``full_every`` snapshots."""
    if full_every <= 0:
        return False
    newest: dict[object, SnapshotInfo] = {}
    for s in snaps:
        cur = newest.get(s.partition)
        if cur is None or _num(s) > _num(cur):
            newest[s.partition] = s
    return any(chain_length(snaps, s) >= full_every for s in newest.values())


def _num(s: SnapshotInfo) -> tuple[float, int]:
    return (s.created_at, int(s.snapshot_id) if s.snapshot_id.isdigit() else -1)


@dataclass(slots=True, kw_only=True)
class RoundReport:
    """What one round did (the last one is kept for the admin API)."""

    started_ms: int
    seconds: float = 0.0
    topics: list[str] = field(default_factory=list)
    created: list[dict[str, object]] = field(default_factory=list)
    skipped: list[dict[str, object]] = field(default_factory=list)
    pushed: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        """The report as JSON."""
        return {
            "started_ms": self.started_ms,
            "seconds": self.seconds,
            "topics": self.topics,
            "created": self.created,
            "skipped": self.skipped,
            "pushed": self.pushed,
            "deleted": self.deleted,
            "errors": self.errors,
        }


class SnapshotScheduler:
    """The schedule of one broker: rounds, pending pushes, the last report."""

    def __init__(
        self,
        settings: ScheduleSettings,
        snapshots: SnapshotService,
        topics: TopicService,
    ) -> None:
        self.snapshots = snapshots
        self.topics = topics
        self.settings = settings
        self.rounds = 0
        self.last: RoundReport | None = None
        self.next_round_ms: int | None = None
        self.pending_push: set[str] = set()  # rel paths whose push failed

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Run rounds every interval until cancelled."""
        log.info("snapshot_schedule_started", **self.settings.to_json())
        task_status.started()
        interval = self.settings.interval_s
        due = time.monotonic() + interval
        while True:
            self.next_round_ms = int((time.time() + due - time.monotonic()) * 1000)
            await anyio.sleep(max(0.0, due - time.monotonic()))
            await self.run_round()
            due += interval
            now = time.monotonic()
            if due < now:  # rounds took longer than the interval: skip, don't burst
                due = now + interval - (now - due) % interval

    async def run_round(self) -> RoundReport:
        """One round: snapshot, push, retention (see the module docstring)."""
        started = time.perf_counter()
        report = RoundReport(started_ms=int(time.time() * 1000))
        svc = self.snapshots
        report.topics = match_topics(self.topics.names(), self.settings.topics)
        dirs: list[str] = []
        for topic in report.topics:
            try:
                dirs.append(await self._snapshot_topic(svc, topic, report))
            except (SnapshotRequestError, StorageError) as exc:
                report.errors.append(f"{topic}: {exc}")
                log.warning("snapshot_schedule_failed", topic=topic, error=str(exc))
        if self.settings.push_url:
            await self._push(svc, report)
        if self.settings.keep_last is not None or self.settings.max_age_s is not None:
            await self._retention(svc, dirs, report)
        report.seconds = round(time.perf_counter() - started, 6)
        self.rounds += 1
        self.last = report
        log.info(
            "snapshot_schedule_round",
            round=self.rounds,
            topics=len(report.topics),
            created=len(report.created),
            skipped=len(report.skipped),
            pushed=len(report.pushed),
            deleted=len(report.deleted),
            errors=len(report.errors),
            seconds=report.seconds,
        )
        return report

    async def _snapshot_topic(
        self, svc: SnapshotService, topic: str, report: RoundReport
    ) -> str:
        dir_name = str(self.topics.logs.topic(topic).topic_uuid)
        snaps = await anyio.to_thread.run_sync(
            lambda: collect_snapshots(
                svc.snapshots_dir, svc.root, topic_dirs=[dir_name]
            )
        )
        full = needs_full(snaps, self.settings.full_every)
        results = await self._create(svc, topic, None, incremental=not full)
        retry = [
            int(str(r["partition"]))
            for r in results
            if r.get("skipped") == "ancestor-gone"
        ]
        if retry:
            results = [r for r in results if r.get("skipped") != "ancestor-gone"]
            results += await self._create(svc, topic, retry, incremental=False)
        for r in results:
            if "snapshot_id" in r:
                report.created.append(r)
                if self.settings.push_url:
                    self.pending_push.add(f"{dir_name}/{r['snapshot_id']}")
            elif "skipped" in r:
                if r["skipped"] != "empty":
                    report.skipped.append(r)
            else:
                report.errors.append(f"{topic}/{r.get('partition')}: {r.get('error')}")
        return dir_name

    async def _create(
        self,
        svc: SnapshotService,
        topic: str,
        partitions: list[int] | None,
        *,
        incremental: bool,
    ) -> list[dict[str, object]]:
        given = None
        cache = self.topics.cache
        if cache is not None:
            # in a cluster each broker's schedule cuts the partitions it leads
            led = [
                p for p, r in cache.partitions_of(topic) if r.leader == cache.node_id
            ]
            partitions = [p for p in (partitions or led) if p in led]
            if not partitions:
                return []
            if self.settings.with_group_offsets:
                given = await gather_group_offsets(svc, topic)
        return await create_snapshots(
            svc,
            topic=topic,
            partitions=partitions,
            incremental=incremental,
            compression=self.settings.compression,
            with_group_offsets=self.settings.with_group_offsets,
            given_offsets=given,
        )

    async def _push(self, svc: SnapshotService, report: RoundReport) -> None:
        url = self.settings.push_url
        assert url is not None
        for rel in sorted(self.pending_push, key=lambda r: r.rsplit("/", 1)[-1]):
            path = Path(svc.snapshots_dir) / rel
            if not path.is_dir():
                self.pending_push.discard(rel)
                continue
            try:
                await anyio.to_thread.run_sync(
                    functools.partial(
                        offsite.push,
                        path,
                        url,
                        endpoint_url=self.settings.push_endpoint_url,
                    )
                )
            except (OffsiteError, OSError) as exc:
                report.errors.append(f"push {rel}: {exc}")
                log.warning(
                    "snapshot_schedule_push_failed", snapshot=rel, error=str(exc)
                )
                break  # keep order: an incremental never lands before its ancestor
            self.pending_push.discard(rel)
            report.pushed.append(rel)

    async def _retention(
        self, svc: SnapshotService, dirs: list[str], report: RoundReport
    ) -> None:
        def managed(s: SnapshotInfo) -> bool:
            entry = svc.state.entries.get(s.path)
            return (
                entry is not None
                and entry.status is Status.CREATED
                and s.path not in self.pending_push
            )

        found = await anyio.to_thread.run_sync(
            lambda: collect_snapshots(svc.snapshots_dir, svc.root, topic_dirs=dirs)
        )
        infos = [
            SnapshotInfo(
                snapshot_id=s.snapshot_id,
                partition=s.partition,
                ancestor_id=s.ancestor_id,
                created_at=s.created_at,
                pinned=not managed(s),
                path=s.path,
            )
            for s in found
        ]
        plan = plan_retention(
            infos,
            RetentionPolicy(
                keep_last=self.settings.keep_last,
                max_age=self.settings.max_age_s,
                now=time.time(),
            ),
        )
        for s in plan.delete:
            try:
                await anyio.to_thread.run_sync(
                    remove_snapshot, svc.snapshots_dir, s.path
                )
            except StorageError as exc:
                report.errors.append(f"retention {s.path}: {exc}")
                log.warning(
                    "snapshot_retention_failed", snapshot=s.path, error=str(exc)
                )
                continue
            svc.state.entries.pop(s.path, None)
            report.deleted.append(s.path)
            log.info("snapshot_retention_deleted", snapshot=s.path)
        if report.deleted:
            await svc.save()

    def to_json(self) -> dict[str, object]:
        """Settings, round count, next round and the last round's report."""
        return {
            **self.settings.to_json(),
            "rounds": self.rounds,
            "next_round_ms": self.next_round_ms,
            "pending_push": sorted(self.pending_push),
            "last_round": None if self.last is None else self.last.to_json(),
        }
