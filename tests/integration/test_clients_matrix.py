"""Real-client compatibility matrix: every client, every codec, against one broker.

For each client (kafka-python with its default producer, aiokafka, confluent-kafka,
kcat, kafkajs) and each codec (none, gzip, snappy, lz4, zstd; kafkajs's snappy, lz4
and zstd are plugins in ``tests/js/codecs.js``), the client creates a topic through
its admin API, produces records with keys, headers and timestamps to explicit
partitions, and reads them back with manual assignment from the earliest offset,
from an explicit offset and from the latest offset; another client reads the same
records too; then the client deletes the topic. The stored batches carry the codec (and, for kafka-python's default
producer, a producer id). Every record read back equals what was sent, in order, per
partition, at consecutive offsets. A second test has every client read what each
client produced (all 25 pairs, gzip); a third has kafkajs read the snappy, lz4 and
zstd batches every other client wrote.

kafkajs has no manual-assignment consumer: its reads go through its own Fetch API
(``tests/js/kafka_client.js``). kcat has no admin API: librdkafka's (through
confluent-kafka) creates and deletes its topics; it cannot set per-record headers or
timestamps, so its records share one header set and carry producer-chosen times.

CI size (35–55 s on 2 busy cores): 10,000 records for one codec per client and 1,000
for the others; the ``slow`` variant runs 10,000 for the rest (30–40 s more).
"""

from __future__ import annotations

