"""Storage-level checks of a snapshot's JSON files: group-offsets.json and meta.json."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from storage.snapshot import CreateRequest, create_snapshot, inspect_snapshot
from storage.snapshot_groups import GroupOffset, parse_group_offsets
from storage.snapshot_meta import (
    GROUP_OFFSETS_FILE,
    SnapshotIncomplete,
    SnapshotInvalid,
    parse_meta,
)
from tests.snapshots.test_snapshot_storage import TOPIC_ID, open_log, produce


def make_snapshot(root: Path, groups: list[GroupOffset], *, records: int = 10) -> Path:
    """A snapshot of ``records`` records (last_offset records - 1), group offsets."""
    src = open_log(root / "src")
    produce(src, [b"v%d" % i for i in range(records)])
    path, _ = create_snapshot(
        src,
        CreateRequest(
            snapshots_dir=str(root / "snapshots"),
            dir_name=TOPIC_ID,
            snapshot_id="100",
            topic="t",
            topic_id=TOPIC_ID,
            partition=0,
            partition_count=1,
            end_offset=src.log_end_offset,
            group_offsets=groups,
        ),
    )
    return Path(path)


def group_file(**entry: object) -> dict[str, object]:
    """A group-offsets.json object with one entry (``g`` at offset 3 by default)."""
    return {
        "version": 1,
        "topic": "t",
        "partition": 0,
        "groups": [{"group": "g", "offset": 3} | entry],
    }


def inspect(path: Path, root: Path, settle_s: float = 0) -> None:
    inspect_snapshot(str(path), str(root.resolve()), settle_s=settle_s)


def test_group_offsets_written_by_create_pass_inspection(root: Path) -> None:
    """Offsets a snapshot's own create wrote are accepted and read back unchanged."""
    path = make_snapshot(root, [GroupOffset(group="team/app.v2", offset=7)])
    snap = inspect_snapshot(str(path), str(root.resolve()), settle_s=0)
    data = (path / GROUP_OFFSETS_FILE).read_bytes()
    assert parse_group_offsets(data, snap.meta) == [
        GroupOffset(group="team/app.v2", offset=7)
    ]


def test_create_caps_offsets_committed_past_the_snapshot_end(root: Path) -> None:
    """A group that read on while the snapshot was taken is stored at its end."""
    path = make_snapshot(
        root,
        [GroupOffset(group="ahead", offset=500), GroupOffset(group="at", offset=10)],
    )
    inspect(path, root)
    stored = json.loads((path / GROUP_OFFSETS_FILE).read_bytes())
    assert [(g["group"], g["offset"]) for g in stored["groups"]] == [
        ("ahead", 10),
        ("at", 10),
    ]


@pytest.mark.parametrize(
    ("content", "field"),
    [
        (group_file(offset=2**70), "groups[0].offset"),
        (group_file(offset=11), "groups[0].offset"),  # last_offset 9: at most 10
        (group_file(offset=-1), "groups[0].offset"),
        (group_file(offset="3"), "groups[0].offset"),
        (group_file(offset=True), "groups[0].offset"),
        (group_file(offset=3.0), "groups[0].offset"),
        (group_file(group="\n../../etc"), "groups[0].group"),
        (group_file(group=""), "groups[0].group"),
        (group_file(group="a\x00b"), "groups[0].group"),
        (group_file(group="\ud800"), "groups[0].group"),
        (group_file(group="x" * 32768), "groups[0].group"),
        (group_file(group=7), "groups[0].group"),
        (group_file(metadata="m" * 4097), "groups[0].metadata"),
        (group_file(metadata="a\x1bb"), "groups[0].metadata"),
        (group_file(leader_epoch=2**31), "groups[0].leader_epoch"),
        (group_file(leader_epoch=-2), "groups[0].leader_epoch"),
        (group_file(commit_ms=-5), "groups[0].commit_ms"),
        (group_file() | {"partition": 5}, "partition"),
        (group_file() | {"partition": 0.0}, "partition"),
        (group_file() | {"partition": False}, "partition"),
        (group_file() | {"topic": "other"}, "topic"),
        (group_file() | {"version": 2}, "version"),
        (group_file() | {"groups": {"g": 3}}, "groups is not a list"),
        (
            group_file()
            | {"groups": [{"group": "g", "offset": 1}, {"group": "g", "offset": 2}]},
            "groups[1].group is listed twice",
        ),
    ],
)
def test_hostile_group_offsets_make_the_snapshot_invalid(
    root: Path, content: dict[str, object], field: str
) -> None:
    """A group-offsets.json breaking a rule makes the snapshot invalid, naming the
    file and the field."""
    path = make_snapshot(root, [GroupOffset(group="g", offset=3)])
    (path / GROUP_OFFSETS_FILE).write_text(json.dumps(content))
    with pytest.raises(SnapshotInvalid) as info:
        inspect(path, root)
    assert info.value.reason == "bad-group-offsets"
    assert GROUP_OFFSETS_FILE in info.value.detail
    assert field in info.value.detail


