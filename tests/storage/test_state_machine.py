"""Hypothesis state machine: PartitionLog against an in-memory model (Redpanda opfuzz).

Operations: append, read, roll, retention, delete_records, truncate, sync, checkpoint,
adopt (segments built in a staging log, as a snapshot ingest does), close-and-reopen,
crash-and-reopen (truncate the active segment at a random byte past the durable
offset). Invariants: offsets are dense and monotonic, every record below the durable
offset survives crashes, reads return exactly the model's records, and nothing past
a torn tail is ever served. A second run shares a descriptor cache of capacity 1
among the segments, so most operations reopen the file they use, and checks that
no more descriptors than that stay open between steps.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from protocol.record_builder import RecordInput, build_batch, iter_records
from protocol.records import iter_batches
from storage.config import TopicConfig
from storage.errors import OffsetOutOfRange
from storage.fd_cache import FdCache
from storage.fileops import FileOps
from storage.partition_log import PartitionLog


class LogModel(RuleBasedStateMachine):
    """The model is the list of record values by offset plus the log start."""

    capacity: int | None = None  # descriptor cache size; None: unbounded

    def __init__(self) -> None:
        super().__init__()
        self.handles = None if self.capacity is None else FdCache(self.capacity)
        self.dir = tempfile.mkdtemp(prefix="ailurus-sm-")
        self.overrides = {"segment.bytes": "400", "index.interval.bytes": "64"}
        self.values: list[bytes] = []
        self.batch_ends: list[int] = []  # next offset after each batch
        self.start = 0
        self.durable = 0
        self.log = self._open(clean=False)

    def _open(self, *, clean: bool) -> PartitionLog:
        return PartitionLog.open(
            self.dir,
            topic="sm",
            partition=0,
            config=TopicConfig.from_overrides(self.overrides),
            fileops=FileOps(),
            clean=clean,
            handles=self.handles,
        )

    def teardown(self) -> None:
        self.log.close(clean=False)
        shutil.rmtree(self.dir, ignore_errors=True)

    @rule(
        batches=st.lists(
            st.lists(st.binary(max_size=40), min_size=1, max_size=4),
            min_size=1,
            max_size=3,
        )
    )
    def append(self, batches: list[list[bytes]]) -> None:
        payload = b"".join(
            build_batch([RecordInput(value=v, timestamp=1000) for v in values])
            for values in batches
        )
        result = self.log.append(payload, leader_epoch=1, now_ms=0)
        assert result.base_offset == len(self.values)
        for values in batches:
            self.values.extend(values)
            self.batch_ends.append(len(self.values))
        assert result.last_offset == len(self.values) - 1

    @rule(
        batches=st.lists(
            st.lists(st.binary(max_size=60), min_size=1, max_size=4),
            min_size=0,
            max_size=8,
        )
    )
    def adopt(self, batches: list[list[bytes]]) -> None:
        """Build batches in a staging log that starts at the log end (rolling as
        segment.bytes says), then adopt its segments."""
        staging = tempfile.mkdtemp(prefix="ailurus-sm-stage-")
        try:
            shutil.rmtree(staging)
            staged = PartitionLog.open(
                staging,
                topic="sm",
                partition=0,
                config=TopicConfig.from_overrides(self.overrides),
                fileops=FileOps(),
                clean=True,
            )
            staged.reset_start(len(self.values))
            for values in batches:
                staged.append(
                    build_batch([RecordInput(value=v, timestamp=1000) for v in values]),
                    leader_epoch=1,
                    now_ms=0,
                )
            staged.close()
            end = self.log.adopt(staging)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        for values in batches:
            self.values.extend(values)
            self.batch_ends.append(len(self.values))
        assert end == len(self.values)

    @rule(data=st.data(), max_bytes=st.integers(1, 2000))
    def read(self, data: st.DataObject, max_bytes: int) -> None:
        offset = data.draw(st.integers(self.start, len(self.values)))
        result = self.log.read(offset, max_bytes)
        if offset == len(self.values):
            assert result.size == 0
            return
        raw = b"".join(bytes(b) for b in result.buffers)
        assert len(raw) == result.size > 0
        batches = list(iter_batches(raw))
        assert sum(h.size for _, h in batches) == len(raw)
        assert len(batches) == 1 or len(raw) <= max_bytes
        assert batches[0][1].base_offset <= offset <= batches[0][1].last_offset
        expected = batches[0][1].base_offset
        for pos, header in batches:
            assert header.base_offset == expected
            assert header.next_offset in self.batch_ends
            for record in iter_records(raw[pos : pos + header.size]):
                assert record.value == self.values[record.offset]
            expected = header.next_offset
        assert result.next_offset == expected

    @rule()
    def roll(self) -> None:
        self.log.roll()

    @rule(limit=st.integers(0, 1500))
    def retention(self, limit: int) -> None:
        self.log.config = TopicConfig.from_overrides(
            {**self.overrides, "retention.bytes": str(limit)}
        )
        self.log.apply_retention(now_ms=0)
        self.log.config = TopicConfig.from_overrides(self.overrides)
        assert self.log.log_start_offset >= self.start
        self.start = self.log.log_start_offset

    @rule(data=st.data())
    def delete_records(self, data: st.DataObject) -> None:
        before = data.draw(st.integers(0, len(self.values)))
        assert self.log.delete_records(before) == max(before, self.start)
        self.start = max(before, self.start)

    @rule(data=st.data())
    def truncate(self, data: st.DataObject) -> None:
        """A follower's truncation: the cut falls at the start of the batch holding
        the offset; nothing readable left restarts an empty log at the offset."""
        offset = data.draw(st.integers(self.start, len(self.values)))
        cut = max((e for e in [0, *self.batch_ends] if e <= offset), default=0)
        end = self.log.truncate_to(offset)
        if offset == len(self.values):
            assert end == offset
            return
        if cut <= self.start:
            assert end == offset
            self.start = offset
        else:
            assert end == cut
        del self.values[end:]
        self.batch_ends = [e for e in self.batch_ends if e <= end]
        self.durable = min(self.durable, end)
        assert self.log.leader_epoch == (1 if end > self.start else -1)

    @rule()
    def sync(self) -> None:
        assert self.log.sync() == len(self.values)
        self.durable = len(self.values)

    @rule()
    def checkpoint(self) -> None:
        self.log.sync()
        self.durable = len(self.values)
        self.log.checkpoint()

    @rule()
    def close_and_reopen(self) -> None:
        self.log.close(clean=True)
        self.log = self._open(clean=True)
        self.durable = len(self.values)

    @precondition(lambda self: len(self.values) > self.durable)
    @rule(data=st.data())
    def crash_and_reopen(self, data: st.DataObject) -> None:
        active = self.log.segments()[-1]
        self.log.close(clean=False)
        with open(active.path, "rb") as f:
            content = f.read()
        keep = 0
        for pos, header in iter_batches(content):
            if header.base_offset < self.durable:
                keep = pos + header.size
        cut = data.draw(st.integers(keep, len(content)))
        os.truncate(active.path, cut)
        self.log = self._open(clean=False)
        end = self.log.log_end_offset
        assert self.durable <= end <= len(self.values)
        assert end in self.batch_ends or end == self.start or end == 0
        del self.values[end:]
        self.batch_ends = [e for e in self.batch_ends if e <= end]
        self.durable = end
        self.start = min(self.start, end)

    @invariant()
    def offsets_match(self) -> None:
        assert self.log.log_end_offset == len(self.values)
        assert self.log.log_start_offset == self.start
        assert self.log.durable_offset >= self.durable
        if self.start > 0:
            try:
                self.log.read(self.start - 1, 10)
            except OffsetOutOfRange:
                pass
            else:
                raise AssertionError("read below the log start succeeded")


LogModel.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestPartitionLogModel = LogModel.TestCase


class BoundedHandlesModel(LogModel):
    """The same model with at most one segment descriptor open at a time."""

    capacity = 1

    @invariant()
    def descriptors_bounded(self) -> None:
        assert self.handles is not None
        assert len(self.handles) <= 1


BoundedHandlesModel.TestCase.settings = LogModel.TestCase.settings
TestPartitionLogBoundedHandles = BoundedHandlesModel.TestCase
