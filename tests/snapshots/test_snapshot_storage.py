"""Storage-level snapshot tests: create, inspect (completeness, validation), plan, apply."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.record_builder import RecordInput, build_batch, iter_records
from storage.config import TopicConfig
from storage.errors import OffsetMismatch
from storage.fileops import FileOps
from storage.partition_log import PartitionLog
from storage.snapshot import (
    CreateRequest,
    Snapshot,
    Status,
    apply_order,
    apply_plan,
    create_snapshot,
    inspect_snapshot,
    plan_apply,
)
from storage.snapshot_ingest import IngestState, discover, fingerprint
from storage.snapshot_meta import (
    NO_ANCESTOR,
    SnapshotIncomplete,
    SnapshotInvalid,
    parse_meta,
)

TOPIC_ID = "6ba7b810-9dad-11d1-80b4-00c04fd430c8"


def open_log(path: Path, segment_bytes: int = 1024) -> PartitionLog:
    cfg = TopicConfig.from_overrides({"segment.bytes": str(segment_bytes)}, {})
    return PartitionLog.open(
        str(path), topic="t", partition=0, config=cfg, fileops=FileOps(), clean=True
    )


def produce(log: PartitionLog, values: list[bytes], epoch: int = 0) -> None:
    for v in values:
        log.append(
            build_batch([RecordInput(key=b"k", value=v, timestamp=1000)]),
            leader_epoch=epoch,
        )


def values_of(log: PartitionLog) -> list[tuple[int, bytes | None]]:
    out = []
    offset = log.log_start_offset
    while offset < log.log_end_offset:
        res = log.read(offset, 1 << 20)
        if not res.buffers:
            break
        for buf in res.buffers:
            pos = 0
            while pos < len(buf):
                out.extend((r.offset, r.value) for r in iter_records(buf, pos))
                pos += int.from_bytes(buf[pos + 8 : pos + 12], "big") + 12
        offset = res.next_offset
    return out


def snap(
    log: PartitionLog,
    root: Path,
    sid: str,
    *,
    ancestor: Snapshot | None = None,
    compression: str = "none",
    end: int | None = None,
) -> Snapshot:
    path, _ = create_snapshot(
        log,
        CreateRequest(
            snapshots_dir=str(root / "snapshots"),
            dir_name=TOPIC_ID,
            snapshot_id=sid,
            topic="t",
            topic_id=TOPIC_ID,
            partition=0,
            partition_count=1,
            end_offset=log.log_end_offset if end is None else end,
            compression=compression,
            ancestor=None if ancestor is None else ancestor.meta,
        ),
    )
    return inspect_snapshot(path, str(root.resolve()), settle_s=0)


def ingest(log: PartitionLog, s: Snapshot, root: Path) -> Status:
    plan = plan_apply(s, log, str(root.resolve()))
    apply_plan(log, s, plan, str(root.resolve()))
    return Status.APPLIED if plan.status is Status.APPLYING else plan.status


@pytest.mark.parametrize("compression", ["none", "zstd", "gzip", "lz4"])
def test_create_then_apply_into_empty_log_preserves_offsets(
    root: Path, compression: str
) -> None:
    """A snapshot applied to an empty partition reproduces its records at the same offsets."""
    src = open_log(root / "src")
    produce(src, [b"v%d" % i for i in range(40)])
    s = snap(src, root, "100", compression=compression)
    assert (s.base_offset, s.last_offset) == (0, 39)
    names = os.listdir(s.path)
    assert "meta.json" in names
    if compression != "none":
        assert all(
            n.endswith({"zstd": ".zst", "gzip": ".gz", "lz4": ".lz4"}[compression])
            for n in names
            if ".log" in n
        )
    dst = open_log(root / "dst")
    assert ingest(dst, s, root) is Status.APPLIED
    assert values_of(dst) == values_of(src)
    assert ingest(dst, s, root) is Status.ALREADY_PRESENT


def test_create_hard_links_closed_segments_and_leaves_no_temp_dir(root: Path) -> None:
    """Closed segments are hard-linked into the snapshot; the temp dir is renamed away."""
    src = open_log(root / "src", segment_bytes=300)
    produce(src, [b"x" * 50 for _ in range(20)])
    s = snap(src, root, "7")
    linked = [os.stat(os.path.join(s.path, seg.file)).st_nlink for seg in s.segments]
    assert linked[0] == 2  # shared with the log's closed segment
    assert sorted(os.listdir(root / "snapshots" / TOPIC_ID)) == ["7"]


def test_seed_case_extends_log_from_offset_one(root: Path) -> None:
    """The topic holds offset 0 and the snapshot ends at 1: the log ends at offset 1."""
    src = open_log(root / "src")
    produce(src, [b"hello", b"bar"])
    s = snap(src, root, "1")
    dst = open_log(root / "dst")
    dst.append_verbatim(src.read(0, 1 << 20, upper_bound=1).buffers[0])
    assert dst.log_end_offset == 1
    assert ingest(dst, s, root) is Status.APPLIED
    assert dst.log_end_offset == 2
    assert values_of(dst) == [(0, b"hello"), (1, b"bar")]


def test_minimal_meta_with_six_fields_is_accepted(root: Path) -> None:
    """A meta.json with only the six required fields and the *.log files beside it validates."""
    src = open_log(root / "src")
    produce(src, [b"a", b"b"], epoch=3)
    d = root / "snapshots" / "t" / "5"
    src.link_or_copy_segments_to(str(d), src.log_end_offset)
    size = sum(f.stat().st_size for f in d.glob("*.log"))
    (d / "meta.json").write_text(
        json.dumps(
            {
                "version": 1,
                "last_offset": 1,
                "last_term": 3,
                "ancestor_snapshot_id": NO_ANCESTOR,
                "compression": "none",
                "size": size,
            }
        )
    )
    s = inspect_snapshot(str(d), str(root.resolve()), settle_s=0)
    assert (s.base_offset, s.last_offset, s.meta.partition, s.meta.topic) == (
        0,
        1,
        0,
        None,
    )
    dst = open_log(root / "dst")
    assert ingest(dst, s, root) is Status.APPLIED
    assert dst.leader_epoch >= s.last_term == 3


def test_diverged_snapshot_changes_nothing(root: Path) -> None:
    """A snapshot whose overlap differs from the log is diverged and not applied."""
    src = open_log(root / "src")
    produce(src, [b"a", b"b", b"c"])
    s = snap(src, root, "1")
    dst = open_log(root / "dst")
    produce(dst, [b"z"])
    assert plan_apply(s, dst, str(root.resolve())).status is Status.DIVERGED
    assert values_of(dst) == [(0, b"z")]


def test_incremental_on_empty_partition_waits_for_ancestor(root: Path) -> None:
    """An incremental snapshot never starts an empty log; it waits for its ancestor."""
    src = open_log(root / "src")
    produce(src, [b"a", b"b"])
    full = snap(src, root, "1")
    produce(src, [b"c", b"d"])
    inc = snap(src, root, "2", ancestor=full)
    assert (inc.base_offset, inc.meta.ancestor_snapshot_id) == (2, "1")
    dst = open_log(root / "dst")
    assert (
        plan_apply(inc, dst, str(root.resolve())).status is Status.WAITING_FOR_ANCESTOR
    )
    for s in apply_order([inc, full]):
        ingest(dst, s, root)
    assert values_of(dst) == values_of(src)


def test_gap_before_base_waits_for_ancestor(root: Path) -> None:
    """A non-empty log ending before the snapshot's base waits for the ancestor."""
    src = open_log(root / "src")
    produce(src, [b"a", b"b", b"c", b"d"])
    full = snap(src, root, "1", end=1)
    produce(src, [])
    inc = snap(src, root, "2", ancestor=full)
    dst = open_log(root / "dst")
    dst.append_verbatim(src.read(0, 1 << 20, upper_bound=1).buffers[0])
    dst_plan = plan_apply(inc, dst, str(root.resolve()))
    assert dst_plan.status is Status.APPLYING  # log end 1 == base 1: contiguous
    empty = open_log(root / "other")
    produce(empty, [b"q"])
    produce(src, [b"e"])
    inc2 = snap(src, root, "3", ancestor=inc)
    assert (
        plan_apply(inc2, dst, str(root.resolve())).status is Status.WAITING_FOR_ANCESTOR
    )


