"""Hypothesis state machine: log compaction against a model of what was appended.

Operations: append keyed records and tombstones (null values), roll, advance the
clock, clean (a full round of the log cleaner), clean with a simulated crash at its
n-th file operation (writing ``.cleaned``, the checkpoint, each rename and unlink of
the swap), then reopen as after a crash (recovery finishes or drops the swap), and
reopen cleanly. Invariants after every step:

- every record read is the one appended at that offset (offsets are kept);
- the latest record of every key is there, at its original offset, unless it is a
  tombstone whose delete horizon may have passed;
- below the offset the last finished round cleaned, no record has a later record of
  the same key below that offset;
- a read at any offset returns the next surviving record;
- the log end offset never moves.
"""

from __future__ import annotations

import errno
import shutil
import tempfile

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from protocol.record_builder import RecordInput, build_batch, iter_records
from protocol.records import iter_batches
from storage.config import TopicConfig
from storage.errors import StorageError
from storage.fileops import DelegatingFileOps, FileOps
from storage.log_cleaner import LogCleaner
from storage.partition_log import PartitionLog

RETENTION_MS = 100
KEYS = [b"a", b"b", b"c", b"d", b"e"]


class FastFileOps(FileOps):
    """No fsyncs (a crash here never loses the page cache)."""

    def fsync(self, fd: int) -> None:
        pass

    def fdatasync(self, fd: int) -> None:
        pass

    def fsync_dir(self, path: str) -> None:
        pass


class CrashingFileOps(DelegatingFileOps):
    """Fails the n-th mutating file operation and every one after it: the process
    is dead from there on."""

    def __init__(self) -> None:
        super().__init__(FastFileOps())
        self.countdown: int | None = None

    def _step(self) -> None:
        if self.countdown is None:
            return
        self.countdown -= 1
        if self.countdown <= 0:
            raise OSError(errno.EIO, "simulated crash")

    def open(self, path: str, flags: int, mode: int = 0o644) -> int:
        self._step()
        return super().open(path, flags, mode)

    def pwritev(self, fd: int, buffers: object, offset: int) -> int:  # type: ignore[override]
        self._step()
        return super().pwritev(fd, buffers, offset)  # type: ignore[arg-type]

    def replace(self, src: str, dst: str) -> None:
        self._step()
        super().replace(src, dst)

    def unlink(self, path: str) -> None:
        self._step()
        super().unlink(path)

    def fsync_dir(self, path: str) -> None:
        self._step()
        super().fsync_dir(path)


class CompactionModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="ailurus-compact-")
        self.config = TopicConfig.from_overrides(
            {
                "cleanup.policy": "compact",
                "segment.bytes": "300",
                "index.interval.bytes": "64",
                "delete.retention.ms": str(RETENTION_MS),
                "min.cleanable.dirty.ratio": "0",
            }
        )
        self.now = 10_000
        self.appended: dict[int, tuple[bytes, bytes | None, int]] = {}  # off -> k,v,t
        self.next_offset = 0
        self.cleaned_to = 0  # first dirty offset after the last finished round
        self.clean_attempts: list[int] = []  # clock of every round started
        self.fileops = CrashingFileOps()
        self.log = self._open()
        self.cleaner = LogCleaner()

    def _open(self) -> PartitionLog:
        return PartitionLog.open(
            self.dir,
            topic="c",
            partition=0,
            config=self.config,
            fileops=self.fileops,
            clean=False,
        )

    def teardown(self) -> None:
        self.log.close(clean=False)
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- operations ----------------------------------------------------------------
    @rule(
        records=st.lists(
            st.tuples(st.sampled_from(KEYS), st.none() | st.binary(max_size=12)),
            min_size=1,
            max_size=4,
        )
    )
    def append(self, records: list[tuple[bytes, bytes | None]]) -> None:
        batch = build_batch(
            [RecordInput(key=k, value=v, timestamp=self.now) for k, v in records]
        )
        result = self.log.append(batch, leader_epoch=0, now_ms=self.now)
        assert result.base_offset == self.next_offset
        for key, value in records:
            self.appended[self.next_offset] = (key, value, self.now)
            self.next_offset += 1

    @rule()
    def roll(self) -> None:
        self.log.roll()

    @rule(ms=st.integers(min_value=1, max_value=2 * RETENTION_MS))
    def tick(self, ms: int) -> None:
        self.now += ms

    @rule()
    def clean(self) -> None:
        self.log.sync()
        self.clean_attempts.append(self.now)
        result = self.cleaner.clean(self.log, now_ms=self.now, force=True)
        if result.cleaned:
            self.cleaned_to = result.first_dirty_offset

    @rule(step=st.integers(min_value=1, max_value=14))
    def crash_while_cleaning(self, step: int) -> None:
        self.log.sync()
        self.clean_attempts.append(self.now)
        self.fileops.countdown = step
        try:
            result = self.cleaner.clean(self.log, now_ms=self.now, force=True)
        except StorageError:
            pass
        else:
            if result.cleaned:
                self.cleaned_to = result.first_dirty_offset
        self.fileops.countdown = None
        self.log.close(clean=False)
        self.log = self._open()
        self.cleaner = LogCleaner()  # a restarted broker: status from the checkpoint

    @rule()
    def reopen(self) -> None:
        self.log.close()
        self.log = self._open()

    # -- invariants ----------------------------------------------------------------
    def _read_all(self) -> list[tuple[int, bytes | None, bytes | None]]:
        out: list[tuple[int, bytes | None, bytes | None]] = []
        offset = self.log.log_start_offset
        while offset < self.log.log_end_offset:
            result = self.log.read(offset, 1 << 20)
            if not result.buffers:
                break
            for buf in result.buffers:
                for pos, _ in iter_batches(buf):
                    out.extend(
                        (r.offset, r.key, r.value) for r in iter_records(buf, pos)
                    )
            assert result.next_offset > offset
            offset = result.next_offset
        return out

    def _may_be_gone(self, offset: int) -> bool:
        """A latest tombstone may be gone once a round ran delete.retention.ms after
        the first round that could have stamped its horizon."""
        appended_at = self.appended[offset][2]
        first = next((t for t in self.clean_attempts if t >= appended_at), None)
        return first is not None and self.now >= first + RETENTION_MS

    @invariant()
    def compaction_keeps_latest_values_at_their_offsets(self) -> None:
        assert self.log.log_end_offset == self.next_offset
        records = self._read_all()
        offsets = [o for o, _, _ in records]
        assert offsets == sorted(set(offsets))
        for offset, key, value in records:
            assert self.appended[offset][:2] == (key, value)
        present = set(offsets)
        latest: dict[bytes, int] = {}
        for offset, (key, _, _) in self.appended.items():
            latest[key] = offset
        for key, offset in latest.items():
            if offset not in present:
                assert self.appended[offset][1] is None, (key, offset)
                assert self._may_be_gone(offset), (key, offset)
        below: dict[bytes, int] = {}
        for offset, (key, _, _) in self.appended.items():
            if offset < self.cleaned_to:
                below[key] = offset
        for offset, key, _ in records:
            if offset < self.cleaned_to:
                assert key is not None
                assert below[key] == offset, (key, offset)

    @invariant()
    def reads_return_the_next_surviving_record(self) -> None:
        surviving = [o for o, _, _ in self._read_all()]
        for offset in range(self.log.log_start_offset, self.next_offset):
            expected = next((o for o in surviving if o >= offset), None)
            assert self._first_from(offset) == expected, offset

    def _first_from(self, offset: int) -> int | None:
        """The first record a consumer fetching one batch at a time from ``offset``
        gets (a batch may hold only records before ``offset``: it moves on)."""
        position = offset
        while position < self.log.log_end_offset:
            result = self.log.read(position, 1)
            if not result.buffers:
                return None
            for buf in result.buffers:
                for pos, _ in iter_batches(buf):
                    for record in iter_records(buf, pos):
                        if record.offset >= offset:
                            return record.offset
            assert result.next_offset > position
            position = result.next_offset
        return None


CompactionModel.TestCase.settings = settings(
    max_examples=25,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestCompaction = CompactionModel.TestCase
