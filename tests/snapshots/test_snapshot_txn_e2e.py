"""Snapshots of a partition with transactions between two real brokers.

Broker 1 takes raw transactional batches and WriteTxnMarkers (commits, aborts, one
transaction left open), ``ailurus snapshot create`` cuts at its last stable offset,
and ``cp -r`` drops the snapshot into broker 2, which creates the partition from it;
then the open transaction ends, more transactions follow, and an incremental
snapshot is hot-ingested at broker 2's live log end. After each step broker 2
answers read_committed Fetch (records and aborted-transaction lists) and
ListOffsets exactly as broker 1, and a confluent-kafka read_committed consumer reads
the same records from both.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from protocol.messages.fetch import PartitionData
from protocol.messages.metadata import MetadataRequest, MetadataRequestTopic
from tests import _txn
from tests._broker import request
from tests.snapshots.conftest import Broker, cp_r, wait_status

pytestmark = pytest.mark.integration

Factory = Callable[..., Broker]
TOPIC = "txn-snap"
READ_COMMITTED = 1


def create(b: Broker, *args: str) -> dict[str, object]:
    out = b.cli("--format", "json", "snapshot", "create", "--topic", TOPIC, *args)
    [result] = json.loads(out.stdout)
    assert isinstance(result, dict)
    return result


def copy_into(result: dict[str, object], b: Broker) -> None:
    cp_r(
        Path(str(result["path"])),
        b.data_dir / "snapshots" / str(result["topic_id"]) / str(result["snapshot_id"]),
    )
    wait_status(b, f"{result['topic_id']}/{result['snapshot_id']}", "applied", 30)


def committed_view(b: Broker) -> tuple[PartitionData, int]:
    """The raw read_committed Fetch from offset 0 and ListOffsets latest."""
    with b.connect() as sock:
        return (
            _txn.fetch(sock, TOPIC, READ_COMMITTED),
            _txn.latest(sock, TOPIC, READ_COMMITTED),
        )


def assert_same_answers(source: Broker, restored: Broker) -> PartitionData:
    (mine, lso), (theirs, their_lso) = committed_view(source), committed_view(restored)
    assert their_lso == lso == mine.last_stable_offset == theirs.last_stable_offset
    assert theirs.aborted_transactions == mine.aborted_transactions
    assert bytes(_joined(theirs.records)) == bytes(_joined(mine.records))
    return mine


def _joined(records: object) -> bytes:
    if records is None:
        return b""
    if isinstance(records, tuple):
        return b"".join(bytes(r) for r in records)
    assert isinstance(records, (bytes, bytearray, memoryview))
    return bytes(records)


def read_committed(b: Broker, count: int) -> list[bytes]:
    """What a confluent-kafka read_committed consumer reads from offset 0: the
    first ``count`` records and whatever more arrives in the next second."""
    consumer = Consumer(
        {
            "bootstrap.servers": b.bootstrap,
            "group.id": f"rc-{uuid.uuid4().hex[:6]}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    try:
        consumer.assign([TopicPartition(TOPIC, 0, 0)])
        got: list[bytes] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                value = msg.value()
                assert value is not None
                got.append(value)
            if len(got) >= count:
                deadline = min(deadline, time.monotonic() + 1.0)
        return got
    finally:
        consumer.close()


def test_restore_and_hot_ingest_answer_read_committed_as_the_source(
    brokers: Factory,
) -> None:
    """A snapshot taken with a transaction open restores up to the last stable
    offset with the same aborted transactions; an incremental one taken after the
    transaction ended hot-ingests at the live log end, and both brokers answer
    every read_committed request the same."""
    b1, b2 = brokers("b1"), brokers("b2")
    with b1.connect() as sock:
        request(
            sock,
            3,
            9,
            MetadataRequest(
                topics=(MetadataRequestTopic(name=TOPIC),),
                allow_auto_topic_creation=True,
            ),
        )
        p1, p2, p3 = (_txn.producer_id(sock) for _ in range(3))
        _txn.produce(sock, TOPIC, _txn.plain(b"p0"))  # 0
        _txn.produce(sock, TOPIC, _txn.txn(p1, 0, b"a1", b"a2"))  # 1-2 aborted
        _txn.produce(sock, TOPIC, _txn.txn(p2, 0, b"c1"))  # 3
        assert _txn.markers(sock, TOPIC, (p1, False, 0)) == [0]  # 4
        _txn.produce(sock, TOPIC, _txn.plain(b"p1"))  # 5
        assert _txn.markers(sock, TOPIC, (p2, True, 0)) == [0]  # 6
        _txn.produce(sock, TOPIC, _txn.txn(p3, 0, b"open"))  # 7: stays open
        _txn.produce(sock, TOPIC, _txn.plain(b"p2"))  # 8
        assert _txn.latest(sock, TOPIC, READ_COMMITTED) == 7
    first = create(b1)
    assert first["last_offset"] == 6
    meta = json.loads(Path(str(first["path"]), "meta.json").read_bytes())
    assert meta["last_stable_offset"] == 7
    assert [i["file"] for i in meta["txn_indexes"]] == ["00000000000000000000.txnindex"]
    copy_into(first, b2)
    fetched = assert_same_answers(b1, b2)
    assert [
        (a.producer_id, a.first_offset) for a in fetched.aborted_transactions or ()
    ] == [(p1, 1)]
    expected = [b"p0", b"c1", b"p1"]
    assert read_committed(b1, 3) == read_committed(b2, 3) == expected
    # the open transaction aborts, another commits: an incremental snapshot
    with b1.connect() as sock:
        assert _txn.markers(sock, TOPIC, (p3, False, 0)) == [0]  # 9
        _txn.produce(sock, TOPIC, _txn.txn(p1, 2, b"c2"))  # 10
        assert _txn.markers(sock, TOPIC, (p1, True, 0)) == [0]  # 11
    second = create(b1, "--incremental")
    assert second["last_offset"] == 11
    copy_into(second, b2)
    fetched = assert_same_answers(b1, b2)
    assert fetched.last_stable_offset == 12
    assert [
        (a.producer_id, a.first_offset) for a in fetched.aborted_transactions or ()
    ] == [
        (p1, 1),
        (p3, 7),
    ]
    expected = [b"p0", b"c1", b"p1", b"p2", b"c2"]
    assert read_committed(b1, 5) == read_committed(b2, 5) == expected
    # the restored partition takes transactions of its own
    with b2.connect() as sock:
        _txn.produce(sock, TOPIC, _txn.txn(p2, 1, b"late"))
        assert _txn.latest(sock, TOPIC, READ_COMMITTED) == 12
        assert _txn.markers(sock, TOPIC, (p2, True, 0)) == [0]
        assert _txn.latest(sock, TOPIC, READ_COMMITTED) == 14
