"""The snapshot scheduler: settings, topic matching, full-vs-incremental, and real
rounds against an in-process broker context (snapshots, push, retention)."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from broker.config import resolve
from broker.context import BrokerContext
from broker.server import open_context
from broker.snapshots.scheduler import (
    ScheduleConfigError,
    ScheduleSettings,
    SnapshotScheduler,
    match_topics,
    needs_full,
    parse_duration,
)
from protocol.record_builder import RecordInput, build_batch
from storage.snapshot import Status
from storage.snapshot_retention import SnapshotInfo


def test_settings_come_from_ailurus_environment_variables() -> None:
    """Every snapshot.schedule.* / snapshot.retention.* key has an AILURUS_ variable."""
    s = ScheduleSettings.from_env(
        {
            "AILURUS_SNAPSHOT_SCHEDULE_TOPICS": "orders, events-*",
            "AILURUS_SNAPSHOT_SCHEDULE_INTERVAL": "500ms",
            "AILURUS_SNAPSHOT_SCHEDULE_FULL_EVERY": "6",
            "AILURUS_SNAPSHOT_SCHEDULE_COMPRESSION": "zstd",
            "AILURUS_SNAPSHOT_SCHEDULE_WITH_GROUP_OFFSETS": "yes",
            "AILURUS_SNAPSHOT_SCHEDULE_PUSH_URL": "s3://bucket/dr",
            "AILURUS_SNAPSHOT_RETENTION_KEEP_LAST": "10",
            "AILURUS_SNAPSHOT_RETENTION_MAX_AGE": "7d",
            "UNRELATED": "x",
        }
    )
    assert s == ScheduleSettings(
        topics=("orders", "events-*"),
        interval_s=0.5,
        full_every=6,
        compression="zstd",
        with_group_offsets=True,
        push_url="s3://bucket/dr",
        keep_last=10,
        max_age_s=7 * 86400.0,
    )
    assert s.enabled
    assert not ScheduleSettings.from_env({}).enabled
    assert ScheduleSettings.from_env({}).interval_s == 3600.0


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("snapshot.schedule.interval", "soon"),
        ("snapshot.schedule.interval", "10ms"),
        ("snapshot.schedule.full_every", "-1"),
        ("snapshot.schedule.compression", "brotli"),
        ("snapshot.schedule.with_group_offsets", "maybe"),
        ("snapshot.retention.keep_last", "0"),
        ("snapshot.retention.max_age", "a week"),
    ],
)
def test_malformed_settings_are_refused_by_name(key: str, value: str) -> None:
    """A bad value raises ScheduleConfigError naming the key."""
    with pytest.raises(ScheduleConfigError, match=key.replace(".", r"\.")):
        ScheduleSettings.from_mapping({key: value})


def test_durations_and_topic_globs() -> None:
    """Durations take ms/s/m/h/d/w; globs skip __internal topics unless asked."""
    assert [parse_duration(t) for t in ("2", "1.5s", "15m", "2h", "1w")] == [
        2.0,
        1.5,
        900.0,
        7200.0,
        604800.0,
    ]
    names = ["orders", "orders-eu", "audit", "__consumer_offsets"]
    assert match_topics(names, ("orders*",)) == ["orders", "orders-eu"]
    assert match_topics(names, ("*",)) == ["orders", "orders-eu", "audit"]
    assert match_topics(names, ("__*", "audit")) == ["audit", "__consumer_offsets"]


def _info(sid: int, anc: int | None, p: int = 0) -> SnapshotInfo:
    return SnapshotInfo(
        snapshot_id=str(sid),
        partition=("t", p),
        ancestor_id=None if anc is None else str(anc),
        created_at=float(sid),
    )


def test_a_full_snapshot_is_due_when_a_chain_holds_full_every_snapshots() -> None:
    """Chains are counted from the newest snapshot of each partition back to a full one."""
    chain = [_info(1, None), _info(2, 1), _info(3, 2)]
    assert not needs_full(chain[:2], 3)
    assert needs_full(chain, 3)
    assert needs_full(chain[:1], 1)
    assert not needs_full(chain, 0)
    assert not needs_full([], 3)
    assert not needs_full([*chain, _info(4, None)], 3)  # a new full one restarts it
    assert needs_full([_info(9, None, p=1), *chain], 3)


def _produce(ctx: BrokerContext, topic: str, n: int) -> None:
    plog = ctx.topics.logs.partition(topic, 0)
    start = plog.log_end_offset
    batch = build_batch(
        [
            RecordInput(key=b"k%d" % i, value=b"v%d" % i, timestamp=1_000 + i)
            for i in range(start, start + n)
        ]
    )
    plog.append(batch, leader_epoch=0)
    plog.sync()


def _on_disk(data_dir: Path) -> dict[str, dict[str, object]]:
    return {
        d.name: json.loads((d / "meta.json").read_text())
        for d in (data_dir / "snapshots").glob("*/*")
        if not d.name.startswith(".")
    }


@pytest.mark.anyio
async def test_rounds_snapshot_push_and_apply_retention(tmp_path: Path) -> None:
    """Rounds take a full snapshot, then incrementals, then a full one every
    full_every; each new snapshot is pushed; keep_last=1 removes what no retained
    snapshot needs, never a snapshot this broker did not create; idle rounds make
    nothing."""
    remote = tmp_path / "remote"
    config = resolve(
        flags={"data_dir": str(tmp_path / "data"), "admin_addr": "none"}, sets={}
    )
    async with open_context(config) as ctx:
        ctx.topics.logs.create_topic("sched-a", 1)
        ctx.topics.logs.create_topic("other", 1)
        settings = ScheduleSettings(
            topics=("sched-*",),
            full_every=2,
            keep_last=1,
            push_url=remote.as_uri(),
        )
        async with anyio.create_task_group() as tg:
            svc = ctx.snapshots
            await tg.start(svc.run)
            sched = SnapshotScheduler(settings, svc, ctx.topics)

            _produce(ctx, "sched-a", 3)
            _produce(ctx, "other", 3)
            r1 = await sched.run_round()
            assert r1.topics == ["sched-a"]
            assert [(c["base_offset"], c["last_offset"]) for c in r1.created] == [
                (0, 2)
            ]
            assert r1.created[0]["ancestor_snapshot_id"] is None
            first = str(r1.created[0]["snapshot_id"])

            idle = await sched.run_round()
            assert (idle.created, idle.deleted, idle.errors) == ([], [], [])

            _produce(ctx, "sched-a", 2)
            r2 = await sched.run_round()
            assert [
                (c["base_offset"], c["ancestor_snapshot_id"]) for c in r2.created
            ] == [(3, first)]
            assert (
                r2.deleted == []
            )  # the newest is incremental: its full ancestor stays
            second = str(r2.created[0]["snapshot_id"])

            _produce(ctx, "sched-a", 1)
            r3 = await sched.run_round()
            assert [(c["base_offset"], c["last_offset"]) for c in r3.created] == [
                (0, 5)
            ]
            assert r3.created[0]["ancestor_snapshot_id"] is None
            third = str(r3.created[0]["snapshot_id"])
            assert sorted(p.rsplit("/", 1)[1] for p in r3.deleted) == [first, second]
            assert set(_on_disk(config.data_dir)) == {third}
            pushed = {p.name for p in remote.glob("*/*") if (p / "meta.json").is_file()}
            assert pushed == {first, second, third}
            assert sched.pending_push == set()

            # A snapshot this broker did not create (e.g. dropped in for ingest) is
            # never deleted by retention.
            rel = r3.deleted[0].rsplit("/", 1)[0] + "/" + third
            svc.state.entries[rel].status = Status.APPLIED
            _produce(ctx, "sched-a", 1)
            r4 = await sched.run_round()
            assert r4.deleted == []
            assert len(_on_disk(config.data_dir)) == 2
            assert sched.to_json()["rounds"] == 5
            tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_a_scheduler_exists_only_when_a_topic_is_scheduled(
    tmp_path: Path,
) -> None:
    """No scheduled topic: the broker builds no scheduler; one topic: it does."""
    plain = resolve(
        flags={"data_dir": str(tmp_path / "a"), "admin_addr": "none"}, sets={}
    )
    async with open_context(plain) as ctx:
        assert ctx.scheduler is None
    scheduled = resolve(
        flags={"data_dir": str(tmp_path / "b"), "admin_addr": "none"},
        sets={"snapshot.schedule.topics": "sched-*"},
    )
    async with open_context(scheduled) as ctx:
        assert ctx.scheduler is not None
        assert ctx.scheduler.settings.topics == ("sched-*",)
