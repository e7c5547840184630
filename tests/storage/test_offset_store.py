"""The committed-offset store: durability, crash recovery, deletion, expiry."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storage.errors import StorageIOError
from storage.fileops import FileOps
from storage.offset_store import CommittedOffset, OffsetStore


def _off(topic: str, part: int, offset: int, **kw: object) -> CommittedOffset:
    return CommittedOffset(topic=topic, partition=part, offset=offset, **kw)  # type: ignore[arg-type]


def test_commit_is_visible_at_once_and_durable_after_sync(tmp_path: Path) -> None:
    """A commit is readable immediately and counts as durable only after sync."""
    store = OffsetStore(tmp_path)
    seq = store.commit("g", [_off("t", 0, 5, metadata="m1")])
    assert store.fetch("g") == {("t", 0): _off("t", 0, 5, metadata="m1")}
    assert store.durable_seq < seq
    assert store.needs_sync
    assert store.sync() >= seq
    assert not store.needs_sync
    store.close()


def test_offsets_survive_clean_reopen(tmp_path: Path) -> None:
    """After a clean close the compacted file reopens with the latest offsets."""
    store = OffsetStore(tmp_path)
    store.commit("g", [_off("t", 0, 5), _off("t", 1, 7, leader_epoch=3)])
    store.commit("g", [_off("t", 0, 9, metadata="meta", commit_ms=11)])
    store.commit("h", [_off("u", 0, 1)])
    store.close()
    lines = store.path.read_text().splitlines()
    assert len(lines) == 3  # compacted
    again = OffsetStore(tmp_path)
    assert again.fetch("g") == {
        ("t", 0): _off("t", 0, 9, metadata="meta", commit_ms=11),
        ("t", 1): _off("t", 1, 7, leader_epoch=3),
    }
    assert again.groups() == ["g", "h"]
    again.close()


def test_crash_with_torn_tail_keeps_every_complete_line(tmp_path: Path) -> None:
    """A partly written last line (crash mid-write) is cut off; earlier commits remain."""
    store = OffsetStore(tmp_path)
    store.commit("g", [_off("t", 0, 1)])
    store.commit("g", [_off("t", 0, 2)])
    store.sync()
    path = store.path
    data = path.read_bytes()
    # simulate a crash: no close; append half a line
    with open(path, "ab") as fh:
        fh.write(b'{"op":"commit","group":"g","topic":"t","partition":0,"off')
    for cut in range(len(data) - 1, len(data) - 20, -3):
        with open(path, "wb") as fh:
            fh.write(data[:cut])
        reopened = OffsetStore(tmp_path)
        assert reopened.fetch("g") == {("t", 0): _off("t", 0, 1)}
        assert reopened.recovered_bytes_dropped > 0
        assert path.read_bytes() == data[: data.index(b"\n") + 1]
        reopened.close(clean=False)


def test_garbage_line_stops_recovery_there(tmp_path: Path) -> None:
    """The first undecodable line and everything after it are dropped."""
    store = OffsetStore(tmp_path)
    store.commit("g", [_off("t", 0, 1)])
    store.close(clean=False)
    with open(store.path, "ab") as fh:
        fh.write(b"\x00garbage\n")
        fh.write(
            json.dumps(
                {
                    "op": "commit",
                    "group": "g",
                    "topic": "t",
                    "partition": 0,
                    "offset": 99,
                }
            ).encode()
            + b"\n"
        )
    again = OffsetStore(tmp_path)
    assert again.fetch("g")[("t", 0)].offset == 1
    again.close()


def test_writes_after_recovery_append_cleanly(tmp_path: Path) -> None:
    """Commits after recovering from a torn tail are themselves recoverable."""
    store = OffsetStore(tmp_path)
    store.commit("g", [_off("t", 0, 1)])
    store.close(clean=False)
    with open(store.path, "ab") as fh:
        fh.write(b'{"op":"com')
    again = OffsetStore(tmp_path)
    again.commit("g", [_off("t", 0, 2)])
    again.close(clean=False)
    third = OffsetStore(tmp_path)
    assert third.fetch("g")[("t", 0)].offset == 2
    third.close()


def test_fetch_listed_partitions_only(tmp_path: Path) -> None:
    """Fetching named partitions returns only those that have commits."""
    store = OffsetStore(tmp_path)
    store.commit("g", [_off("t", 0, 1), _off("t", 1, 2)])
    assert store.fetch("g", [("t", 1), ("t", 5)]) == {("t", 1): _off("t", 1, 2)}
    assert store.fetch("nobody") == {}
    store.close()


def test_delete_group_and_topic_persist(tmp_path: Path) -> None:
    """Deleted groups and the offsets of deleted topics stay deleted after a crash."""
    store = OffsetStore(tmp_path)
    store.commit("g", [_off("t", 0, 1), _off("u", 0, 2)])
    store.commit("h", [_off("t", 0, 3)])
    store.commit("k", [_off("v", 0, 3)])
    assert store.delete_topic("t") == 2
    store.delete_group("k")
    store.sync()
    store.close(clean=False)
    again = OffsetStore(tmp_path)
    assert again.groups() == ["g"]
    assert again.fetch("g") == {("u", 0): _off("u", 0, 2)}
    again.close()


def test_delete_offsets_of_some_partitions(tmp_path: Path) -> None:
    """OffsetDelete removes just the named partitions."""
    store = OffsetStore(tmp_path)
    store.commit("g", [_off("t", 0, 1), _off("t", 1, 2)])
    store.delete_offsets("g", [("t", 0)])
    store.close(clean=False)
    again = OffsetStore(tmp_path)
    assert list(again.fetch("g")) == [("t", 1)]
    again.close()


def test_expiry_honours_retention_and_protection(tmp_path: Path) -> None:
    """Offsets expire retention after commit (or after the group emptied), never while protected."""
    store = OffsetStore(tmp_path)
    store.commit("old", [_off("t", 0, 1, commit_ms=1_000)])
    store.commit("active", [_off("t", 0, 1, commit_ms=1_000)])
    store.commit("recently_empty", [_off("t", 0, 1, commit_ms=1_000)])
    store.commit("explicit", [_off("t", 0, 1, commit_ms=50_000, expire_ms=5_000)])
    gone = store.expire(
        now_ms=11_000,
        retention_ms=10_000,
        protected_groups={"active"},
        empty_since_ms={"recently_empty": 9_000},
    )
    assert sorted(gone) == [("explicit", "t", 0), ("old", "t", 0)]
    store.close(clean=False)
    again = OffsetStore(tmp_path)
    assert again.groups() == ["active", "recently_empty"]
    again.close()


def test_compaction_keeps_latest_and_shrinks_file(tmp_path: Path) -> None:
    """Compaction rewrites the log with one line per live offset."""
    store = OffsetStore(tmp_path)
    for i in range(200):
        store.commit("g", [_off("t", i % 4, i)])
    big = store.path.stat().st_size
    store.compact()
    assert store.path.stat().st_size < big / 10
    store.commit("g", [_off("t", 0, 1000)])
    store.close(clean=False)
    again = OffsetStore(tmp_path)
    assert {k: v.offset for k, v in again.fetch("g").items()} == {
        ("t", 0): 1000,
        ("t", 1): 197,
        ("t", 2): 198,
        ("t", 3): 199,
    }
    again.close()


class _FailingSync(FileOps):
    def fdatasync(self, fd: int) -> None:
        raise OSError(errno.EIO, "injected EIO")


def test_failed_fsync_is_a_storage_error_and_not_durable(tmp_path: Path) -> None:
    """EIO on fsync raises StorageIOError and does not advance the durable sequence."""
    store = OffsetStore(tmp_path, fileops=_FailingSync())
    seq = store.commit("g", [_off("t", 0, 1)])
    with pytest.raises(StorageIOError):
        store.sync()
    assert store.durable_seq < seq
    with pytest.raises(StorageIOError):
        store.commit("g", [_off("t", 0, 2)])
    with pytest.raises(StorageIOError):
        store.sync()
    os.close(store._fd)  # the store is unusable; release the descriptor


def test_unicode_group_and_metadata_round_trip(tmp_path: Path) -> None:
    """Group ids and metadata are stored as UTF-8 text, newlines included."""
    store = OffsetStore(tmp_path)
    store.commit("grüppe\n1", [_off("tópic", 0, 1, metadata="line1\nline2 ☃")])
    store.close(clean=False)
    again = OffsetStore(tmp_path)
    assert again.fetch("grüppe\n1")[("tópic", 0)].metadata == "line1\nline2 ☃"
    again.close()


def _commit_line(group: str, partition: int, offset: int, **kw: object) -> bytes:
    obj = {"op": "commit", "group": group, "topic": "t", "partition": partition}
    return json.dumps(obj | {"offset": offset} | kw).encode() + b"\n"


def test_persisted_commits_no_response_can_carry_are_skipped(tmp_path: Path) -> None:
    """Commit lines an older version wrote with values OffsetFetch cannot encode
    (offset past int64, int32 overflow, non-UTF-8 text) are skipped and reported;
    the lines after them still load."""
    path = tmp_path / "consumer_offsets" / "offsets.jsonl"
    path.parent.mkdir()
    path.write_bytes(
        _commit_line("g", 0, 5)
        + _commit_line("g", 1, 2**70)
        + _commit_line("g", 2, 7, leader_epoch=2**40)
        + _commit_line("g", 3, 7, metadata="\ud800")
        + _commit_line("\n../x", 0, 1, metadata="m" * 40_000)
        + _commit_line("g", 1, 2**63 - 1)
        + _commit_line("g", 4, 9)
    )
    store = OffsetStore(tmp_path)
    assert store.fetch("g") == {
        ("t", 0): _off("t", 0, 5),
        ("t", 1): _off("t", 1, 2**63 - 1),
        ("t", 4): _off("t", 4, 9),
    }
    assert store.groups() == ["g"]
    assert store.recovered_bytes_dropped == 0
    assert store.skipped_count == 4
    assert [(s.line, s.group) for s in store.skipped] == [
        (2, "'g'"),
        (3, "'g'"),
        (4, "'g'"),
        (5, repr("\n../x")),
    ]
    reasons = [s.reason for s in store.skipped]
    assert reasons[0] == f"offset {2**70} is not an int64"
    assert reasons[1].startswith("leader_epoch ")
    assert reasons[2] == "metadata is not valid UTF-8"
    assert reasons[3] == "metadata is 40000 bytes, over 32767"
    store.close()
    # the clean close compacted them away: nothing is skipped any more
    again = OffsetStore(tmp_path)
    assert again.skipped_count == 0
    assert len(again.fetch("g")) == 3
    again.close()


_OPS = st.lists(
    st.one_of(
        st.tuples(
            st.just("commit"),
            st.sampled_from("gh"),
            st.sampled_from("tu"),
            st.integers(0, 2),
        ),
        st.tuples(
            st.just("delete_group"), st.sampled_from("gh"), st.just(""), st.just(0)
        ),
        st.tuples(
            st.just("delete_topic"), st.just(""), st.sampled_from("tu"), st.just(0)
        ),
        st.tuples(st.just("sync"), st.just(""), st.just(""), st.just(0)),
    ),
    max_size=25,
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(ops=_OPS, cut_fraction=st.floats(0, 1))
def test_crash_at_any_byte_recovers_a_prefix_including_every_sync(
    tmp_path_factory: pytest.TempPathFactory,
    ops: list[tuple[str, str, str, int]],
    cut_fraction: float,
) -> None:
    """A crash that tears the log anywhere after the last sync recovers the state of
    some prefix of the writes, never less than what was synced."""
    root = tmp_path_factory.mktemp("crash")
    store = OffsetStore(root)
    model: dict[str, dict[tuple[str, int], int]] = {}
    history = [(0, {})]  # (file size, state) after each write
    synced_size = 0
    offset = 0
    for op, group, topic, part in ops:
        if op == "commit":
            offset += 1
            store.commit(group, [_off(topic, part, offset)])
            model.setdefault(group, {})[(topic, part)] = offset
        elif op == "delete_group":
            store.delete_group(group)
            model.pop(group, None)
        elif op == "delete_topic":
            store.delete_topic(topic)
            for g in list(model):
                model[g] = {k: v for k, v in model[g].items() if k[0] != topic}
                if not model[g]:
                    del model[g]
        else:
            store.sync()
            synced_size = store.path.stat().st_size
        size = store.path.stat().st_size
        if size != history[-1][0]:
            history.append((size, {g: dict(t) for g, t in model.items()}))
    store.sync()
    os.close(store._fd)  # crash: no clean close
    data = store.path.read_bytes()
    cut = synced_size + int((len(data) - synced_size) * cut_fraction)
    store.path.write_bytes(data[:cut])
    recovered = OffsetStore(root)
    got = {
        g: {k: v.offset for k, v in recovered.fetch(g).items()}
        for g in recovered.groups()
    }
    expected = [state for size, state in history if size <= cut][-1]
    assert got == expected
    recovered.close()
