"""Snapshot verdicts on a running broker: hostile side files, pathological meta.json,
cached verdicts, and committed offsets an older version persisted."""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, TopicPartition
from kafka.structs import OffsetAndMetadata

from storage.snapshot_groups import GroupOffset
from storage.snapshot_meta import GROUP_OFFSETS_FILE
from tests.snapshots.conftest import Broker, cp_r, wait_for, wait_status
from tests.snapshots.test_snapshot_side_files import make_snapshot
from tests.snapshots.test_snapshot_storage import TOPIC_ID

pytestmark = pytest.mark.integration

Factory = Callable[..., Broker]


def metric(b: Broker, name: str) -> int:
    with urllib.request.urlopen(b.admin_url + "/metrics", timeout=10) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(name + " "):
                return int(line.split()[1])
    raise AssertionError(f"no metric {name}")


def group_offsets(b: Broker, group: str) -> dict[TopicPartition, int]:
    admin = KafkaAdminClient(bootstrap_servers=b.bootstrap)
    try:
        found = admin.list_group_offsets(group)[group]
    finally:
        admin.close()
    return {tp: meta.offset for tp, meta in found.items()}


def commit(b: Broker, group: str, topic: str, offset: int) -> None:
    admin = KafkaAdminClient(bootstrap_servers=b.bootstrap)
    try:
        errors = admin.alter_group_offsets(
            group, {TopicPartition(topic, 0): OffsetAndMetadata(offset, "", -1)}
        )
    finally:
        admin.close()
    assert [e.__name__ for e in errors.values()] == ["NoError"]


def topic_names(b: Broker) -> list[str]:
    return [t["name"] for t in b.admin("GET", "/v1/topics")]


def test_hostile_group_offsets_reject_the_snapshot_and_the_verdict_is_cached(
    brokers: Factory, tmp_path: Path
) -> None:
    """A snapshot whose group-offsets.json holds offset 2**70 for group "\\n../" is
    invalid (file and field named), applies nothing, is not judged again while its
    files stay the same, and is judged again (and applied) once they change."""
    b = brokers("b")
    src = make_snapshot(tmp_path / "src", [GroupOffset(group="g", offset=3)])
    good = (src / GROUP_OFFSETS_FILE).read_bytes()
    hostile = json.loads(good)
    hostile["groups"] = [{"group": "\n../", "offset": 2**70}]
    (src / GROUP_OFFSETS_FILE).write_text(json.dumps(hostile))
    dest = b.data_dir / "snapshots" / TOPIC_ID / "100"
    cp_r(src, dest)
    rel = f"{TOPIC_ID}/100"
    row = wait_status(b, rel, "invalid")
    assert row["reason"].startswith("bad-group-offsets: group-offsets.json: ")
    assert "groups[0].group" in row["reason"]
    assert "t" not in topic_names(b)
    assert group_offsets(b, "\n../") == {}
    # unchanged files: many scans, no new inspection
    judged = metric(b, "ailurus_snapshot_inspections_total")
    scans = metric(b, "ailurus_snapshot_scans_total")
    wait_for(
        lambda: metric(b, "ailurus_snapshot_scans_total") >= scans + 5,
        what="five more scans",
    )
    assert metric(b, "ailurus_snapshot_inspections_total") == judged
    # the user fixes the file: judged again, applied, the offsets restored
    (dest / GROUP_OFFSETS_FILE).write_bytes(good)
    wait_status(b, rel, "applied")
    assert metric(b, "ailurus_snapshot_inspections_total") > judged
    assert b.partition("t", 0)["log_end_offset"] == 10
    assert group_offsets(b, "g") == {TopicPartition("t", 0): 3}


