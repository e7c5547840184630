"""Log compaction with transactions, against a model (storage/cleaner_txns.py).

Hypothesis interleaves plain and transactional batches of a few producers with
keys, tombstones, commits and aborts (a transaction may stay open), cleans the log
four times (each past the delete horizons the one before set), and checks after
each round that a read_committed reader (Kafka's consumer algorithm over the
log's batches and its ``.txnindex`` answer) sees the model's compaction of the
committed records, that nothing at or above the last stable offset changed, that
aborted records are gone, and that markers go only past their delete horizon, with
their ``.txnindex`` entries, also across a restart. A second property cleans
between two runs of appends: what was open during the first round is left as it
was, and cleaned by the second once committed. Deterministic tests follow one
abort through its rounds, and a ``.txnindex`` left behind by a crashed swap.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.record_builder import RecordInput, build_batch, iter_records
from protocol.records import BatchHeader, iter_batches
from storage.config import TopicConfig
from storage.fileops import FileOps
from storage.log_cleaner import LogCleaner
from storage.partition_log import PartitionLog
from storage.transactions import marker_of
from storage.txn_index import AbortedTxn

NOW = 1_000_000
RETENTION = 1_000
PIDS = (7, 8, 9)
KEYS = (b"a", b"b", b"c", b"d")


def open_log(path: Path, *, clean: bool = True) -> PartitionLog:
    config = TopicConfig.from_overrides(
        {
            "cleanup.policy": "compact",
            "segment.bytes": "500",
            "delete.retention.ms": str(RETENTION),
        }
    )
    return PartitionLog.open(
        str(path), topic="t", partition=0, config=config, fileops=FileOps(), clean=clean
    )


Op = tuple[str, int, bytes, bytes | None]  # kind, producer, key, value


@dataclass(frozen=True, slots=True)
class Rec:
    offset: int
    pid: int  # -1: plain
    key: bytes
    value: bytes | None


ops_strategy = st.lists(
    st.one_of(
        st.tuples(
            st.just("plain"),
            st.just(-1),
            st.sampled_from(KEYS),
            st.one_of(st.none(), st.binary(min_size=1, max_size=30)),
        ),
        st.tuples(
            st.just("txn"),
            st.sampled_from(PIDS),
            st.sampled_from(KEYS),
            st.one_of(st.none(), st.binary(min_size=1, max_size=30)),
        ),
        st.tuples(
            st.sampled_from(["commit", "abort"]),
            st.sampled_from(PIDS),
            st.just(b""),
            st.none(),
        ),
    ),
    min_size=1,
    max_size=40,
)


@dataclass
class Model:
    """What was appended: every data record, the offsets visible to
    read_committed readers (plain and committed), the open transactions."""

    recs: list[Rec] = field(default_factory=list)
    visible: set[int] = field(default_factory=set)
    pending: dict[int, list[int]] = field(default_factory=dict)
    seqs: dict[int, int] = field(default_factory=lambda: dict.fromkeys(PIDS, 0))


def build(
    log: PartitionLog, ops: list[Op], model: Model | None = None
) -> tuple[list[Rec], set[int]]:
    """Append ``ops`` (continuing ``model``), then roll; (every data record,
    offsets of visible ones)."""
    m = Model() if model is None else model
    for kind, pid, key, value in ops:
        if kind == "plain":
            batch = build_batch([RecordInput(key=key, value=value, timestamp=NOW)])
            off = log.append(batch, leader_epoch=0, now_ms=NOW).base_offset
            m.recs.append(Rec(off, -1, key, value))
            m.visible.add(off)
        elif kind == "txn":
            batch = build_batch(
                [RecordInput(key=key, value=value, timestamp=NOW)],
                producer_id=pid,
                producer_epoch=0,
                base_sequence=m.seqs[pid],
                is_transactional=True,
            )
            m.seqs[pid] += 1
            off = log.append(batch, leader_epoch=0, now_ms=NOW).base_offset
            m.recs.append(Rec(off, pid, key, value))
            m.pending.setdefault(pid, []).append(off)
        elif pid in m.pending:
            log.append_marker(pid, 0, kind == "commit", 0, leader_epoch=0, now_ms=NOW)
            done = m.pending.pop(pid)
            if kind == "commit":
                m.visible.update(done)
    log.roll()
    log.sync()
    return m.recs, m.visible


def read_committed(log: PartitionLog) -> list[tuple[int, bytes | None, bytes | None]]:
    """What a read_committed consumer gets from offset 0 (Kafka's
    ``Fetcher``: aborted producers start at their first offset, leave at their
    ABORT marker; control batches are never returned)."""
    lso = log.last_stable_offset(log.log_end_offset)
    aborted = sorted(
        log.aborted_transactions(log.log_start_offset, lso),
        key=lambda e: e.first_offset,
    )
    active: set[int] = set()
    out = []
    for buf, pos, header in _batches(log, lso):
        while aborted and aborted[0].first_offset <= header.last_offset:
            active.add(aborted.pop(0).producer_id)
        if header.is_control:
            marker = marker_of(buf[pos : pos + header.size])
            if marker is not None and not marker.commit:
                active.discard(header.producer_id)
            continue
        if header.attributes & 0x10 and header.producer_id in active:
            continue
        out.extend((r.offset, r.key, r.value) for r in iter_records(buf, pos))
    return out


def _batches(
    log: PartitionLog, upper: int
) -> list[tuple[memoryview, int, BatchHeader]]:
    out = []
    offset = log.log_start_offset
    while offset < upper:
        result = log.read(offset, 1 << 20, upper_bound=upper)
        if not result.buffers:
            break
        for buf in result.buffers:
            view = memoryview(bytes(buf))
            out.extend((view, pos, h) for pos, h in iter_batches(view))
        offset = result.next_offset
    return out


def expected(
    recs: list[Rec], visible: set[int], end: int, lso: int, *, tombstones: bool
) -> list[tuple[int, bytes | None, bytes | None]]:
    """The model: below ``end`` the latest visible record of each key (tombstones
    while ``tombstones``), from ``end`` to the LSO every visible record."""
    latest: dict[bytes, int] = {}
    for r in recs:
        if r.offset in visible and r.offset < end:
            latest[r.key] = r.offset
    out = []
    for r in recs:
        if r.offset not in visible or r.offset >= lso:
            continue
        stale = latest.get(r.key) != r.offset or (r.value is None and not tombstones)
        if r.offset < end and stale:
            continue
        out.append((r.offset, r.key, r.value))
    return out


def markers(log: PartitionLog) -> list[tuple[int, bool, int]]:
    """(offset, commit, record count) of every control batch in the log."""
    out = []
    for buf, pos, h in _batches(log, log.log_end_offset):
        if h.is_control:
            info = marker_of(buf[pos : pos + h.size])
            out.append(
                (h.base_offset, info is not None and info.commit, h.record_count)
            )
    return out


def check_index(log: PartitionLog) -> None:
    """Every .txnindex entry names an ABORT marker the log still holds."""
    entries: list[AbortedTxn] = log.aborted_transactions(0, log.log_end_offset)
    aborts = {o for o, commit, n in markers(log) if not commit and n}
    assert {e.last_offset for e in entries} <= aborts


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(ops=ops_strategy)
def test_cleaning_keeps_the_read_committed_view_of_the_model(ops: list[Op]) -> None:
    """After each round a read_committed reader sees the model's compaction of the
    committed records; aborted records are gone below the cleaned end; nothing at
    or above the last stable offset changes; markers outlive their horizon only
    as empty batches, and each index entry keeps its marker."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp)
        log = open_log(path)
        recs, visible = build(log, ops)
        end_offset = log.log_end_offset
        lso = log.last_stable_offset(end_offset)
        above = [b[2] for b in _batches(log, end_offset) if b[2].base_offset >= lso]
        before = read_committed(log)
        cleaner = LogCleaner()
        result = cleaner.clean(log, now_ms=NOW, force=True, upto=end_offset)
        end = result.first_dirty_offset if result.cleaned else 0
        assert end <= lso
        view = read_committed(log)
        assert view == expected(recs, visible, end, lso, tombstones=True)
        assert [(o, k, v) for o, k, v in before if o >= end] == [
            (o, k, v) for o, k, v in view if o >= end
        ]
        kept = {o for buf, pos, h in _batches(log, end) for o in _offsets(buf, pos, h)}
        aborted_data = {r.offset for r in recs if r.offset not in visible}
        assert not kept & {o for o in aborted_data if o < end and _complete(o, lso)}
        after = [b[2] for b in _batches(log, end_offset) if b[2].base_offset >= lso]
        assert after == above
        check_index(log)
        # past the tombstones' horizon (aborts' markers turn idle), past theirs
        # (commits' markers turn idle), past those
        for now in (NOW + RETENTION + 1, NOW + 2 * RETENTION + 2, NOW + 4 * RETENTION):
            cleaner.clean(log, now_ms=now, force=True, upto=end_offset)
            view = read_committed(log)
            assert view == expected(recs, visible, end, lso, tombstones=False)
            check_index(log)
        # every ABORT marker below the cleaned end went (a producer's last batch
        # stays, emptied); a COMMIT one stays while records of its transaction do
        for offset, commit, count in markers(log):
            assert commit or offset >= end or count == 0
        log.close()
        log = open_log(path)
        assert read_committed(log) == view
        check_index(log)
        log.close()


