"""TxnOffsetCommit (key 28) and OffsetFetch's require_stable on a real single-node broker.

Raw requests through ``protocol/`` (its encodings are checked against kio): the
offsets a transactional producer commits are answered at once but stay invisible
to OffsetFetch (UNSTABLE_OFFSET_COMMIT with ``require_stable``) until the
transaction ends, which on a single node only the transaction coordinator does
(``tests/broker/test_txn_offsets_service.py`` drives that part); the per-partition
errors as Kafka answers them; and an answered commit outlives a killed broker.
One broker for the module (each test its own group), and one more that is killed.
"""

from __future__ import annotations

import signal
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from protocol.error_codes import ErrorCode
from protocol.messages.create_topics import (
    CreatableTopic,
    CreateTopicsRequest,
    CreateTopicsResponse,
)
from protocol.messages.offset_commit import (
    OffsetCommitRequest,
    OffsetCommitRequestPartition,
    OffsetCommitRequestTopic,
    OffsetCommitResponse,
)
from protocol.messages.offset_fetch import (
    OffsetFetchRequest,
    OffsetFetchRequestGroup,
    OffsetFetchRequestTopic,
    OffsetFetchRequestTopics,
    OffsetFetchResponse,
)
from protocol.messages.txn_offset_commit import (
    TxnOffsetCommitRequest,
    TxnOffsetCommitRequestPartition,
    TxnOffsetCommitRequestTopic,
    TxnOffsetCommitResponse,
)
from tests._broker import BrokerProcess, request, start_broker
from tests._txn import producer_id

TOPIC = "txn-offsets"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    b = start_broker(tmp_path_factory.mktemp("txnoffsets") / "data", timeout=30)
    yield b
    assert b.stop() == 0


def _create_topic(s: socket.socket) -> None:
    resp = request(
        s,
        19,
        5,
        CreateTopicsRequest(
            topics=(
                CreatableTopic(name=TOPIC, num_partitions=2, replication_factor=1),
            ),
            timeout_ms=10000,
        ),
    )
    assert isinstance(resp, CreateTopicsResponse)
    assert resp.topics[0].error_code == ErrorCode.NONE


@pytest.fixture(scope="module")
def sock(broker: BrokerProcess) -> Iterator[socket.socket]:
    s = broker.connect()
    s.settimeout(30)
    _create_topic(s)
    yield s
    s.close()


def _group() -> str:
    return f"g-{uuid.uuid4().hex[:8]}"


def txn_commit(
    sock: socket.socket,
    group: str,
    pid: int,
    offsets: dict[int, int],
    *,
    version: int = 3,
    epoch: int = 0,
    topic: str = TOPIC,
    metadata: str = "m",
    member_id: str = "",
    generation_id: int = -1,
) -> dict[int, int]:
    """TxnOffsetCommit of ``{partition: offset}``; error code per partition."""
    resp = request(
        sock,
        28,
        version,
        TxnOffsetCommitRequest(
            transactional_id="tx-1",
            group_id=group,
            producer_id=pid,
            producer_epoch=epoch,
            member_id=member_id,
            generation_id=generation_id,
            topics=(
                TxnOffsetCommitRequestTopic(
                    name=topic,
                    partitions=tuple(
                        TxnOffsetCommitRequestPartition(
                            partition_index=p,
                            committed_offset=o,
                            committed_leader_epoch=1,
                            committed_metadata=metadata,
                        )
                        for p, o in offsets.items()
                    ),
                ),
            ),
        ),
    )
    assert isinstance(resp, TxnOffsetCommitResponse)
    assert [t.name for t in resp.topics] == [topic]
    return {p.partition_index: p.error_code for p in resp.topics[0].partitions}


def fetch(
    sock: socket.socket, group: str, *, stable: bool, version: int = 7
) -> dict[int, tuple[int, int]]:
    """OffsetFetch of partitions 0 and 1: {partition: (offset, error)}."""
    if version >= 8:
        resp = request(
            sock,
            9,
            version,
            OffsetFetchRequest(
                groups=(
                    OffsetFetchRequestGroup(
                        group_id=group,
                        topics=(
                            OffsetFetchRequestTopics(
                                name=TOPIC, partition_indexes=(0, 1)
                            ),
                        ),
                    ),
                ),
                require_stable=stable,
            ),
        )
        assert isinstance(resp, OffsetFetchResponse)
        parts = resp.groups[0].topics[0].partitions
        return {p.partition_index: (p.committed_offset, p.error_code) for p in parts}
    resp = request(
        sock,
        9,
        version,
        OffsetFetchRequest(
            group_id=group,
            topics=(OffsetFetchRequestTopic(name=TOPIC, partition_indexes=(0, 1)),),
            require_stable=stable,
        ),
    )
    assert isinstance(resp, OffsetFetchResponse)
    assert resp.error_code == ErrorCode.NONE
    return {
        p.partition_index: (p.committed_offset, p.error_code)
        for p in resp.topics[0].partitions
    }


