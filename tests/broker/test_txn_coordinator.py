"""The transaction coordinator over real storage (``open_context``, no listeners):
its state log is read back as written, a transaction found prepared at start-up is
completed, and a repeated marker changes nothing a read_committed reader sees."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio

from broker.config import resolve
from broker.context import BrokerContext
from broker.server import open_context
from broker.transactions.config import TxnConfig
from broker.transactions.coordinator import TransactionCoordinator
from broker.transactions.markers import LocalMarkers
from broker.transactions.model import TransactionMetadata, TxnState
from broker.transactions.txn_log import TxnLog, read_partition
from protocol.error_codes import ErrorCode
from protocol.record_builder import RecordInput, build_batch

TOPIC = "t"


def _run(tmp_path: Path, body: Callable[[BrokerContext], Awaitable[None]]) -> None:
    config = resolve(flags={"data_dir": str(tmp_path / "data")}, sets={})

    async def main() -> None:
        async with open_context(config) as ctx, anyio.create_task_group() as tg:
            tg.start_soon(ctx.durability.run)  # group commit: fsyncs for acks=all
            ctx.topics.logs.create_topic(TOPIC, 2)
            with anyio.fail_after(30):
                await body(ctx)
            tg.cancel_scope.cancel()

    anyio.run(main)


def _coordinator(ctx: BrokerContext) -> TransactionCoordinator:
    """A second coordinator over the same storage (a restarted broker's)."""
    return TransactionCoordinator(
        coordinates=lambda _: True,
        txn_log=TxnLog(ctx.topics, ctx.durability),
        markers=LocalMarkers(
            ctx.topics, ctx.producers, ctx.durability, ctx.append_gate, ctx.groups
        ),
        producers=ctx.producers,
        groups=ctx.groups,
        config=TxnConfig(abort_interval_ms=100),
    )


async def _until(what: str, cond: Callable[[], bool]) -> None:
    """Poll ``cond`` (bounded by the test's fail_after)."""
    for _ in range(3000):
        if cond():
            return
        await anyio.sleep(0.01)
    raise AssertionError(f"never {what}")


def _append_txn(ctx: BrokerContext, pid: int, epoch: int, index: int) -> None:
    plog = ctx.topics.logs.partition(TOPIC, index)
    batch = build_batch(
        [RecordInput(value=b"v")],
        producer_id=pid,
        producer_epoch=epoch,
        base_sequence=0,
        is_transactional=True,
    )
    plog.append(batch, leader_epoch=0)
    plog.sync()


def _stable(ctx: BrokerContext, index: int) -> bool:
    plog = ctx.topics.logs.partition(TOPIC, index)
    end = plog.log_end_offset
    return plog.last_stable_offset(end) == end


def test_commit_is_durable_and_reloads(tmp_path: Path) -> None:
    """A committed transaction's states are in the log: a new coordinator reads the
    id back in CompleteCommit with its producer id and epoch."""

    async def body(ctx: BrokerContext) -> None:
        coord = ctx.transactions
        async with anyio.create_task_group() as tg:
            await tg.start(coord.run)
            code, pid, epoch = await coord.init_producer_id("a", 60_000, None)
            assert (code, epoch) == (ErrorCode.NONE, 0)
            parts = [(TOPIC, 0), (TOPIC, 1)]
            assert await coord.add_partitions("a", pid, epoch, parts) == ErrorCode.NONE
            for index in (0, 1):
                _append_txn(ctx, pid, epoch, index)
            assert not _stable(ctx, 0)
            assert await coord.add_offsets("a", pid, epoch, "g") == ErrorCode.NONE
            assert await coord.end_txn("a", pid, epoch, True) == ErrorCode.NONE
            await _until(
                "completed", lambda: _state(coord, "a") is TxnState.COMPLETE_COMMIT
            )
            assert _stable(ctx, 0)
            assert _stable(ctx, 1)
            tg.cancel_scope.cancel()
        again = _coordinator(ctx)
        assert await again.load_partition(0)
        meta = again.describe("a")
        assert meta is not None
        assert (meta.producer_id, meta.producer_epoch, meta.state) == (
            pid,
            0,
            TxnState.COMPLETE_COMMIT,
        )
        assert again.list_transactions(states=[TxnState.COMPLETE_COMMIT]) == [meta]
        assert again.list_transactions(producer_ids=[pid + 1]) == []

    _run(tmp_path, body)


def _state(coord: TransactionCoordinator, txn_id: str) -> TxnState | None:
    meta = coord.describe(txn_id)
    return None if meta is None else meta.state


def test_prepared_transaction_is_completed_at_start(tmp_path: Path) -> None:
    """A PrepareCommit left in the log (the broker stopped before its markers) is
    completed by the next coordinator: markers written, CompleteCommit logged."""

    async def body(ctx: BrokerContext) -> None:
        txn_log = TxnLog(ctx.topics, ctx.durability)
        await txn_log.ensure_topic(1)
        pid = ctx.producers.init_producer_id()[1]
        now = int(time.time() * 1000)
        prepared = TransactionMetadata(
            transactional_id="p",
            producer_id=pid,
            producer_epoch=0,
            timeout_ms=60_000,
            state=TxnState.PREPARE_COMMIT,
            partitions=frozenset({(TOPIC, 0)}),
            start_ms=now,
            last_update_ms=now,
        )
        _append_txn(ctx, pid, 0, 0)
        assert await txn_log.write(prepared) == ErrorCode.NONE
        assert not _stable(ctx, 0)
        coord = _coordinator(ctx)
        async with anyio.create_task_group() as tg:
            await tg.start(coord.run)
            await _until(
                "completed", lambda: _state(coord, "p") is TxnState.COMPLETE_COMMIT
            )
            tg.cancel_scope.cancel()
        assert _stable(ctx, 0)
        plog = ctx.topics.logs.partition("__transaction_state", 0)
        loaded = read_partition(plog, plog.log_end_offset)
        assert loaded.txns["p"].state is TxnState.COMPLETE_COMMIT

    _run(tmp_path, body)


def test_repeated_markers_are_harmless(tmp_path: Path) -> None:
    """Markers sent again for a completed transaction are written and change no
    record's visibility: the last stable offset stays at the log end and the
    committed record stays committed."""

    async def body(ctx: BrokerContext) -> None:
        markers = LocalMarkers(
            ctx.topics, ctx.producers, ctx.durability, ctx.append_gate, ctx.groups
        )
        pid = ctx.producers.init_producer_id()[1]
        _append_txn(ctx, pid, 0, 0)
        for commit in (True, True, False):
            codes = await markers.write_all(
                [(TOPIC, 0)],
                producer_id=pid,
                producer_epoch=0,
                commit=commit,
                coordinator_epoch=0,
            )
            assert codes == {(TOPIC, 0): ErrorCode.NONE}
            assert _stable(ctx, 0)
        plog = ctx.topics.logs.partition(TOPIC, 0)
        aborted = plog.aborted_transactions(0, plog.log_end_offset)
        # the repeated ABORT covers only itself (offset 3), never the record at 0
        assert all(a.first_offset > 0 for a in aborted)

    _run(tmp_path, body)


def test_unloaded_partition_answers_load_in_progress(tmp_path: Path) -> None:
    """In a cluster, an id whose state log partition is not loaded here answers
    COORDINATOR_LOAD_IN_PROGRESS."""

    async def body(ctx: BrokerContext) -> None:
        coord = TransactionCoordinator(
            coordinates=lambda _: True,
            txn_log=TxnLog(ctx.topics, ctx.durability),
            clustered=True,
        )
        code, _, _ = await coord.init_producer_id("x", 60_000, None)
        assert code == ErrorCode.COORDINATOR_LOAD_IN_PROGRESS
        refused = await coord.end_txn("x", 1, 0, True)
        assert refused == ErrorCode.COORDINATOR_LOAD_IN_PROGRESS

    _run(tmp_path, body)


def test_idle_transactional_id_expires_and_starts_afresh(tmp_path: Path) -> None:
    """An id idle for transactional.id.expiration.ms gets a tombstone: it is
    forgotten, a reload skips it, and its next InitProducerId gets a new producer
    id at epoch 0; an id with an open transaction does not expire."""

    async def body(ctx: BrokerContext) -> None:
        coord = ctx.transactions
        code, idle_pid, _ = await coord.init_producer_id("idle", 60_000, None)
        assert code == ErrorCode.NONE
        code, busy_pid, _ = await coord.init_producer_id("busy", 60_000, None)
        assert code == ErrorCode.NONE
        parts = [(TOPIC, 0)]
        assert await coord.add_partitions("busy", busy_pid, 0, parts) == ErrorCode.NONE
        later = time.time_ns() // 1_000_000 + coord.config.id_expiration_ms
        assert await coord.remove_expired(now_ms=later) == 1
        assert coord.describe("idle") is None
        assert _state(coord, "busy") is TxnState.ONGOING
        again = _coordinator(ctx)
        assert await again.load_partition(0)
        assert again.describe("idle") is None
        assert again.describe("busy") is not None
        code, pid, epoch = await coord.init_producer_id("idle", 60_000, None)
        assert (code, epoch) == (ErrorCode.NONE, 0)
        assert pid != idle_pid

    _run(tmp_path, body)


def test_state_write_needs_the_logs_min_insync_replicas(tmp_path: Path) -> None:
    """With min_isr (cluster mode), a state log whose ISR is smaller than its
    min.insync.replicas refuses writes with COORDINATOR_NOT_AVAILABLE, as Kafka's
    transaction.state.log.min.isr; without it (a single node) it does not apply."""

    async def body(ctx: BrokerContext) -> None:
        ctx.topics.logs.create_topic(
            "__transaction_state", 1, {"min.insync.replicas": "2"}
        )
        now = int(time.time() * 1000)
        meta = TransactionMetadata(
            transactional_id="m",
            producer_id=1,
            producer_epoch=0,
            timeout_ms=60_000,
            state=TxnState.EMPTY,
            start_ms=-1,
            last_update_ms=now,
        )
        strict = TxnLog(ctx.topics, ctx.durability, min_isr=True)
        assert await strict.write(meta) == ErrorCode.COORDINATOR_NOT_AVAILABLE
        plog = ctx.topics.logs.partition("__transaction_state", 0)
        assert plog.log_end_offset == 0  # refused before the append
        assert await TxnLog(ctx.topics, ctx.durability).write(meta) == ErrorCode.NONE

    _run(tmp_path, body)