def _complete(offset: int, lso: int) -> bool:
    return offset < lso


def _offsets(buf: memoryview, pos: int, h: BatchHeader) -> list[int]:
    if h.is_control:
        return []
    return [r.offset for r in iter_records(buf, pos)]


def _txn(log: PartitionLog, pid: int, seq: int, key: bytes, value: bytes) -> int:
    batch = build_batch(
        [RecordInput(key=key, value=value, timestamp=NOW)],
        producer_id=pid,
        producer_epoch=0,
        base_sequence=seq,
        is_transactional=True,
    )
    return log.append(batch, leader_epoch=0, now_ms=NOW).base_offset


def _plain(log: PartitionLog, key: bytes, value: bytes) -> int:
    batch = build_batch([RecordInput(key=key, value=value, timestamp=NOW)])
    return log.append(batch, leader_epoch=0, now_ms=NOW).base_offset


def compacted_txn_log(path: Path) -> PartitionLog:
    """0 a=1 | 1,2 aborted (7) | 3 ABORT | 4 a=2 (8) | 5 COMMIT | 6 b=3 | 7 c=z (7)
    | 8 COMMIT | 9 open (9), then rolled."""
    log = open_log(path)
    _plain(log, b"a", b"1")
    _txn(log, 7, 0, b"a", b"x")
    _txn(log, 7, 1, b"b", b"y")
    log.append_marker(7, 0, False, 0, leader_epoch=0, now_ms=NOW)
    _txn(log, 8, 0, b"a", b"2")
    log.append_marker(8, 0, True, 0, leader_epoch=0, now_ms=NOW)
    _plain(log, b"b", b"3")
    _txn(log, 7, 2, b"c", b"z")
    log.append_marker(7, 0, True, 0, leader_epoch=0, now_ms=NOW)
    log.roll()
    _txn(log, 9, 0, b"a", b"open")
    log.roll()
    log.sync()
    return log


