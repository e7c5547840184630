"""Group commit: one fsync round covers every waiting append; failures fail waiters."""

from __future__ import annotations

import anyio
import pytest

from broker.durability.acks import Durability, PendingAck
from broker.durability.group_commit import GroupCommit, PartitionWaiters
from broker.metrics import Metrics
from broker.topics.errors import error_code
from protocol.error_codes import ErrorCode
from storage.errors import LogClosed, StorageIOError


class FakeLog:
    """An in-memory stand-in for PartitionLog's durability surface."""

    def __init__(self) -> None:
        self.end = 0
        self.durable_offset = 0
        self.syncs = 0
        self.fail = False

    def append(self, n: int) -> int:
        self.end += n
        return self.end

    def sync(self) -> int:
        self.syncs += 1
        if self.fail:
            raise StorageIOError("EIO", errno=5)
        self.durable_offset = self.end
        return self.durable_offset


@pytest.mark.anyio
async def test_waiters_complete_after_one_shared_round() -> None:
    """Appends to several partitions are made durable by one round each, not one per append."""
    rounds: list[int] = []
    gc = GroupCommit(PartitionWaiters(), on_round=rounds.append)
    a, b = FakeLog(), FakeLog()
    done: list[str] = []
    all_done = anyio.Event()

    async def wait(name: str, lg: FakeLog, target: int) -> None:
        await gc.wait_durable(lg, target)
        done.append(name)
        if len(done) == 10:
            all_done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(gc.run)
        for i in range(5):
            tg.start_soon(wait, f"a{i}", a, a.append(1))
            tg.start_soon(wait, f"b{i}", b, b.append(2))
        with anyio.fail_after(5):
            await all_done.wait()
        tg.cancel_scope.cancel()
    assert a.durable_offset == 5
    assert b.durable_offset == 10
    assert a.syncs <= 2
    assert sum(rounds) <= 4


@pytest.mark.anyio
async def test_failed_fsync_fails_every_waiter_of_that_log() -> None:
    """A failed fsync raises the storage error in acks=all waiters; other logs succeed."""
    gc = GroupCommit(PartitionWaiters())
    bad, good = FakeLog(), FakeLog()
    bad.fail = True
    outcome: dict[str, str] = {}
    both = anyio.Event()

    async def wait(name: str, lg: FakeLog) -> None:
        try:
            await gc.wait_durable(lg, lg.append(1))
            outcome[name] = "ok"
        except StorageIOError:
            outcome[name] = "failed"
        if len(outcome) == 2:
            both.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(gc.run)
        tg.start_soon(wait, "bad", bad)
        tg.start_soon(wait, "good", good)
        with anyio.fail_after(5):
            await both.wait()
        tg.cancel_scope.cancel()
    assert outcome == {"bad": "failed", "good": "ok"}


@pytest.mark.anyio
async def test_sync_round_wakes_fetch_waiters_of_synced_logs() -> None:
    """Long polls registered on a log are woken when its durable offset moves."""
    waiters = PartitionWaiters()
    gc = GroupCommit(waiters)
    lg, other = FakeLog(), FakeLog()
    event, untouched = anyio.Event(), anyio.Event()
    waiters.register([lg], event)
    waiters.register([other], untouched)
    lg.append(1)
    gc.mark_dirty(lg)
    await gc.sync_round()
    assert event.is_set()
    assert not untouched.is_set()
    waiters.notify_all()
    assert untouched.is_set()


@pytest.mark.anyio
async def test_already_durable_offsets_return_immediately() -> None:
    """Waiting for an offset already fsynced needs no round."""
    gc = GroupCommit(PartitionWaiters())
    lg = FakeLog()
    lg.append(3)
    lg.sync()
    with anyio.fail_after(1):
        await gc.wait_durable(lg, 3)
    assert lg.syncs == 1


@pytest.mark.anyio
async def test_acks_all_times_out_with_request_timed_out() -> None:
    """An fsync that does not finish within timeout_ms answers REQUEST_TIMED_OUT
    (counted), and an answer already durable is left alone."""
    metrics = Metrics()
    durability = Durability(metrics)  # its group commit is not running: no fsync
    slow, done = FakeLog(), FakeLog()
    done.append(1)
    done.sync()
    failed: list[tuple[tuple[int, int], ErrorCode]] = []
    pending = [PendingAck(slow, slow.append(1), (0, 0)), PendingAck(done, 1, (0, 1))]
    with anyio.fail_after(10):
        await durability.acks_all(
            pending, 50, lambda item, code: failed.append((item.key, code)), error_code
        )
    assert failed == [((0, 0), ErrorCode.REQUEST_TIMED_OUT)]
    assert metrics.errors[("produce", "REQUEST_TIMED_OUT")] == 1
    assert slow.syncs == 0


@pytest.mark.anyio
async def test_acks_all_answers_kafka_storage_error_when_the_fsync_fails() -> None:
    """A failed fsync fails the waiting answers of that partition with
    KAFKA_STORAGE_ERROR (counted); another partition's answer succeeds."""
    metrics = Metrics()
    durability = Durability(metrics)
    bad, good = FakeLog(), FakeLog()
    bad.fail = True
    failed: list[tuple[tuple[int, int], ErrorCode]] = []
    pending = [
        PendingAck(bad, bad.append(1), (0, 0)),
        PendingAck(good, good.append(2), (1, 0)),
    ]
    async with anyio.create_task_group() as tg:
        tg.start_soon(durability.run)
        with anyio.fail_after(10):
            await durability.acks_all(
                pending,
                0,
                lambda item, code: failed.append((item.key, code)),
                error_code,
            )
        tg.cancel_scope.cancel()
    assert failed == [((0, 0), ErrorCode.KAFKA_STORAGE_ERROR)]
    assert metrics.errors[("produce", "KAFKA_STORAGE_ERROR")] == 1
    assert good.durable_offset == 2


def test_only_acks_all_on_a_durable_topic_waits() -> None:
    assert Durability.needs_ack_wait(-1, write_caching=False)
    assert not Durability.needs_ack_wait(-1, write_caching=True)
    assert not Durability.needs_ack_wait(1, write_caching=False)
    assert not Durability.needs_ack_wait(0, write_caching=False)


@pytest.mark.anyio
async def test_fail_logs_fails_acks_all_answers_and_wakes_long_polls() -> None:
    """A deleted topic's partitions: their acks=all answers fail with the given
    error's code and every long poll wakes up."""
    durability = Durability(Metrics())  # no fsync runs: the answer would wait
    gone, other = FakeLog(), FakeLog()
    poll = anyio.Event()
    durability.waiters.register([other], poll)
    failed: list[ErrorCode] = []

    async def answer() -> None:
        pending = [PendingAck(gone, gone.append(1), (0, 0))]
        await durability.acks_all(
            pending, 0, lambda item, code: failed.append(code), error_code
        )

    async with anyio.create_task_group() as tg:
        tg.start_soon(answer)
        await anyio.wait_all_tasks_blocked()
        durability.fail_logs([gone], LogClosed("topic t deleted"))
    assert failed == [ErrorCode.UNKNOWN_TOPIC_OR_PARTITION]
    assert poll.is_set()