import random
import time
import uuid
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from protocol.records import BatchHeader, iter_batches
from tests._broker import BrokerProcess, start_broker
from tests.integration._cli_drivers import KCAT_HEADERS, KafkajsDriver, KcatDriver
from tests.integration._client_drivers import (
    AiokafkaDriver,
    ConfluentDriver,
    Driver,
    KafkaPythonDriver,
    Rec,
    ck_create_topic,
    ck_delete_topic,
    ck_list_topics,
    without_offset,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

PARTITIONS = 3
FULL = 10_000
SMALL = 1_000
LATEST_BATCH = 25


DRIVERS: dict[str, Driver] = {
    "kafka-python": KafkaPythonDriver(),  # its default producer: idempotent
    "aiokafka": AiokafkaDriver(),
    "confluent-kafka": ConfluentDriver(),
    "kcat": KcatDriver(),
    "kafkajs": KafkajsDriver(),
}
# the codec each client runs with FULL records in CI (the rest run SMALL)
FULL_CODEC = {
    "kafka-python": "lz4",
    "aiokafka": "zstd",
    "confluent-kafka": "none",
    "kcat": "snappy",
    "kafkajs": "gzip",
}
# who reads each client's records back as well
CROSS_READER = {
    "kafka-python": "confluent-kafka",
    "aiokafka": "kafka-python",
    "confluent-kafka": "aiokafka",
    "kcat": "kafka-python",
    "kafkajs": "confluent-kafka",
}


def _cases(*, full_only: bool) -> Iterator[object]:
    for name, driver in DRIVERS.items():
        for codec in driver.codecs:
            ci = codec == FULL_CODEC[name]
            if full_only and ci:
                continue
            count = FULL if (ci or full_only) else SMALL
            yield pytest.param(name, codec, count, id=f"{name}-{codec}-{count}")


@pytest.fixture(scope="module")
def matrix_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """One broker for the whole matrix (each case uses its own topic)."""
    proc = start_broker(tmp_path_factory.mktemp("matrix") / "data")
    try:
        yield proc
        assert proc.proc.poll() is None, proc.log_path.read_text()[-5000:]
        assert proc.stop() == 0, proc.log_path.read_text()[-5000:]
        errors = [e for e in proc.logs() if e.get("level") in ("error", "critical")]
        assert errors == []
    finally:
        proc.kill()


def make_records(count: int, *, seed: int, varied: bool, first: int = 0) -> list[Rec]:
    """``count`` records spread round-robin over the partitions, values compressible.

    ``varied``: null keys/values, empty and repeated header keys, explicit timestamps.
    Otherwise (kcat) every record has the same headers and the producer stamps time.
    """
    rnd = random.Random(seed)
    base_ts = int(time.time() * 1000) - 3_600_000
    words = [b"ailurus", b"panda", b"kafka", b"segment", b"offset", b"batch"]
    out = []
    for i in range(first, first + count):
        value: bytes | None = (
            b"-".join(rnd.choices(words, k=rnd.randint(1, 40))) + b"#%d" % i
        )
        key: bytes | None = b"key-%d" % i
        headers: tuple[tuple[str, bytes], ...] = KCAT_HEADERS
        timestamp: int | None = None
        if varied:
            timestamp = base_ts + i
            headers = (("seq", b"%d" % i), ("src", b"matrix"))
            if i % 5 == 0:
                headers = ()
            elif i % 7 == 0:
                headers = (
                    ("dup", b"a"),
                    ("dup", b"b"),
                    ("bin", bytes([0, 255, i % 256])),
                )
            if i % 101 == 50:
                value = None
            if i % 103 == 7 and value is not None:
                key = None
        out.append(
            Rec(
                partition=i % PARTITIONS,
                key=key,
                value=value,
                headers=headers,
                timestamp=timestamp,
            )
        )
    return out


def by_partition(records: Sequence[Rec]) -> dict[int, list[Rec]]:
    out: dict[int, list[Rec]] = {p: [] for p in range(PARTITIONS)}
    for r in records:
        out[r.partition].append(r)
    return out


def assert_same(
    sent: Sequence[Rec],
    got: Sequence[Rec],
    *,
    first_offset: int,
    window: tuple[int, int],
) -> None:
    """``got`` equals ``sent`` record by record at consecutive offsets.

    Where the producer chose the timestamp (``sent`` has None), it is within ``window``.
    """
    assert len(got) == len(sent)
    for i, (s, g) in enumerate(zip(sent, got, strict=True)):
        assert g.offset == first_offset + i, (i, g)
        if s.timestamp is None:
            assert g.timestamp is not None
            assert window[0] <= g.timestamp <= window[1], (i, g)
            g = replace(g, timestamp=None)
        assert without_offset(g) == s, (i, s, g)


def stored_batches(data_dir: Path, topic: str) -> list[BatchHeader]:
    """Headers of the record batches the broker stored for ``topic`` (all segments)."""
    out: list[BatchHeader] = []
    for log in sorted((data_dir / "kafka" / topic).glob("*/*.log")):
        out.extend(h for _, h in iter_batches(log.read_bytes()))
    return out


def check_latest(
    driver: Driver, bootstrap: str, topic: str, codec: str, *, seed: int, start_at: int
) -> None:
    """A consumer at "latest" sees nothing older and everything newer, in order.

    Some clients resolve "latest" lazily, so records are produced one at a time until
    the first arrives; after that a batch follows and must arrive intact.
    """
    partition = 1
    follower = driver.follow_latest(bootstrap, topic, partition)
    try:
        sent: list[Rec] = []
        got: list[Rec] = []
        t0 = int(time.time() * 1000)
        for i in range(40):
            probe = [
                replace(r, partition=partition)
                for r in make_records(
                    1, seed=seed + i, varied=driver.varied_records, first=start_at + i
                )
            ]
            sent.extend(probe)
            driver.produce(bootstrap, topic, codec, probe)
            got.extend(follower.poll(0.5))
            if got:
                break
        assert got, "the consumer at latest saw none of 40 records"
        batch = [
            r
            for r in make_records(
                3 * LATEST_BATCH, seed=seed, varied=driver.varied_records, first=10**6
            )
            if r.partition == partition
        ]
        sent.extend(batch)
        driver.produce(bootstrap, topic, codec, batch)
        deadline = time.monotonic() + 30
        last = batch[-1].value
        while all(g.value != last for g in got) and time.monotonic() < deadline:
            got.extend(follower.poll(0.5))
        t1 = int(time.time() * 1000)
        first = next(i for i, s in enumerate(sent) if s.value == got[0].value)
        assert_same(sent[first:], got, first_offset=got[0].offset, window=(t0, t1))
    finally:
        follower.close()


@pytest.mark.parametrize(("client", "codec", "count"), list(_cases(full_only=False)))
def test_client_round_trips_records(
    matrix_broker: BrokerProcess, client: str, codec: str, count: int
) -> None:
    """The client's records come back intact from earliest, an offset and latest."""
    run_matrix_case(matrix_broker, client, codec, count)


@pytest.mark.slow
@pytest.mark.parametrize(("client", "codec", "count"), list(_cases(full_only=True)))
def test_client_round_trips_10k_records(
    matrix_broker: BrokerProcess, client: str, codec: str, count: int
) -> None:
    """The full-size variant: 10,000 records for every client and codec."""
    run_matrix_case(matrix_broker, client, codec, count)


def run_matrix_case(broker: BrokerProcess, client: str, codec: str, count: int) -> None:
    """One matrix cell: admin create, produce, read back three ways, admin delete."""
    driver = DRIVERS[client]
    bootstrap = broker.bootstrap
    topic = f"matrix-{client}-{codec}-{uuid.uuid4().hex[:8]}"
    seed = zlib.crc32(f"{client}/{codec}".encode()) & 0xFFFF

    driver.create_topic(bootstrap, topic, PARTITIONS)
    assert topic in ck_list_topics(bootstrap)

    records = make_records(count, seed=seed, varied=driver.varied_records)
    sent = by_partition(records)
    t0 = int(time.time() * 1000)
    driver.produce(bootstrap, topic, codec, records)
    window = (t0, int(time.time() * 1000))
    # librdkafka sends a batch uncompressed when compressing would grow it
    batches = stored_batches(broker.data_dir, topic)
    stored = {h.compression.name.lower() for h in batches}
    assert codec in stored
    assert stored <= {codec, "none"}
    if client == "kafka-python":  # the default producer is idempotent
        assert all(h.is_idempotent for h in batches)

    # from earliest, every partition
    got = driver.read(bootstrap, topic, {p: ("earliest", len(sent[p])) for p in sent})
    for p in sent:
        assert_same(sent[p], got[p], first_offset=0, window=window)

    # the same records, read by another client
    reader = DRIVERS[CROSS_READER[client]]
    crossed = reader.read(
        bootstrap, topic, {p: ("earliest", len(sent[p])) for p in sent}
    )
    for p in sent:
        assert crossed[p] == got[p], f"{reader.name} reads differently, partition {p}"

    # from an explicit offset
    mid = len(sent[2]) // 2
    tail = driver.read(bootstrap, topic, {2: (mid, len(sent[2]) - mid)})
    assert_same(sent[2][mid:], tail[2], first_offset=mid, window=window)

    # from latest
    check_latest(driver, bootstrap, topic, codec, seed=seed, start_at=count)

    driver.delete_topic(bootstrap, topic)
    assert topic not in ck_list_topics(bootstrap)


@pytest.mark.parametrize("producer", list(DRIVERS))
def test_every_client_reads_what_each_client_produced(
    matrix_broker: BrokerProcess, producer: str
) -> None:
    """Records one client produced read back the same through every other client.

    gzip is the codec every client has; the records are the kind kcat can send and
    print (same headers on every record, producer-chosen timestamps).
    """
    bootstrap = matrix_broker.bootstrap
    topic = f"cross-{producer}-{uuid.uuid4().hex[:8]}"
    ck_create_topic(bootstrap, topic, PARTITIONS)
    records = make_records(300, seed=7, varied=False)
    sent = by_partition(records)
    t0 = int(time.time() * 1000)
    DRIVERS[producer].produce(bootstrap, topic, "gzip", records)
    window = (t0, int(time.time() * 1000))
    reads = {}
    for reader, driver in DRIVERS.items():
        reads[reader] = driver.read(
            bootstrap, topic, {p: ("earliest", len(sent[p])) for p in sent}
        )
        for p in sent:
            assert_same(sent[p], reads[reader][p], first_offset=0, window=window)
    # and they agree on the timestamps the producer chose
    assert all(r == reads["confluent-kafka"] for r in reads.values())
    ck_delete_topic(bootstrap, topic)


@pytest.mark.parametrize("codec", ["snappy", "lz4", "zstd"])
def test_kafkajs_reads_what_each_client_compressed(
    matrix_broker: BrokerProcess, codec: str
) -> None:
    """kafkajs's snappy, lz4 and zstd plugins decode every other client's batches.

    The plugins are not kafkajs's own (``tests/js/codecs.js``): each other client
    writes its own framing options (xerial or raw snappy, lz4 block and content
    checksums, zstd frames with or without a content size) into one topic, and
    kafkajs reads all of it the way confluent-kafka does.
    """
    bootstrap = matrix_broker.bootstrap
    topic = f"kafkajs-{codec}-{uuid.uuid4().hex[:8]}"
    ck_create_topic(bootstrap, topic, PARTITIONS)
    producers = [name for name in DRIVERS if name != "kafkajs"]
    sent: dict[int, list[Rec]] = {p: [] for p in range(PARTITIONS)}
    t0 = int(time.time() * 1000)
    stored = 0
    for i, name in enumerate(producers):
        records = make_records(150, seed=i, varied=False, first=1000 * i)
        DRIVERS[name].produce(bootstrap, topic, codec, records)
        for p, recs in by_partition(records).items():
            sent[p].extend(recs)
        batches = stored_batches(matrix_broker.data_dir, topic)
        codecs = {h.compression.name.lower() for h in batches[stored:]}
        assert codec in codecs, (name, codecs)
        assert codecs <= {codec, "none"}, (name, codecs)
        stored = len(batches)
    window = (t0, int(time.time() * 1000))
    starts = {p: ("earliest", len(sent[p])) for p in sent}
    got = DRIVERS["kafkajs"].read(bootstrap, topic, starts)
    for p in sent:
        assert_same(sent[p], got[p], first_offset=0, window=window)
    assert got == DRIVERS["confluent-kafka"].read(bootstrap, topic, starts)
    ck_delete_topic(bootstrap, topic)