@pytest.mark.parametrize(
    "raw",
    [
        b'{"version": 1, "partition": 0, "groups": [{"group": "g", "offset": NaN}]}',
        b'{"version": 1, "partition": 0, "partition": 0, "groups": []}',
        b'{"version": 1, "partition": 0, "groups": [{"group": "g", "offset": '
        + b"9" * 5000
        + b"}]}",
        b"[" * 100_000 + b"]" * 100_000,
    ],
    ids=["nan", "duplicate-key", "5000-digit-number", "nested-100k"],
)
def test_pathological_group_offsets_json_is_invalid(root: Path, raw: bytes) -> None:
    """NaN, duplicate keys, huge numbers and deep nesting in group-offsets.json are
    invalid, never 'still copying'."""
    path = make_snapshot(root, [GroupOffset(group="g", offset=3)])
    (path / GROUP_OFFSETS_FILE).write_bytes(raw)
    with pytest.raises(SnapshotInvalid) as info:
        inspect(path, root, settle_s=3600)
    assert info.value.reason == "bad-group-offsets"
    assert GROUP_OFFSETS_FILE in info.value.detail


def test_group_offsets_being_copied_wait_then_are_invalid_once_settled(
    root: Path,
) -> None:
    """A missing or cut-short group-offsets.json waits while the copy may be running;
    cut short and settled, it is invalid."""
    path = make_snapshot(root, [GroupOffset(group="g", offset=3)])
    data = (path / GROUP_OFFSETS_FILE).read_bytes()
    (path / GROUP_OFFSETS_FILE).unlink()
    with pytest.raises(SnapshotIncomplete) as waiting:
        inspect(path, root)
    assert GROUP_OFFSETS_FILE in waiting.value.detail
    (path / GROUP_OFFSETS_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(SnapshotIncomplete):
        inspect(path, root, settle_s=3600)
    with pytest.raises(SnapshotInvalid) as invalid:
        inspect(path, root, settle_s=0)
    assert GROUP_OFFSETS_FILE in invalid.value.detail


def test_unnamed_group_offsets_file_is_not_read(root: Path) -> None:
    """A group-offsets.json that meta.json does not name is neither restored nor
    judged (the snapshot carries no offsets)."""
    path = make_snapshot(root, [GroupOffset(group="g", offset=3)])
    meta = json.loads((path / "meta.json").read_bytes())
    del meta["group_offsets"]
    (path / "meta.json").write_text(json.dumps(meta))
    (path / GROUP_OFFSETS_FILE).write_text("not json")
    snap = inspect_snapshot(str(path), str(root.resolve()), settle_s=0)
    assert snap.meta.group_offsets is None


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "nested too deeply"),
        (b'{"version": 1, "last_offset": ' + b"1" * 100_000 + b"}", "digits"),
        (b'{"version": 1, "version": 1}', "duplicate key 'version'"),
        (b'{"version": 1, "last_offset": Infinity}', "Infinity"),
        (b'{"version": 1, "size": NaN}', "NaN"),
        (b'{"version": 1, "size": 1.' + b"0" * 100 + b"}", "characters"),
        ('{"topic": "é"}'.encode("utf-16"), "UTF-8"),
    ],
    ids=[
        "nested-list",
        "nested-object",
        "huge-int",
        "duplicate-key",
        "infinity",
        "nan",
        "huge-float",
        "utf16",
    ],
)
def test_pathological_meta_json_is_invalid_not_incomplete(
    raw: bytes, words: str
) -> None:
    """Complete but pathological meta.json is a final 'invalid', with the reason."""
    with pytest.raises(SnapshotInvalid) as info:
        parse_meta(raw)
    assert info.value.reason == "bad-meta"
    assert words in info.value.detail


def test_meta_nested_100k_deep_in_a_directory_is_invalid(root: Path) -> None:
    """A snapshot directory whose meta.json nests 100k levels is invalid at once."""
    path = root / "snapshots" / "t" / "1"
    path.mkdir(parents=True)
    (path / "meta.json").write_bytes(b"[" * 100_000 + b"]" * 100_000)
    (path / "00000000000000000000.log").write_bytes(b"")
    with pytest.raises(SnapshotInvalid) as info:
        inspect(path, root, settle_s=3600)
    assert "nested too deeply" in str(info.value)


def test_unparsable_meta_waits_while_fresh_then_is_invalid(root: Path) -> None:
    """meta.json that does not parse may be mid-copy; untouched for the settle time,
    it is invalid."""
    path = root / "snapshots" / "t" / "1"
    path.mkdir(parents=True)
    (path / "meta.json").write_bytes(b'{"version": 1, "last_')
    with pytest.raises(SnapshotIncomplete) as waiting:
        inspect(path, root, settle_s=3600)
    assert waiting.value.reason == "meta-unparsable"
    old = os.stat(path / "meta.json").st_mtime - 10
    os.utime(path / "meta.json", (old, old))
    with pytest.raises(SnapshotInvalid) as invalid:
        inspect(path, root, settle_s=5)
    assert invalid.value.reason == "meta-unparsable"
    assert "meta.json" in invalid.value.detail
