"""fsync and write EIO on one partition: it answers KAFKA_STORAGE_ERROR, the rest serve.

Faults are injected into a running broker through the test-only ``AILURUS_FAULTS``
file (:mod:`broker.disk.faults`), which makes chosen syscalls on one partition's files
fail with EIO, exactly as a failing disk does.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from protocol.error_codes import ErrorCode
from tests.reliability._harness import (
    BrokerProcess,
    create_topic,
    fetch_all,
    launch,
    metric,
    produce,
)

TOPIC = "eio"
STORAGE_ERROR = ErrorCode.KAFKA_STORAGE_ERROR


def _arm(path: Path, *faults: tuple[str, str, str]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(
        json.dumps(
            {"faults": [{"partition": p, "op": op, "errno": e} for p, op, e in faults]}
        )
    )
    os.replace(tmp, path)


def _offline(b: BrokerProcess, partition: int) -> float | None:
    return metric(
        b, "ailurus_partition_offline", f'topic="{TOPIC}",partition="{partition}"'
    )


def _values(b: BrokerProcess, partition: int) -> list[bytes | None]:
    return [r.value for r in fetch_all(b, TOPIC, partition)[1]]


def test_fsync_eio_takes_one_partition_offline_and_never_acks_past_it(
    tmp_path: Path,
) -> None:
    """An fsync EIO fails that produce, offlines the partition; others keep serving."""
    faults = tmp_path / "faults.json"
    b = launch(tmp_path, env={"AILURUS_FAULTS": str(faults)})
    create_topic(b, TOPIC, 3)
    with b.connect() as sock:
        for p in range(3):
            assert produce(sock, TOPIC, p, [b"before"]) == (0, 0)
        assert _offline(b, 1) == 0

        _arm(faults, (f"{TOPIC}/1", "fsync", "EIO"))
        code, _ = produce(sock, TOPIC, 1, [b"during"])
        assert code == STORAGE_ERROR
        assert produce(sock, TOPIC, 0, [b"other"]) == (0, 1)
        _arm(faults)  # the disk "recovers": the partition stays offline anyway
        for attempt in range(3):
            code, _ = produce(sock, TOPIC, 1, [b"after-%d" % attempt])
            assert code == STORAGE_ERROR
            assert produce(sock, TOPIC, 2, [b"other-%d" % attempt]) == (0, 1 + attempt)

    assert _offline(b, 1) == 1
    assert _offline(b, 0) == 0
    assert _offline(b, 2) == 0
    # Nothing past the failure is acknowledged or visible to consumers.
    assert _values(b, 1) == [b"before"]
    assert _values(b, 0) == [b"before", b"other"]
    assert _values(b, 2) == [b"before", b"other-0", b"other-1", b"other-2"]
    failures = b.events("fsync_failed")
    assert failures
    assert f"{TOPIC}/1" in str(failures[0]["error"])

    # A restart recovers the partition; acknowledged data is intact.
    b.stop()
    b = launch(tmp_path, env={"AILURUS_FAULTS": str(faults)})
    with b.connect() as sock:
        code, _offset = produce(sock, TOPIC, 1, [b"healed"])
        assert code == 0
    values = _values(b, 1)
    assert values[0] == b"before"
    assert values[-1] == b"healed"
    assert b"after-0" not in values
    assert _offline(b, 1) == 0
    assert b.stop() == 0


def test_write_eio_takes_one_partition_offline_and_leaves_no_torn_data(
    tmp_path: Path,
) -> None:
    """A write EIO answers KAFKA_STORAGE_ERROR, writes nothing and offlines that
    partition until a restart; the other partitions keep serving."""
    faults = tmp_path / "faults.json"
    b = launch(tmp_path, env={"AILURUS_FAULTS": str(faults)})
    create_topic(b, TOPIC, 2)
    with b.connect() as sock:
        assert produce(sock, TOPIC, 0, [b"a"]) == (0, 0)
        assert _offline(b, 0) == 0
        _arm(faults, (f"{TOPIC}/0", "write", "EIO"))
        assert produce(sock, TOPIC, 0, [b"x" * 1000] * 5)[0] == STORAGE_ERROR
        assert produce(sock, TOPIC, 1, [b"b"]) == (0, 0)
        _arm(faults)  # the disk "recovers": the partition stays offline anyway
        for attempt in range(3):
            assert produce(sock, TOPIC, 0, [b"c"])[0] == STORAGE_ERROR
            assert produce(sock, TOPIC, 1, [b"b"]) == (0, 1 + attempt)
    assert _offline(b, 0) == 1
    assert _offline(b, 1) == 0
    assert _values(b, 0) == [b"a"]  # readable, nothing past the failure
    assert len(_values(b, 1)) == 4
    [event] = b.events("partition_offline")
    assert (event["topic"], event["partition"]) == (TOPIC, 0)
    assert f"{TOPIC}/0" in str(event["error"])  # names the failing file
    b.stop()
    segment = b.data_dir / "kafka" / TOPIC / "0" / f"{0:020d}.log"
    assert segment.stat().st_size < 2 * 1000  # the refused 5 kB batch left nothing

    # A restart recovers the partition; acknowledged data is intact.
    b = launch(tmp_path, env={"AILURUS_FAULTS": str(faults)})
    with b.connect() as sock:
        assert produce(sock, TOPIC, 0, [b"healed"]) == (0, 1)
    assert _values(b, 0) == [b"a", b"healed"]
    assert _offline(b, 0) == 0
    assert b.stop() == 0