def test_corrupt_batch_is_invalid(root: Path) -> None:
    """A flipped byte with a matching (recomputed) checksum is caught by the batch CRC."""
    src = open_log(root / "src")
    produce(src, [b"aaaa", b"bbbb"])
    s = snap(src, root, "1")
    seg = Path(s.path) / s.segments[0].file
    data = bytearray(seg.read_bytes())
    data[-2] ^= 0xFF
    seg.unlink()
    seg.write_bytes(bytes(data))
    meta = json.loads((Path(s.path) / "meta.json").read_text())
    import crc32c

    meta["segments"][0]["crc32c"] = crc32c.crc32c(bytes(data))
    (Path(s.path) / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(SnapshotInvalid) as exc:
        inspect_snapshot(s.path, str(root.resolve()), settle_s=0)
    assert exc.value.reason == "corrupt-batch"


def test_growing_file_is_incomplete_then_checksum_mismatch_when_settled(
    root: Path,
) -> None:
    """A short segment means a copy in progress; once settled, a bad checksum is invalid."""
    src = open_log(root / "src")
    produce(src, [b"aaaa", b"bbbb"])
    s = snap(src, root, "1")
    seg = Path(s.path) / s.segments[0].file
    data = seg.read_bytes()
    seg.unlink()
    seg.write_bytes(data[:-10])
    with pytest.raises(SnapshotIncomplete):
        inspect_snapshot(s.path, str(root.resolve()), settle_s=60)
    seg.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(SnapshotIncomplete):
        inspect_snapshot(s.path, str(root.resolve()), settle_s=60)
    with pytest.raises(SnapshotInvalid) as exc:
        inspect_snapshot(s.path, str(root.resolve()), settle_s=0)
    assert exc.value.reason == "checksum-mismatch"


def test_last_term_must_match_last_batch_epoch(root: Path) -> None:
    """meta.json's last_term must equal the epoch of the last batch."""
    src = open_log(root / "src")
    produce(src, [b"a"], epoch=2)
    s = snap(src, root, "1")
    assert s.last_term == 2
    meta = json.loads((Path(s.path) / "meta.json").read_text())
    meta["last_term"] = 5
    (Path(s.path) / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(SnapshotInvalid) as exc:
        inspect_snapshot(s.path, str(root.resolve()), settle_s=0)
    assert exc.value.reason == "last-term-mismatch"


@pytest.mark.parametrize(
    ("patch", "reason"),
    [
        (
            {"segments": [{"file": "../../etc/passwd", "base_offset": 0}]},
            "bad-file-name",
        ),
        ({"segments": [{"file": "/etc/passwd", "base_offset": 0}]}, "bad-file-name"),
        ({"last_offset": "1"}, "bad-meta"),
        ({"compression": "brotli"}, "bad-meta"),
        ({"topic": "../x"}, "bad-meta"),
    ],
)
def test_hostile_meta_fields_are_rejected(
    patch: dict[str, object], reason: str
) -> None:
    """meta.json fields naming paths or with wrong types are invalid."""
    base = {
        "version": 1,
        "last_offset": 1,
        "last_term": 0,
        "ancestor_snapshot_id": NO_ANCESTOR,
        "compression": "none",
        "size": 1,
    }
    with pytest.raises(SnapshotInvalid) as exc:
        parse_meta(json.dumps(base | patch).encode())
    assert exc.value.reason == reason


def test_truncated_meta_is_incomplete() -> None:
    """A meta.json still being written does not parse yet and is waited for."""
    with pytest.raises(SnapshotIncomplete):
        parse_meta(b'{"version": 1, "last_of')


def test_symlinked_segment_outside_data_dir_is_rejected(
    root: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A segment that is a symlink leading out of the data dir is never read."""
    src = open_log(root / "src")
    produce(src, [b"a"])
    s = snap(src, root, "1")
    outside = tmp_path_factory.mktemp("outside") / "secret.log"
    seg = Path(s.path) / s.segments[0].file
    shutil.copy(seg, outside)
    seg.unlink()
    seg.symlink_to(outside)
    with pytest.raises(SnapshotInvalid) as exc:
        inspect_snapshot(s.path, str(root.resolve()), settle_s=0)
    assert exc.value.reason == "symlink-outside-data-dir"


def test_fifo_segment_is_rejected_without_blocking(root: Path) -> None:
    """A FIFO named like a segment is rejected, never opened for a blocking read."""
    d = root / "snapshots" / "t" / "9"
    d.mkdir(parents=True)
    os.mkfifo(d / "00000000000000000000.log")
    (d / "meta.json").write_text(
        json.dumps(
            {
                "version": 1,
                "last_offset": 0,
                "last_term": 0,
                "ancestor_snapshot_id": NO_ANCESTOR,
                "compression": "none",
                "size": 0,
            }
        )
    )
    with pytest.raises(SnapshotInvalid) as exc:
        inspect_snapshot(str(d), str(root.resolve()), settle_s=0)
    assert exc.value.reason == "not-a-regular-file"


def test_huge_sparse_meta_is_rejected(root: Path) -> None:
    """A 2 GiB (sparse) meta.json is rejected by size without being read."""
    d = root / "snapshots" / "t" / "9"
    d.mkdir(parents=True)
    with open(d / "meta.json", "wb") as f:
        f.truncate(2 * 1024**3)
    with pytest.raises(SnapshotInvalid) as exc:
        inspect_snapshot(str(d), str(root.resolve()), settle_s=0)
    assert exc.value.reason == "meta-too-large"


def test_discover_finds_nested_and_flat_and_skips_dot_dirs(root: Path) -> None:
    """Candidates are at snapshots/<topic>/<id>/ or flat in snapshots/<topic>/."""
    base = root / "snapshots"
    (base / "a" / "1").mkdir(parents=True)
    (base / "a" / "1" / "meta.json").write_text("{}")
    (base / "a" / ".2.tmp").mkdir()
    (base / "a" / ".2.tmp" / "meta.json").write_text("{}")
    (base / "b").mkdir()
    (base / "b" / "meta.json").write_text("{}")
    (base / ".hidden" / "3").mkdir(parents=True)
    (base / "c" / "x" / "y").mkdir(parents=True)
    (base / "c" / "x" / "y" / "meta.json").write_text("{}")
    found = {
        (c.rel, c.flat, c.rejected) for c in discover(str(base), str(root.resolve()))
    }
    assert found == {("a/1", False, None), ("b", True, None)}


def test_discover_rejects_symlinked_dirs_out_of_data_dir_and_non_utf8(
    root: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Directory symlinks leading outside, and non-UTF-8 names, become rejected candidates."""
    base = root / "snapshots"
    outside = tmp_path_factory.mktemp("out")
    (base / "t").mkdir()
    (base / "t" / "1").symlink_to(outside)
    os.mkdir(os.path.join(os.fsencode(base / "t"), b"\xff\xfe"))
    found = {(c.rel, c.rejected) for c in discover(str(base), str(root.resolve()))}
    assert ("t/1", "symlink-outside-data-dir") in found
    assert any(r == "non-utf8-name" for _, r in found)


def test_ingest_state_round_trips_and_ids_increase(root: Path) -> None:
    """The ingest state persists atomically and snapshot ids never repeat."""
    state = IngestState.load(str(root))
    a, b = state.next_snapshot_id(), state.next_snapshot_id()
    assert int(b) > int(a)
    from storage.snapshot_ingest import Entry

    state.set("t/1", Entry(status=Status.APPLIED, fingerprint=fingerprint(str(root))))
    state.save()
    again = IngestState.load(str(root))
    assert again.entries["t/1"].status is Status.APPLIED
    assert int(again.next_snapshot_id()) > int(b)


def test_apply_refuses_when_log_moved_since_plan(root: Path) -> None:
    """A producer slipping in between plan and apply makes the verbatim append fail whole."""
    src = open_log(root / "src")
    produce(src, [b"a", b"b"])
    s = snap(src, root, "1")
    dst = open_log(root / "dst")
    dst.append_verbatim(src.read(0, 1 << 20, upper_bound=1).buffers[0])
    plan = plan_apply(s, dst, str(root.resolve()))
    produce(dst, [b"intruder"])
    with pytest.raises(OffsetMismatch):
        apply_plan(dst, s, plan, str(root.resolve()))
    assert values_of(dst) == [(0, b"a"), (1, b"intruder")]


def test_crash_mid_apply_then_rescan_completes_without_duplicates(root: Path) -> None:
    """A torn tail after a crash is cut by recovery; the next apply completes the prefix."""
    src = open_log(root / "src", segment_bytes=1 << 20)
    produce(src, [b"v%d" % i for i in range(30)])
    s = snap(src, root, "1")
    dst = open_log(root / "dst", segment_bytes=1 << 20)
    apply_plan(dst, s, plan_apply(s, dst, str(root.resolve())), str(root.resolve()))
    seg = root / "dst" / "00000000000000000000.log"
    dst.close(clean=False)
    size = seg.stat().st_size
    os.truncate(seg, size // 2 + 7)  # torn in the middle of a batch
    (root / "dst" / "checkpoint.json").unlink(missing_ok=True)
    cfg = TopicConfig.from_overrides({"segment.bytes": str(1 << 20)}, {})
    dst = PartitionLog.open(
        str(root / "dst"),
        topic="t",
        partition=0,
        config=cfg,
        fileops=FileOps(),
        clean=False,
    )
    assert 0 < dst.log_end_offset < 30
    assert ingest(dst, s, root) is Status.APPLIED
    assert values_of(dst) == values_of(src)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    cuts=st.lists(
        st.integers(min_value=1, max_value=24), min_size=1, max_size=4, unique=True
    ),
    order=st.randoms(use_true_random=False),
    incremental=st.booleans(),
)
def test_chains_apply_to_the_highest_offset_in_any_arrival_order(
    tmp_path_factory: pytest.TempPathFactory,
    cuts: list[int],
    order: object,
    incremental: bool,
) -> None:
    """Any set of snapshots of one history applied in apply_order ends at the highest."""
    import random

    assert isinstance(order, random.Random)
    root = tmp_path_factory.mktemp("chain")
    (root / "snapshots").mkdir()
    src = open_log(root / "src", segment_bytes=400)
    produce(src, [b"r%d" % i for i in range(25)])
    snaps: list[Snapshot] = []
    prev: Snapshot | None = None
    for i, cut in enumerate(sorted(cuts)):
        s = snap(src, root, str(i + 1), ancestor=prev if incremental else None, end=cut)
        snaps.append(s)
        prev = s
    arrived: list[Snapshot] = []
    dst = open_log(root / "dst", segment_bytes=400)
    shuffled = snaps[:]
    order.shuffle(shuffled)
    for s in shuffled:  # each arrival triggers a pass over everything seen so far
        arrived.append(s)
        for cand in apply_order(arrived):
            ingest(dst, cand, root)
    assert dst.log_end_offset == max(cuts)
    assert values_of(dst) == values_of(src)[: max(cuts)]
