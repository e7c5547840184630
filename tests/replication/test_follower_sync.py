"""A follower's fsyncs during catch-up: none per Fetch below the leader's high
watermark, always one before it reports an offset that reaches it."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from broker.replication.fetch_round import (
    FetcherSettings,
    PartitionProgress,
    TopicPartition,
)
from broker.replication.fetcher import ReplicaFetcher
from broker.replication.follower_sync import must_sync_before_reporting
from protocol.messages.fetch import FetchRequest
from storage.fileops import FileOps
from storage.log_manager import LogManager
from tests.replication.conftest import (
    LeaderFactory,
    Stops,
    all_bytes,
    caught_up,
    run_until,
)

RECORDS = 16 * 1024  # 1 KiB each: 16 MiB, 16+ Fetches of at most 1 MiB
MIB = 1024 * 1024


@pytest.mark.parametrize(
    ("fetch_offset", "high_watermark", "durable", "expected"),
    [
        (100, 500, 0, False),  # below the HW: reporting it moves nothing
        (500, 500, 0, True),  # reaches the HW: could join the ISR
        (600, 500, 0, True),  # past it: could raise it
        (100, -1, 0, True),  # no HW known (new leader or epoch)
        (600, 500, 600, False),  # already durable
        (0, -1, 0, False),  # nothing appended
    ],
)
def test_sync_is_needed_only_for_offsets_that_can_move_the_leader(
    fetch_offset: int, high_watermark: int, durable: int, expected: bool
) -> None:
    """Only a fetch offset at or past the last high watermark (or with none known)
    must be durable before it is sent."""
    assert must_sync_before_reporting(fetch_offset, high_watermark, durable) is expected


class CountingOps(FileOps):
    """FileOps that count fdatasync calls (they run in worker threads)."""

    def __init__(self) -> None:
        self.datasyncs = 0
        self._lock = threading.Lock()

    def fdatasync(self, fd: int) -> None:
        with self._lock:
            self.datasyncs += 1
        super().fdatasync(fd)


@dataclass(frozen=True, slots=True)
class Sent:
    fetch_offset: int
    leader_high_watermark: int
    durable_offset: int


class RecordingFetcher(ReplicaFetcher):
    """A replica fetcher that notes, for each Fetch it sends, what it reports and
    how much of its log is durable at that moment."""

    sent: list[Sent]

    def _fetch_request(
        self,
        parts: list[PartitionProgress],
        *,
        by_id: bool,
        at: dict[TopicPartition, int] | None = None,
    ) -> tuple[FetchRequest, dict[tuple[str | bytes, int], object]]:
        self.sent.extend(
            Sent(
                p.fetch_offset if at is None else at[p.tp],
                p.leader_high_watermark,
                p.log.durable_offset,
            )
            for p in parts
        )
        return super()._fetch_request(parts, by_id=by_id, at=at)  # type: ignore[return-value]


def _fetcher(leader_port: int, max_unsynced_bytes: int) -> RecordingFetcher:
    fetcher = RecordingFetcher(
        node_id=2,
        leader_id=1,
        host="127.0.0.1",
        port=leader_port,
        on_stop=Stops(),
        settings=FetcherSettings(
            max_wait_ms=100,
            backoff_initial_s=0.05,
            backoff_max_s=0.2,
            request_timeout_s=10,
            partition_max_bytes=MIB,
            max_unsynced_bytes=max_unsynced_bytes,
        ),
    )
    fetcher.sent = []
    return fetcher


@pytest.mark.anyio
async def test_catching_up_follower_fsyncs_only_before_reporting_the_high_watermark(
    tmp_path: Path, leader_factory: LeaderFactory
) -> None:
    """A follower 16 MiB behind fetches 1 MiB at a time without an fsync per Fetch
    (a handful of fdatasyncs in all), every Fetch that reports an offset at or past
    the leader's high watermark finds it durable, and with a 4 MiB bound on what
    may wait for its fsync it waits once per 4 MiB instead."""
    leader = leader_factory()
    topic = "behind"
    admin = AdminClient({"bootstrap.servers": leader.bootstrap})
    for fut in admin.create_topics([NewTopic(topic, 1, 1)]).values():
        fut.result(10)
    producer = Producer(
        {"bootstrap.servers": leader.bootstrap, "linger.ms": 5, "batch.size": 256_000}
    )
    for i in range(RECORDS):
        producer.produce(topic, value=i.to_bytes(4, "big") * 256, partition=0)
        if i % 4096 == 0:
            producer.poll(0)
    assert producer.flush(30) == 0

    counts = {}
    copies = []
    for name, bound in (("deferred", 64 * MIB), ("bounded", 4 * MIB)):
        ops = CountingOps()
        logs = LogManager(tmp_path / name, fileops=ops)
        try:
            logs.create_topic(topic, 1)
            plog = logs.partition(topic, 0)
            fetcher = _fetcher(leader.port, bound)
            fetcher.add_partition(plog, leader_epoch=0)
            before = ops.datasyncs
            progress = fetcher.progress(TopicPartition(topic, 0))
            await run_until(fetcher, lambda p=progress: caught_up(p, RECORDS), 60)
            counts[name] = ops.datasyncs - before
            assert plog.log_end_offset == RECORDS
            assert plog.durable_offset == RECORDS
            sent = fetcher.sent
            # The promise: what can move the leader is on the follower's disk.
            for s in sent:
                if (
                    s.leader_high_watermark < 0
                    or s.fetch_offset >= s.leader_high_watermark
                ):
                    assert s.durable_offset >= s.fetch_offset, s
            # Below the high watermark it fetched on before its fsync.
            behind = [
                s
                for s in sent
                if 0 < s.fetch_offset < s.leader_high_watermark
                and s.durable_offset < s.fetch_offset
            ]
            if name == "deferred":
                assert len(behind) >= 12, sent
                assert fetcher._sync.syncs_waited <= 3
            else:
                # 16 MiB, at most 4 MiB unsynced: a wait every 4-5 Fetches
                assert 3 <= fetcher._sync.syncs_waited <= 8, fetcher._sync.syncs_waited
                # never more than the bound and one Fetch (about 1 KiB a record)
                assert all(
                    s.fetch_offset - s.durable_offset <= 5 * 1024 for s in behind
                )
            copies.append(all_bytes(plog))
        finally:
            logs.close()
    # one fdatasync per segment file per sync, not one per Fetch (16+ Fetches)
    assert counts["deferred"] <= 4, counts
    assert copies[0] == copies[1]