def test_meta_nested_100k_deep_ends_invalid_and_is_not_parsed_again(
    brokers: Factory,
) -> None:
    """meta.json nested 100k levels deep ends invalid with the reason, not waiting
    forever, and later scans do not parse it again."""
    b = brokers("b")
    staging = b.data_dir / "snapshots" / ".deep"
    staging.mkdir(parents=True)
    (staging / "meta.json").write_bytes(b"[" * 100_000 + b"]" * 100_000)
    (staging / "00000000000000000000.log").write_bytes(b"")
    os.rename(staging, b.data_dir / "snapshots" / "deep")
    row = wait_status(b, "deep", "invalid")
    assert row["reason"] == "bad-meta: meta.json: nested too deeply"
    judged = metric(b, "ailurus_snapshot_inspections_total")
    scans = metric(b, "ailurus_snapshot_scans_total")
    wait_for(
        lambda: metric(b, "ailurus_snapshot_scans_total") >= scans + 5,
        what="five more scans",
    )
    assert metric(b, "ailurus_snapshot_inspections_total") == judged
    assert b.statuses()["deep"]["status"] == "invalid"


def test_garbage_meta_is_invalid_once_settled(brokers: Factory) -> None:
    """A meta.json that never parses waits only until the files settle."""
    b = brokers("b")
    path = b.data_dir / "snapshots" / "junk"
    path.mkdir(parents=True)
    (path / "meta.json").write_bytes(b'{"version": 1, "last_')
    row = wait_status(b, "junk", "invalid")
    assert row["reason"].startswith("meta-unparsable: meta.json: ")


def test_persisted_commits_that_cannot_be_encoded_are_skipped_at_start(
    brokers: Factory, tmp_path: Path
) -> None:
    """Committed offsets an older version persisted with values no OffsetFetch can
    carry are skipped and logged at start-up; the group's other offsets are served."""
    data = tmp_path / "b"
    (data / "consumer_offsets").mkdir(parents=True)
    lines = [
        {"group": "g", "partition": 0, "offset": 5},
        {"group": "g", "partition": 1, "offset": 2**70},
        {"group": "g", "partition": 2, "offset": 7, "leader_epoch": 2**40},
        {"group": "g", "partition": 3, "offset": 8, "metadata": "\ud800"},
        {"group": "h", "partition": 0, "offset": 9},
    ]
    (data / "consumer_offsets" / "offsets.jsonl").write_bytes(
        b"".join(
            json.dumps({"op": "commit", "topic": "t"} | line).encode() + b"\n"
            for line in lines
        )
    )
    b = brokers("b")
    assert group_offsets(b, "g") == {TopicPartition("t", 0): 5}
    assert group_offsets(b, "h") == {TopicPartition("t", 0): 9}
    skipped = b.events("offset_entry_skipped")
    assert [(e["line"], e["reason"].split(" ")[0]) for e in skipped] == [
        (2, "offset"),
        (3, "leader_epoch"),
        (4, "metadata"),
    ]


def test_create_leaves_out_commits_ingest_would_refuse(brokers: Factory) -> None:
    """create --with-group-offsets stores only commits that keep the file's rules
    (a group id with a newline is left out, and logged), so the snapshot is valid and
    the other groups' offsets are restored."""
    b1, b2 = brokers("b1"), brokers("b2")
    b1.cli("topic", "produce", "grp", "--key-value", "a:1")
    b1.cli("topic", "produce", "grp", "--key-value", "b:2")
    commit(b1, "good", "grp", 1)
    commit(b1, "bad\ngroup", "grp", 2)
    out = b1.cli(
        "--format", "json", "snapshot", "create", "--topic", "grp",
        "--with-group-offsets",
    )  # fmt: skip
    [res] = json.loads(out.stdout)
    stored = json.loads((Path(str(res["path"])) / GROUP_OFFSETS_FILE).read_bytes())
    assert [g["group"] for g in stored["groups"]] == ["good"]
    left_out = b1.events("snapshot_group_offset_left_out")
    assert [e["reason"] for e in left_out] == ["group holds a control character"]
    rel = f"{res['topic_id']}/{res['snapshot_id']}"
    cp_r(Path(str(res["path"])), b2.data_dir / "snapshots" / rel)
    wait_status(b2, rel, "applied")
    assert group_offsets(b2, "good") == {TopicPartition("grp", 0): 1}
    assert group_offsets(b2, "bad\ngroup") == {}
