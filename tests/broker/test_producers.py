"""Idempotent produce on a real partition log: dedup, errors, rebuild after restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.producers.service import NODE_ID_SHIFT, ProducerService, append_checked
from protocol.error_codes import ErrorCode
from protocol.record_builder import RecordInput, build_batch
from protocol.records import iter_batches
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


def _leader_bytes(lm: LogManager, pid: int) -> list[bytes]:
    """Three idempotent batches (sequences 0, 2, 4) as a leader's log holds them."""
    lm.create_topic("leader", 1)
    leader = lm.partition("leader", 0)
    out = []
    for seq in (0, 2, 4):
        result = leader.append(_batch(pid, 0, seq), leader_epoch=0)
        read = leader.read(result.base_offset, 1 << 20)
        out.append(b"".join(bytes(b) for b in read.buffers))
    return out


def test_a_followers_state_follows_the_batches_it_replicates(tmp_path: Path) -> None:
    """Batches a follower appends verbatim update its producer state as they come
    (the log is never read again): as leader it answers a retry with the first
    offsets, a gap with OUT_OF_ORDER_SEQUENCE_NUMBER, and appends the next batch."""
    lm = LogManager(str(tmp_path / "data"), {})
    batches = _leader_bytes(lm, pid=11)
    lm.create_topic("t", 1)
    plog = lm.partition("t", 0)
    # tail_bytes=0: a rebuild would read nothing, so only replicated() can know
    svc = ProducerService(ProducerIdAllocator(tmp_path), tail_bytes=0)
    assert not svc.tracks(plog)
    for i, raw in enumerate(batches):
        plog.append_verbatim(raw)
        headers = [h for _, h in iter_batches(raw)]
        svc.replicated(plog, headers, fresh=i == 0)
        assert svc.tracks(plog)
    assert plog.log_end_offset == 6
    dup = append_checked(svc, plog, _batch(11, 0, 2), leader_epoch=1)
    assert isinstance(dup, AppendResult)
    assert (dup.base_offset, dup.last_offset) == (2, 3)
    assert append_checked(svc, plog, _batch(11, 0, 9), leader_epoch=1) == (
        ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    )
    new = append_checked(svc, plog, _batch(11, 0, 6), leader_epoch=1)
    assert isinstance(new, AppendResult)
    assert new.base_offset == 6
    lm.close()


def test_batches_replicated_into_an_untracked_log_leave_it_untracked(
    tmp_path: Path,
) -> None:
    """A follower log with data the service never saw stays untracked after more
    appends (a partial state would miss producers): a new leader rebuilds it."""
    lm = LogManager(str(tmp_path / "data"), {})
    batches = _leader_bytes(lm, pid=12)
    lm.create_topic("t", 1)
    plog = lm.partition("t", 0)
    svc = ProducerService(ProducerIdAllocator(tmp_path))
    plog.append_verbatim(batches[0])
    plog.append_verbatim(batches[1])
    svc.replicated(plog, [h for _, h in iter_batches(batches[1])], fresh=False)
    assert not svc.tracks(plog)
    lm.close()


@pytest.mark.anyio
async def test_reload_after_truncation_forgets_the_batches_cut(tmp_path: Path) -> None:
    """After a follower's log is truncated, the state rebuilt in a worker thread no
    longer holds the batches cut: their retry is appended again, an earlier one
    is still a duplicate."""
    lm = LogManager(str(tmp_path / "data"), {})
    batches = _leader_bytes(lm, pid=13)
    lm.create_topic("t", 1)
    plog = lm.partition("t", 0)
    svc = ProducerService(ProducerIdAllocator(tmp_path))
    for i, raw in enumerate(batches):
        plog.append_verbatim(raw)
        svc.replicated(plog, [h for _, h in iter_batches(raw)], fresh=i == 0)
    plog.truncate_to(4)
    await svc.reload(plog)
    assert svc.tracks(plog)
    dup = append_checked(svc, plog, _batch(13, 0, 2), leader_epoch=1)
    assert isinstance(dup, AppendResult)
    assert dup.base_offset == 2
    again = append_checked(svc, plog, _batch(13, 0, 4), leader_epoch=1)
    assert isinstance(again, AppendResult)
    assert again.base_offset == 4
    assert plog.log_end_offset == 6
    lm.close()
