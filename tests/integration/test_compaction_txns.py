"""Log compaction of a topic with transactions, on a real broker.

Raw transactional Produce requests with keys and WriteTxnMarkers commit some
transactions and abort others on a ``cleanup.policy=compact`` topic with small
segments; one transaction stays open for a while. The broker's cleaner
(``log.cleaner.backoff.ms=200``) never cleans at or past the last stable offset,
removes the aborted records, and removes the markers once their transactions'
records are gone and ``delete.retention.ms`` passed. A confluent-kafka
read_committed consumer sees exactly the latest committed value of each key.
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, TopicPartition
from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from protocol.messages.fetch import (
    FetchPartition,
    FetchRequest,
    FetchResponse,
    FetchTopic,
)
from protocol.record_builder import RecordInput, build_batch, iter_records
from protocol.records import iter_batches
from storage.transactions import marker_of
from tests import _txn
from tests._broker import BrokerProcess, request, start_broker

pytestmark = pytest.mark.integration

KEYS = 5
RETENTION_MS = 2000
READ_UNCOMMITTED, READ_COMMITTED = 0, 1


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    b = start_broker(
        tmp_path_factory.mktemp("compaction-txns") / "data",
        "--set",
        "log.cleaner.backoff.ms=200",
    )
    yield b
    assert b.stop() == 0


def create_topic(broker: BrokerProcess) -> str:
    topic = f"compact-txn-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        admin.create_topics(
            [
                NewTopic(
                    topic,
                    num_partitions=1,
                    replication_factor=1,
                    topic_configs={
                        "cleanup.policy": "compact",
                        "segment.bytes": "2048",
                        "min.cleanable.dirty.ratio": "0.01",
                        "delete.retention.ms": str(RETENTION_MS),
                    },
                )
            ]
        )
    finally:
        admin.close()
    return topic


class Txns:
    """A test acting as transaction coordinator: keyed transactional batches and
    markers, and the model of what read_committed readers must see."""

    def __init__(self, sock: socket.socket, topic: str) -> None:
        self.sock = sock
        self.topic = topic
        self.seqs: dict[int, int] = {}
        self.pending: dict[int, list[tuple[bytes, bytes]]] = {}
        self.latest: dict[bytes, bytes] = {}  # key -> latest committed value
        self.aborted: set[bytes] = set()

    def write(self, pid: int, key: bytes, value: bytes) -> int:
        seq = self.seqs.get(pid, 0)
        self.seqs[pid] = seq + 1
        batch = build_batch(
            [RecordInput(key=key, value=value)],
            producer_id=pid,
            producer_epoch=0,
            base_sequence=seq,
            is_transactional=True,
        )
        self.pending.setdefault(pid, []).append((key, value))
        return _txn.produce(self.sock, self.topic, batch)

    def end(self, pid: int, *, commit: bool) -> None:
        assert _txn.markers(self.sock, self.topic, (pid, commit, 0)) == [0]
        for key, value in self.pending.pop(pid):
            if commit:
                self.latest[key] = value
            else:
                self.aborted.add(value)

    def rounds(self, committer: int, aborter: int, start: int, count: int) -> None:
        for r in range(start, start + count):
            self.write(committer, b"k%d" % (r % KEYS), b"c%d" % r)
            self.end(committer, commit=True)
            self.write(aborter, b"k%d" % ((r + 1) % KEYS), b"a%d" % r)
            self.end(aborter, commit=False)


def cleaned_offset(broker: BrokerProcess, topic: str) -> int:
    status, body = broker.http(f"/v1/topics/{topic}")
    assert status == 200
    compaction = json.loads(body)["partitions"][0]["compaction"]
    return int(compaction["last_cleaned_offset"])


def wait_until(what: str, check: object, timeout: float = 60.0) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def log_contents(
    broker: BrokerProcess, topic: str
) -> list[tuple[int, bool, bytes | None, bool | None]]:
    """Every batch from offset 0 (read_uncommitted): (offset, control, first value
    or None, commit for a marker with a record)."""
    out: list[tuple[int, bool, bytes | None, bool | None]] = []
    offset = 0
    with broker.connect() as sock:
        while True:
            part = _fetch_from(sock, topic, offset)
            data = part.records
            raw = (
                b"".join(bytes(r) for r in data)
                if isinstance(data, tuple)
                else bytes(data or b"")
            )
            if not raw:
                return out
            for pos, h in iter_batches(raw):
                if h.is_control:
                    info = marker_of(raw[pos : pos + h.size])
                    out.append(
                        (
                            h.base_offset,
                            True,
                            None,
                            None if info is None else info.commit,
                        )
                    )
                else:
                    recs = list(iter_records(raw, pos))
                    out.append(
                        (h.base_offset, False, recs[0].value if recs else None, None)
                    )
                offset = h.next_offset
            if offset >= part.high_watermark:
                return out


def _fetch_from(sock: socket.socket, topic: str, offset: int) -> object:

    resp = request(
        sock,
        1,
        11,
        FetchRequest(
            max_wait_ms=0,
            min_bytes=0,
            isolation_level=READ_UNCOMMITTED,
            topics=(
                FetchTopic(
                    topic=topic,
                    partitions=(
                        FetchPartition(
                            partition=0,
                            fetch_offset=offset,
                            partition_max_bytes=1 << 20,
                        ),
                    ),
                ),
            ),
        ),
    )
    assert isinstance(resp, FetchResponse)
    return resp.responses[0].partitions[0]


def read_committed(broker: BrokerProcess, topic: str, lso: int) -> dict[bytes, bytes]:
    """Key -> last value a confluent-kafka read_committed consumer reads below
    ``lso`` (asserting the offsets it reads increase)."""
    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": f"rc-{uuid.uuid4().hex[:6]}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
        }
    )
    seen: dict[bytes, bytes] = {}
    last = -1
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == -191 and msg.offset() >= lso:  # EOF
                    return seen
                continue
            assert msg.offset() > last
            last = msg.offset()
            key, value = msg.key(), msg.value()
            assert key is not None
            assert value is not None
            seen[key] = value
        raise AssertionError(f"the consumer did not reach {lso}: {last}")
    finally:
        consumer.close()


def test_compaction_removes_aborted_records_then_markers_and_spares_open_ones(
    broker: BrokerProcess,
) -> None:
    """Below the last stable offset the cleaner removes aborted records at once,
    never touches the open transaction, and removes idle markers after
    delete.retention.ms; read_committed readers see the latest committed values."""
    topic = create_topic(broker)
    with broker.connect() as sock:
        committer, aborter, late = (_txn.producer_id(sock) for _ in range(3))
        txns = Txns(sock, topic)
        txns.rounds(committer, aborter, 0, 30)
        below = dict(txns.latest)  # what is committed below the open transaction
        open_at = txns.write(late, b"k0", b"open")  # stays open for now
        txns.rounds(committer, aborter, 30, 20)  # closed segments past the LSO
        lso = _txn.latest(sock, topic, READ_COMMITTED)
        assert lso == open_at
        wait_until("a cleaning round", lambda: cleaned_offset(broker, topic) > 0)
        cleaned = cleaned_offset(broker, topic)
        assert 0 < cleaned <= lso
        contents = log_contents(broker, topic)
        assert (open_at, False, b"open", None) in contents  # never cleaned
        assert not [c for c in contents if c[0] < cleaned and c[2] in txns.aborted]
        assert read_committed(broker, topic, lso) == below
        # the open transaction commits; more traffic dirties the log again
        txns.end(late, commit=True)
        txns.rounds(committer, aborter, 50, 40)
        end = _txn.latest(sock, topic, READ_COMMITTED)

    def markers_gone() -> bool:
        if cleaned_offset(broker, topic) < end - 200:
            return False
        found = log_contents(broker, topic)
        return not [c for c in found if c[0] < cleaned and c[1] and c[3] is False]

    wait_until("the ABORT markers' removal", markers_gone)
    contents = log_contents(broker, topic)
    assert not [c for c in contents if c[0] < cleaned and c[2] in txns.aborted]
    assert read_committed(broker, topic, end) == txns.latest
