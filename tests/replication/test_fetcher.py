"""The replica fetcher against a real leader broker: copy, reset, truncate, reconnect."""

from __future__ import annotations

from pathlib import Path

import anyio
import kafka
import pytest
from confluent_kafka import Producer
from confluent_kafka import TopicPartition as CTopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from structlog.testing import capture_logs

from broker.producers.service import ProducerService, append_checked
from broker.replication.fetch_round import TopicPartition
from protocol.error_codes import ErrorCode
from protocol.record_builder import RecordInput, build_batch
from protocol.records import iter_batches
from storage.log_manager import LogManager
from storage.partition_log import AppendResult
from storage.producer_state import ProducerIdAllocator
from tests._broker import BrokerProcess, free_port
from tests.replication.conftest import (
    LeaderFactory,
    Stops,
    all_bytes,
    caught_up,
    make_fetcher,
    run_until,
    wait_for,
)


def _create(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
        fut.result(10)


def _leader_log(data_dir: Path, topic: str, partition: int) -> tuple[bytes, int, int]:
    """(bytes, log start, log end) of a stopped leader's partition."""
    logs = LogManager(data_dir)
    try:
        plog = logs.partition(topic, partition)
        return all_bytes(plog), plog.log_start_offset, plog.log_end_offset
    finally:
        logs.close()


@pytest.mark.anyio
async def test_follower_copies_every_codec_byte_for_byte(
    tmp_path: Path, leader_factory: LeaderFactory, follower: LogManager
) -> None:
    """Batches from kafka-python and an idempotent confluent-kafka producer, in every
    codec, land in the follower's log with the leader's offsets, epochs and CRCs."""
    leader = leader_factory()
    topic = "copy"
    _create(leader.bootstrap, topic, 2)
    kp_total = 0
    for codec in ("gzip", "lz4", "snappy", "zstd", None):
        producer = kafka.KafkaProducer(
            bootstrap_servers=leader.bootstrap, compression_type=codec, linger_ms=5
        )
        for i in range(30):
            producer.send(
                topic, value=b"kp-%s-%d" % (str(codec).encode(), i), partition=0
            )
        producer.flush(10)
        producer.close()
        kp_total += 30
    cp_total = 0
    for codec in ("zstd", "lz4", "none"):
        producer = Producer(
            {
                "bootstrap.servers": leader.bootstrap,
                "enable.idempotence": True,
                "compression.type": codec,
                "linger.ms": 5,
            }
        )
        for i in range(40):
            producer.produce(
                topic, value=b"cp-%s-%d" % (codec.encode(), i), partition=1
            )
        assert producer.flush(10) == 0
        cp_total += 40

    follower.create_topic(topic, 2)
    stops = Stops()
    fetcher = make_fetcher(leader, stops, partition_max_bytes=2048)
    for p in (0, 1):
        fetcher.add_partition(follower.partition(topic, p), leader_epoch=0)
    ends = {0: kp_total, 1: cp_total}
    with capture_logs() as events:
        await run_until(
            fetcher,
            lambda: all(
                caught_up(fetcher.progress(TopicPartition(topic, p)), ends[p])
                for p in (0, 1)
            ),
        )
    assert fetcher.last_fetch_version == 12  # no topic ids given: by name
    names = [e["event"] for e in events]
    assert "replica_fetch_started" in names
    assert names.count("replica_caught_up") == 2
    assert stops.calls == []
    progress = fetcher.progress(TopicPartition(topic, 1))
    assert progress is not None
    assert progress.lag == 0

    # A fetcher that names a leader epoch the leader does not have stops and says so.
    fenced_stops = Stops()
    fenced = make_fetcher(leader, fenced_stops)
    follower.create_topic("other", 1)
    fenced.add_partition(follower.partition("other", 0), leader_epoch=7)
    fenced.add_partition(follower.partition(topic, 0), leader_epoch=7)
    await run_until(fenced, lambda: len(fenced_stops.calls) == 2)
    assert {code for _, code in fenced_stops.calls} == {
        ErrorCode.UNKNOWN_LEADER_EPOCH,
        ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
    }

    assert leader.stop() == 0
    for p in (0, 1):
        data, start, end = _leader_log(tmp_path / "leader", topic, p)
        plog = follower.partition(topic, p)
        assert (plog.log_start_offset, plog.log_end_offset) == (start, end)
        assert all_bytes(plog) == data
        codecs = {h.attributes & 0x07 for _, h in iter_batches(data)}
        assert codecs == ({0, 1, 2, 3, 4} if p == 0 else {0, 3, 4})
        assert plog.durable_offset == end


@pytest.mark.anyio
async def test_empty_follower_starts_at_the_leaders_log_start(
    tmp_path: Path, leader_factory: LeaderFactory, follower: LogManager
) -> None:
    """After DeleteRecords on the leader, an empty follower restarts its log at the
    leader's log start (or at the batch holding it) and copies from there."""
    leader = leader_factory()
    topic = "trimmed"
    _create(leader.bootstrap, topic, 2)
    producer = Producer({"bootstrap.servers": leader.bootstrap, "linger.ms": 0})
    for i in range(10):
        producer.produce(topic, value=b"%d" % i, partition=0)
        producer.flush(10)  # one batch per record
    for i in range(10):
        producer.produce(topic, value=b"%d" % i, partition=1)
    producer.flush(10)
    admin = AdminClient({"bootstrap.servers": leader.bootstrap})
    for fut in admin.delete_records(
        [CTopicPartition(topic, 0, 6), CTopicPartition(topic, 1, 4)]
    ).values():
        fut.result(10)

    follower.create_topic(topic, 2)
    stops = Stops()
    fetcher = make_fetcher(leader, stops)
    for p in (0, 1):
        fetcher.add_partition(follower.partition(topic, p), leader_epoch=0)
    with capture_logs() as events:
        await run_until(
            fetcher,
            lambda: all(
                caught_up(fetcher.progress(TopicPartition(topic, p)), 10)
                for p in (0, 1)
            ),
        )
    assert any(
        e["event"] == "replica_truncated" and e["reason"] == "leader_log_start"
        for e in events
    )
    assert leader.stop() == 0
    data, start, end = _leader_log(tmp_path / "leader", topic, 0)
    plog = follower.partition(topic, 0)
    assert (start, end) == (6, 10)
    assert (plog.log_start_offset, plog.log_end_offset) == (6, 10)
    assert all_bytes(plog) == data
    # Partition 1: the log start (4) may sit inside a batch; the follower holds that
    # whole batch and everything after it, byte for byte.
    data, start, end = _leader_log(tmp_path / "leader", topic, 1)
    plog = follower.partition(topic, 1)
    assert plog.log_end_offset == end == 10
    assert plog.log_start_offset <= start == 4
    assert all_bytes(plog) == all_bytes(plog, plog.log_start_offset)
    first = next(iter(iter_batches(all_bytes(plog))))[1]
    assert first.base_offset <= 4 <= first.last_offset
    assert data.endswith(all_bytes(plog)) or all_bytes(plog).endswith(data)


def _fetches(leader: BrokerProcess) -> int:
    """Fetch requests the leader has answered (its ``/metrics``)."""
    status, body = leader.http("/metrics")
    assert status == 200
    for line in body.decode().splitlines():
        if line.startswith('ailurus_requests_total{api="fetch"}'):
            return int(float(line.split()[1]))
    return 0


@pytest.mark.anyio
async def test_far_behind_follower_copies_megabytes_per_fetch(
    leader_factory: LeaderFactory, follower: LogManager
) -> None:
    """A follower 24 MiB behind copies several MiB per Fetch by default
    (``partition_max_bytes`` 8 MiB), not Kafka's 1 MiB: each Fetch is made durable
    before the next, so fewer, bigger ones catch up faster."""
    leader = leader_factory()
    topic = "behind"
    _create(leader.bootstrap, topic, 1)
    producer = Producer(
        {"bootstrap.servers": leader.bootstrap, "linger.ms": 5, "batch.size": 1 << 20}
    )
    for i in range(24 * 1024):
        producer.produce(topic, value=i.to_bytes(4, "big") * 256, partition=0)
        if i % 4096 == 0:
            producer.poll(0)
    assert producer.flush(30) == 0
    follower.create_topic(topic, 1)
    plog = follower.partition(topic, 0)
    stops = Stops()
    fetcher = make_fetcher(leader, stops)
    assert fetcher.settings.partition_max_bytes == 8 * 1024 * 1024
    fetcher.add_partition(plog, leader_epoch=0)
    before = _fetches(leader)
    await run_until(
        fetcher, lambda: caught_up(fetcher.progress(TopicPartition(topic, 0)), 24_576)
    )
    fetched = _fetches(leader) - before
    assert plog.log_end_offset == 24_576
    assert stops.calls == []
    # 24 MiB of batches in at most 8 MiB a Fetch: 3 or 4 Fetches, plus the long
    # polls at the end; 1 MiB ones would take at least 24.
    assert 3 <= fetched <= 10, fetched


def _batch(values: list[bytes]) -> bytes:
    return build_batch([RecordInput(value=v, timestamp=1_000) for v in values])


@pytest.mark.anyio
@pytest.mark.parametrize("on_fetch", [False, True], ids=["epoch_request", "diverging"])
async def test_divergent_follower_truncates_and_converges(
    tmp_path: Path, leader_factory: LeaderFactory, follower: LogManager, on_fetch: bool
) -> None:
    """A follower whose tail was written in an epoch the leader never had cuts it at
    the leader's epoch boundary (OffsetForLeaderEpoch, or Fetch's diverging_epoch)
    and then holds exactly the leader's log."""
    topic = "div"
    leader_dir = tmp_path / "leader"
    staged = LogManager(leader_dir)
    topic_id = staged.create_topic(topic, 1).topic_id
    lplog = staged.partition(topic, 0)
    for i in range(2):
        lplog.append(_batch([b"a%d-%d" % (i, j) for j in range(5)]), leader_epoch=1)
    shared = all_bytes(lplog)
    for i in range(2):
        lplog.append(_batch([b"c%d-%d" % (i, j) for j in range(5)]), leader_epoch=3)
    leader_data = all_bytes(lplog)
    staged.close()

    follower.create_topic(topic, 1, topic_id=topic_id)  # as a cluster creates it
    fplog = follower.partition(topic, 0)
    fplog.append_verbatim(shared)
    for i in range(5):
        fplog.append(_batch([b"x%d-%d" % (i, j) for j in range(3)]), leader_epoch=2)
    assert fplog.log_end_offset == 25

    leader = leader_factory(leader_dir)
    stops = Stops()
    fetcher = make_fetcher(leader, stops, truncate_on_fetch=on_fetch)
    fetcher.add_partition(fplog, leader_epoch=3, topic_id=topic_id)
    with capture_logs() as events:
        await run_until(
            fetcher, lambda: caught_up(fetcher.progress(TopicPartition(topic, 0)), 20)
        )
    assert fetcher.last_fetch_version is not None
    assert fetcher.last_fetch_version >= 13  # by topic id
    truncations = [e for e in events if e["event"] == "replica_truncated"]
    assert truncations[0]["from_offset"] == 25
    assert truncations[0]["to_offset"] == 10
    assert truncations[0]["reason"] == (
        "diverging_epoch" if on_fetch else "offset_for_leader_epoch"
    )
    assert stops.calls == []
    assert all_bytes(fplog) == leader_data
    assert fplog.epoch_end_offset(1) == (1, 10)
    assert fplog.epoch_end_offset(2) == (1, 10)
    assert fplog.leader_epoch == 3
    assert leader.stop() == 0


def _idem(pid: int, seq: int, count: int) -> bytes:
    return build_batch(
        [RecordInput(value=b"%d-%d" % (pid, seq + i)) for i in range(count)],
        producer_id=pid,
        producer_epoch=0,
        base_sequence=seq,
    )


@pytest.mark.anyio
async def test_follower_keeps_its_idempotent_producers_state_as_it_copies(
    tmp_path: Path, leader_factory: LeaderFactory, follower: LogManager
) -> None:
    """The producer state of a follower follows what it copies and what it cuts:
    as the next leader it answers a retry of a copied batch with the leader's
    offsets, appends the retry of a batch its truncation removed, and refuses a
    gap with OUT_OF_ORDER_SEQUENCE_NUMBER."""
    topic = "idem"
    leader_dir = tmp_path / "leader"
    staged = LogManager(leader_dir)
    topic_id = staged.create_topic(topic, 1).topic_id
    lplog = staged.partition(topic, 0)
    lplog.append(_idem(7, 0, 5), leader_epoch=1)
    lplog.append(_idem(7, 5, 5), leader_epoch=1)
    shared = all_bytes(lplog)
    lplog.append(_idem(7, 10, 5), leader_epoch=3)  # offsets 10..14
    staged.close()

    follower.create_topic(topic, 1, topic_id=topic_id)
    fplog = follower.partition(topic, 0)
    fplog.append_verbatim(shared)
    fplog.append(_idem(7, 10, 3), leader_epoch=2)  # a tail the leader never had
    fplog.append(_idem(8, 0, 3), leader_epoch=2)
    producers = ProducerService(ProducerIdAllocator(tmp_path / "ids"))
    assert producers.preload([fplog]) == 1  # what the broker does when it opens
    assert producers.tracks(fplog)

    leader = leader_factory(leader_dir)
    fetcher = make_fetcher(leader, Stops(), producers=producers)
    fetcher.add_partition(fplog, leader_epoch=3, topic_id=topic_id)
    await run_until(
        fetcher, lambda: caught_up(fetcher.progress(TopicPartition(topic, 0)), 15)
    )
    assert leader.stop() == 0
    assert fplog.log_end_offset == 15
    assert producers.tracks(fplog)

    dup = append_checked(producers, fplog, _idem(7, 10, 5), leader_epoch=4)
    assert isinstance(dup, AppendResult)
    assert (dup.base_offset, dup.last_offset) == (10, 14)
    cut = append_checked(producers, fplog, _idem(8, 0, 3), leader_epoch=4)
    assert isinstance(cut, AppendResult)
    assert cut.base_offset == 15  # appended: the follower's own copy was cut
    assert append_checked(producers, fplog, _idem(7, 20, 1), leader_epoch=4) == (
        ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    )
    assert fplog.log_end_offset == 18


@pytest.mark.anyio
async def test_leader_killed_mid_copy_is_retried_then_resumed(
    tmp_path: Path, leader_factory: LeaderFactory, follower: LogManager
) -> None:
    """A leader killed in the middle of a copy shows as replica_fetch_error with
    back-off, nothing crashes, and the copy resumes when the leader is back."""
    leader = leader_factory()
    topic = "big"
    _create(leader.bootstrap, topic, 1)
    producer = Producer(
        {
            "bootstrap.servers": leader.bootstrap,
            "linger.ms": 5,
            "batch.num.messages": 5,  # many small batches: one per Fetch below
        }
    )
    total = 3000
    for i in range(total):
        producer.produce(topic, value=b"%06d" % i + b"." * 500, partition=0)
    assert producer.flush(20) == 0

    follower.create_topic(topic, 1)
    plog = follower.partition(topic, 0)
    stops = Stops()
    fetcher = make_fetcher(leader, stops, partition_max_bytes=4096, max_bytes=4096)
    fetcher.add_partition(plog, leader_epoch=0)
    tp = TopicPartition(topic, 0)
    with capture_logs() as events:
        async with anyio.create_task_group() as tg:
            tg.start_soon(fetcher.run)
            await wait_for(lambda: plog.log_end_offset > 0, 15)
            leader.kill()
            assert plog.log_end_offset < total
            await wait_for(lambda: fetcher.connect_failures >= 2, 10)
            leader = leader_factory(port=leader.port)
            await wait_for(lambda: caught_up(fetcher.progress(tp), total), 30)
            tg.cancel_scope.cancel()
    errors = [e for e in events if e["event"] == "replica_fetch_error"]
    assert len(errors) >= 2
    assert errors[1]["retry_in_s"] > errors[0]["retry_in_s"]  # exponential back-off
    assert [e["event"] for e in events].count("replica_fetch_started") >= 2
    assert stops.calls == []
    assert fetcher.connect_failures == 0
    assert leader.stop() == 0
    data, _start, end = _leader_log(tmp_path / "leader", topic, 0)
    assert end == total
    assert all_bytes(plog) == data


@pytest.mark.anyio
async def test_unreachable_leader_stops_every_partition_after_bounded_retries(
    follower: LogManager,
) -> None:
    """With max_connect_failures, a leader that never answers stops each partition
    with NETWORK_EXCEPTION and run() returns."""
    follower.create_topic("t", 2)
    stops = Stops()
    fetcher = make_fetcher(
        ("127.0.0.1", free_port()),
        stops,
        max_connect_failures=3,
        backoff_initial_s=0.01,
    )
    for p in (0, 1):
        fetcher.add_partition(follower.partition("t", p), leader_epoch=0)
    with capture_logs() as events, anyio.fail_after(10):
        await fetcher.run()
    assert sorted(stops.calls) == [
        (TopicPartition("t", 0), ErrorCode.NETWORK_EXCEPTION),
        (TopicPartition("t", 1), ErrorCode.NETWORK_EXCEPTION),
    ]
    assert [e["failures"] for e in events if e["event"] == "replica_fetch_error"] == [
        1,
        2,
        3,
    ]
    assert fetcher.partitions == []