def test_aborted_records_go_at_once_and_markers_after_their_horizon(
    tmp_path: Path,
) -> None:
    """Round 1 removes the aborted records but keeps their ABORT marker and index
    entry; the marker, idle, gets its horizon in round 2 and goes (with the entry)
    in round 3; the open transaction's batch is never touched."""
    log = compacted_txn_log(tmp_path)
    entry = AbortedTxn(
        producer_id=7, first_offset=1, last_offset=3, last_stable_offset=4
    )
    assert log.aborted_transactions(0, 9) == [entry]
    cleaner = LogCleaner()
    result = cleaner.clean(log, now_ms=NOW, force=True, upto=log.log_end_offset)
    assert result.first_dirty_offset == 9  # the open transaction starts at 9
    committed = [(4, b"a", b"2"), (6, b"b", b"3"), (7, b"c", b"z")]
    assert read_committed(log) == committed
    assert log.aborted_transactions(0, 9) == [entry]
    assert [m[0] for m in markers(log)] == [3, 5, 8]
    cleaner.clean(log, now_ms=NOW + RETENTION + 1, force=True)
    assert [m[0] for m in markers(log)] == [3, 5, 8]  # idle, within the horizon
    assert log.aborted_transactions(0, 9) == [entry]
    log.close(clean=False)  # a crash: the cleaned index is kept, not re-derived
    log = open_log(tmp_path, clean=False)
    assert log.aborted_transactions(0, 9) == [entry]
    cleaner.clean(log, now_ms=NOW + 2 * RETENTION + 2, force=True)
    assert 3 not in [m[0] for m in markers(log)]
    assert log.aborted_transactions(0, 9) == []
    assert read_committed(log) == committed
    assert log.open_transactions() == {9: 9}
    log.close()
    log = open_log(tmp_path)
    assert log.aborted_transactions(0, 9) == []
    assert read_committed(log) == committed
    log.close()