def plain_commit(sock: socket.socket, group: str, partition: int, offset: int) -> None:
    resp = request(
        sock,
        8,
        8,
        OffsetCommitRequest(
            group_id=group,
            generation_id_or_member_epoch=-1,
            member_id="",
            topics=(
                OffsetCommitRequestTopic(
                    name=TOPIC,
                    partitions=(
                        OffsetCommitRequestPartition(
                            partition_index=partition,
                            committed_offset=offset,
                            committed_metadata="",
                        ),
                    ),
                ),
            ),
        ),
    )
    assert isinstance(resp, OffsetCommitResponse)
    assert resp.topics[0].partitions[0].error_code == ErrorCode.NONE


UNSTABLE = ErrorCode.UNSTABLE_OFFSET_COMMIT


@pytest.mark.parametrize("version", [0, 2, 3, 4])
def test_pending_offsets_are_invisible_and_unstable(
    sock: socket.socket, version: int
) -> None:
    """Every served version is answered; the offsets are not fetched, and
    require_stable (v7, v8) marks exactly the pending partition unstable."""
    group = _group()
    plain_commit(sock, group, 1, 4)
    pid = producer_id(sock)
    assert txn_commit(sock, group, pid, {0: 9}, version=version) == {0: 0}
    assert fetch(sock, group, stable=False) == {0: (-1, 0), 1: (4, 0)}
    assert fetch(sock, group, stable=True) == {0: (-1, UNSTABLE), 1: (4, 0)}
    assert fetch(sock, group, stable=True, version=8) == {0: (-1, UNSTABLE), 1: (4, 0)}
    assert fetch(sock, group, stable=False, version=8) == {0: (-1, 0), 1: (4, 0)}


def test_partition_errors(sock: socket.socket) -> None:
    """Unknown partitions, oversized metadata, an unknown member (v3), an older
    producer epoch and an empty group id are refused as Kafka refuses them."""
    group = _group()
    pid = producer_id(sock)
    assert txn_commit(sock, group, pid, {0: 1, 5: 1}) == {
        0: ErrorCode.NONE,
        5: ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
    }
    assert txn_commit(sock, group, pid, {1: 1}, metadata="x" * 5000) == {
        1: ErrorCode.OFFSET_METADATA_TOO_LARGE
    }
    assert txn_commit(sock, group, pid, {1: 1}, member_id="ghost", generation_id=1) == {
        1: ErrorCode.UNKNOWN_MEMBER_ID
    }
    assert txn_commit(sock, group, pid, {1: 1}, epoch=2) == {1: ErrorCode.NONE}
    assert txn_commit(sock, group, pid, {1: 1}, epoch=1) == {
        1: ErrorCode.INVALID_PRODUCER_EPOCH
    }
    assert txn_commit(sock, "", pid, {1: 1}) == {1: ErrorCode.INVALID_GROUP_ID}
    assert txn_commit(sock, group, pid, {0: 1}, topic="no-such-topic") == {
        0: ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    }


def test_pending_offsets_survive_a_killed_broker(tmp_path: Path) -> None:
    """An answered TxnOffsetCommit was fsynced: after SIGKILL and a restart the
    offset is still pending (unstable) and still not fetched, and the producer's
    epoch still fences."""
    data = tmp_path / "data"
    first = start_broker(data, timeout=30)
    try:
        with first.connect() as s:
            s.settimeout(30)
            _create_topic(s)
            plain_commit(s, "g", 1, 4)
            pid = producer_id(s)
            assert txn_commit(s, "g", pid, {0: 9}, epoch=1) == {0: 0}
    finally:
        first.stop(signal.SIGKILL)
    second = start_broker(data, timeout=30)
    try:
        with second.connect() as s:
            s.settimeout(30)
            assert fetch(s, "g", stable=True) == {0: (-1, UNSTABLE), 1: (4, 0)}
            assert fetch(s, "g", stable=False) == {0: (-1, 0), 1: (4, 0)}
            assert txn_commit(s, "g", pid, {0: 5}, epoch=0) == {
                0: ErrorCode.INVALID_PRODUCER_EPOCH
            }
    finally:
        assert second.stop() == 0
