"""Idempotent produce on a real partition log: dedup, errors, rebuild after restart."""

from __future__ import annotations

from pathlib import Path

from broker.producers.service import NODE_ID_SHIFT, ProducerService, append_checked
from protocol.error_codes import ErrorCode
from protocol.record_builder import RecordInput, build_batch
from storage.log_manager import LogManager
from storage.partition_log import AppendResult
from storage.producer_state import ProducerIdAllocator


def _batch(pid: int, epoch: int, seq: int, n: int = 2) -> bytes:
    return build_batch(
        [RecordInput(value=f"v{seq + i}".encode()) for i in range(n)],
        producer_id=pid,
        producer_epoch=epoch,
        base_sequence=seq,
    )


def test_retry_is_acknowledged_with_original_offsets_and_not_appended(
    tmp_path: Path,
) -> None:
    """A retried batch returns its first offsets; the log does not grow."""
    lm = LogManager(str(tmp_path / "data"), {})
    lm.create_topic("t", 1)
    plog = lm.partition("t", 0)
    svc = ProducerService(ProducerIdAllocator(tmp_path))
    _, pid, epoch = svc.init_producer_id()
    first = append_checked(svc, plog, _batch(pid, epoch, 0), leader_epoch=0)
    second = append_checked(svc, plog, _batch(pid, epoch, 2), leader_epoch=0)
    assert isinstance(first, AppendResult)
    assert isinstance(second, AppendResult)
    again = append_checked(svc, plog, _batch(pid, epoch, 0), leader_epoch=0)
    assert isinstance(again, AppendResult)
    assert (again.base_offset, again.last_offset) == (0, 1)
    assert plog.log_end_offset == 4
    assert append_checked(svc, plog, _batch(pid, epoch, 9), leader_epoch=0) == (
        ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    )
    plain = append_checked(
        svc, plog, build_batch([RecordInput(value=b"x")]), leader_epoch=0
    )
    assert isinstance(plain, AppendResult)
    assert plain.base_offset == 4
    lm.close()
    # restart: state comes back from the log tail
    lm2 = LogManager(str(tmp_path / "data"), {})
    plog2 = lm2.partition("t", 0)
    svc2 = ProducerService(ProducerIdAllocator(tmp_path))
    dup = append_checked(svc2, plog2, _batch(pid, epoch, 2), leader_epoch=0)
    assert isinstance(dup, AppendResult)
    assert dup.base_offset == 2
    assert plog2.log_end_offset == 5
    assert append_checked(svc2, plog2, _batch(pid, epoch - 1, 4), leader_epoch=0) == (
        ErrorCode.INVALID_PRODUCER_EPOCH
    )
    _, new_pid, _ = svc2.init_producer_id()
    assert new_pid > pid
    lm2.close()


def test_without_service_appends_unchecked(tmp_path: Path) -> None:
    """When no producer service is wired, batches append as before."""
    lm = LogManager(str(tmp_path / "data"), {})
    lm.create_topic("t", 1)
    plog = lm.partition("t", 0)
    for _ in range(2):
        r = append_checked(None, plog, _batch(1, 0, 0), leader_epoch=0)
        assert isinstance(r, AppendResult)
    assert plog.log_end_offset == 4
    lm.close()


def test_batch_identity_spans_contiguous_batches_of_one_producer() -> None:
    """Several batches of one producer in one payload count as one sequence range."""
    from broker.producers.service import BatchIdentity, batch_identity

    payload = _batch(3, 1, 10, n=2) + _batch(3, 1, 12, n=3)
    assert batch_identity(payload) == BatchIdentity(
        producer_id=3, producer_epoch=1, base_sequence=10, record_count=5
    )
    assert batch_identity(build_batch([RecordInput(value=b"x")])) is None
    assert batch_identity(b"short") is None


def test_cluster_producer_ids_carry_the_node_id(tmp_path: Path) -> None:
    """In cluster mode two brokers never hand out the same producer id, and each
    keeps its own counter across restarts."""
    one = ProducerService(ProducerIdAllocator(tmp_path / "one"), node_id=1)
    two = ProducerService(ProducerIdAllocator(tmp_path / "two"), node_id=2)
    ids_one = {one.init_producer_id()[1] for _ in range(3)}
    ids_two = {two.init_producer_id()[1] for _ in range(3)}
    assert not ids_one & ids_two
    assert all(pid >> NODE_ID_SHIFT == 1 for pid in ids_one)
    assert min(ids_one) == 1 << NODE_ID_SHIFT
    again = ProducerService(ProducerIdAllocator(tmp_path / "one"), node_id=1)
    assert again.init_producer_id()[1] not in ids_one