def test_an_orphaned_txnindex_is_folded_into_its_segment_at_open(
    tmp_path: Path,
) -> None:
    """A .txnindex whose segment went (a crash between a cleaning swap's renames
    and its index's) is merged into the index of the segment holding its offsets,
    without duplicates, and its file goes; the answers do not change."""
    log = compacted_txn_log(tmp_path)
    before = log.aborted_transactions(0, 9)
    assert before
    log.close()
    [index] = tmp_path.glob("*.txnindex")
    base = int(index.name[:20])
    orphan = tmp_path / f"{base + 1:020d}.txnindex"
    orphan.write_bytes(index.read_bytes())  # the same entries, a gone segment's name
    log = open_log(tmp_path, clean=False)
    assert log.aborted_transactions(0, 9) == before
    assert not orphan.exists()
    assert [p.name for p in tmp_path.glob("*.txnindex")] == [index.name]
    log.close()


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(first=ops_strategy, then=ops_strategy)
def test_cleaning_between_appends_never_touches_what_was_open(
    first: list[Op], then: list[Op]
) -> None:
    """A round while transactions are open leaves everything from the oldest one
    on as it was; once more batches came (closing some), another round cleans
    further, and a read_committed reader sees the model's compaction of what is
    committed below the cleaned end."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp)
        log = open_log(path)
        model = Model()
        build(log, first, model)
        lso = log.last_stable_offset(log.log_end_offset)
        above = [
            b[2] for b in _batches(log, log.log_end_offset) if b[2].base_offset >= lso
        ]
        cleaner = LogCleaner()
        cleaner.clean(log, now_ms=NOW, force=True, upto=log.log_end_offset)
        after = [
            b[2] for b in _batches(log, log.log_end_offset) if b[2].base_offset >= lso
        ]
        assert after == above
        recs, visible = build(log, then, model)
        cleaner.clean(log, now_ms=NOW, force=True, upto=log.log_end_offset)
        end = cleaner.status(log).first_dirty_offset  # all below it was cleaned
        lso = log.last_stable_offset(log.log_end_offset)
        assert end <= lso
        expected_view = expected(recs, visible, end, lso, tombstones=True)
        assert read_committed(log) == expected_view
        check_index(log)
        log.close()
