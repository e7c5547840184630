"""Every command's ``--format json`` output parses and keeps a stable shape.

The shape (keys, nesting and value types) of each command's output is snapshotted
here; a change to it is a change to a scripting interface and must be deliberate.
"""

from __future__ import annotations

from pathlib import Path

from tests.cli.conftest import Target, invoke, unique

Shape = object


def shape(value: object) -> Shape:
    """Keys and value types of a JSON value (lists by their first element)."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    if value is None:
        return None
    return type(value).__name__


RECORD = {
    "headers": [{"key": "str", "value": "str", "value_encoding": "str"}],
    "key": "str",
    "key_encoding": "str",
    "offset": "int",
    "partition": "int",
    "timestamp": "int",
    "topic": "str",
    "value": "str",
    "value_encoding": "str",
}


def test_topic_commands_json_shapes(ailurus: Target) -> None:
    """topic create/list/describe/produce/consume/add-partitions/trim-prefix/delete."""
    topic = unique("json")

    def run(*args: str) -> object:
        res = invoke(ailurus, "--format", "json", "topic", *args)
        assert res.exit_code == 0, res.stderr
        return res.json()

    assert shape(run("create", topic, "-p", "2")) == {
        "topics": [
            {"created": "bool", "name": "str", "partitions": "int", "topic_id": "str"}
        ]
    }
    listed = run("list")
    assert shape(listed) == {
        "topics": [
            {
                "internal": "bool",
                "name": "str",
                "partitions": "int",
                "replicas": "int",
                "topic_id": "str",
            }
        ]
    }
    described = run("describe", topic)
    assert shape(described) == {
        "configs": [
            {"name": "str", "read_only": "bool", "source": "str", "value": "str"}
        ],
        "internal": "bool",
        "name": "str",
        "partitions": [
            {
                "high_watermark": "int",
                "isr": ["int"],
                "leader": "int",
                "leader_epoch": "int",
                "log_start_offset": "int",
                "online": "bool",
                "partition": "int",
                "replicas": ["int"],
            }
        ],
        "topic_id": "str",
    }
    produced = invoke(
        ailurus,
        "--format",
        "json",
        "topic",
        "produce",
        topic,
        "-p",
        "0",
        "--key-value",
        "a:b",
        "-H",
        "x=y",
    )
    assert [shape(x) for x in produced.json_lines()] == [
        {"offset": "int", "partition": "int", "topic": "str"}
    ]
    consumed = invoke(
        ailurus, "topic", "consume", topic, "--until-end", "--format", "json"
    )
    assert [shape(x) for x in consumed.json_lines()] == [RECORD]
    assert shape(run("add-partitions", topic, "-n", "1")) == {
        "name": "str",
        "partitions": "int",
        "previous_partitions": "int",
    }
    assert run("trim-prefix", topic, "-o", "1", "-p", "0") == {
        "name": topic,
        "partitions": [{"partition": 0, "log_start_offset": 1}],
    }
    assert run("delete", topic) == {"deleted": [topic]}


def test_group_commands_json_shapes(ailurus: Target) -> None:
    """group list/describe/seek/delete."""
    topic, group = unique("gjson"), unique("g")
    assert invoke(ailurus, "topic", "create", topic).exit_code == 0
    assert (
        invoke(
            ailurus,
            "topic",
            "produce",
            topic,
            "--key-value",
            "a:1",
            "--key-value",
            "b:2",
        ).exit_code
        == 0
    )
    res = invoke(ailurus, "topic", "consume", topic, "-g", group, "--num", "1")
    assert res.stdout == b"a:1\n"

    def run(*args: str) -> object:
        res = invoke(ailurus, "--format", "json", "group", *args)
        assert res.exit_code == 0, res.stderr
        return res.json()

    listed = run("list")
    assert shape(listed) == {
        "groups": [{"group_id": "str", "protocol_type": "str", "state": "str"}]
    }
    assert group in [g["group_id"] for g in listed["groups"]]  # type: ignore[index]
    described = run("describe", group)
    assert described == {
        "group_id": group,
        "members": [],
        "offsets": [
            {
                "topic": topic,
                "partition": 0,
                "committed_offset": 1,
                "log_end_offset": 2,
                "lag": 1,
                "member_id": None,
            }
        ],
        "protocol": "",
        "protocol_type": "consumer",  # the CLI consumed as a real member
        "state": "Empty",
        "total_lag": 1,
        "isolation": "read_uncommitted",
    }
    assert run("seek", group, "--to", "end") == {
        "group_id": group,
        "offsets": [{"topic": topic, "partition": 0, "offset": 2}],
    }
    assert run("delete", group) == {"deleted": [group]}


def test_cluster_commands_json_shapes(ailurus: Target) -> None:
    """cluster info/health."""
    info = invoke(ailurus, "--format", "json", "cluster", "info")
    assert shape(info.json()) == {
        "api_keys": "int",
        "brokers": [
            {
                "host": "str",
                "is_controller": "bool",
                "leader_partitions": "int",
                "node_id": "int",
                "port": "int",
                "rack": None,
                "replica_partitions": "int",
            }
        ],
        "cli_version": "str",
        "cluster_id": "str",
        "controller_id": "int",
        "internal_topics": "int",
        "partitions": "int",
        "topics": "int",
    }
    health = invoke(ailurus, "cluster", "health", "--format", "json")
    assert health.exit_code == 0, health.stdout
    assert shape(health.json()) == {
        "all_nodes": ["int"],
        "brokers": "int",
        "controller_id": "int",
        "errors": [],
        "healthy": "bool",
        "kafka_reachable": "bool",
        "nodes_down": [],
        "offline_partitions": [],
        "partitions": "int",
        "ready": "bool",
        "ready_detail": "str",
        "under_replicated_partitions": [],
        "unhealthy_reasons": [],
        "warnings": [],
        "stuck_transactions": [],
    }


SNAPSHOT = {
    "ancestor_snapshot_id": None,
    "base_offset": "int",
    "compression": "str",
    "last_offset": "int",
    "last_term": "int",
    "leader_epoch": "int",
    "partition": "int",
    "path": "str",
    "seconds": "float",
    "size": "int",
    "snapshot_id": "str",
    "topic": "str",
    "topic_id": "str",
}
TRANSFER = {
    "bytes_transferred": "int",
    "files_skipped": "int",
    "files_transferred": "int",
    "reason": "str",
    "snapshot_id": "str",
    "status": "str",
    "topic": "str",
}


def test_snapshot_commands_json_shapes(ailurus: Target, tmp_path: Path) -> None:
    """snapshot create (full, skipped, incremental)/list/show/verify/restore/prune/
    push/pull."""
    topic = unique("sjson")
    assert invoke(ailurus, "topic", "create", topic, "-p", "1").exit_code == 0

    def produce(*values: bytes) -> None:
        res = invoke(ailurus, "topic", "produce", topic, stdin=b"\n".join(values))
        assert res.exit_code == 0, res.stderr

    def run(*args: str) -> object:
        res = invoke(ailurus, "--format", "json", "snapshot", *args)
        assert res.exit_code == 0, res.stderr
        return res.json()

    produce(b"a", b"b")
    full = run("create", "--topic", topic)
    assert shape(full) == [SNAPSHOT]
    assert isinstance(full, list)
    path = Path(full[0]["path"])
    assert shape(run("create", "--topic", topic, "--incremental")) == [
        {"partition": "int", "reason": "str", "skipped": "str", "topic": "str"}
    ]
    produce(b"c")
    assert shape(run("create", "--topic", topic, "--incremental")) == [
        {**SNAPSHOT, "ancestor_snapshot_id": "str"}
    ]
    listed = run("list")
    assert isinstance(listed, list)
    mine = [row for row in listed if row["topic"] == topic]
    assert len(mine) == 2
    assert [shape(row) for row in mine] == [SNAPSHOT_ROW, SNAPSHOT_ROW]
    shown = run("show", path.parent.name, path.name)
    assert shape(shown) == {**SNAPSHOT_ROW, "meta": META}
    assert shape(run("verify", str(path))) == {
        "ancestor_snapshot_id": None,
        "base_offset": "int",
        "last_offset": "int",
        "last_term": "int",
        "partition": "int",
        "path": "str",
        "segments": "int",
        "size": "int",
        "topic": "str",
        "valid": "bool",
    }
    restored = run("restore", "--from", str(path), "--data-dir", str(tmp_path / "r"))
    assert shape(restored) == [
        {"base_offset": "int", "last_offset": "int", "path": "str"}
    ]
    pruned = run(
        "prune", "--data-dir", str(tmp_path / "r"), "--keep-last", "1", "--dry-run"
    )
    assert pruned == {"dry_run": True, "removed": []}
    remote = (tmp_path / "remote").as_uri()
    assert shape(run("push", "--to", remote, "--source", str(path))) == [TRANSFER]
    assert shape(run("pull", "--from", remote, "--list")) == [
        {
            "ancestor_snapshot_id": None,
            "base_offset": "int",
            "last_offset": "int",
            "partition": "int",
            "size": "int",
            "snapshot_id": "str",
            "topic": "str",
            "topic_name": "str",
        }
    ]
    pulled = run("pull", "--from", remote, "--data-dir", str(tmp_path / "p"))
    assert shape(pulled) == [TRANSFER]


SNAPSHOT_ROW = {
    "base_offset": "int",
    "bytes_applied": "int",
    "last_offset": "int",
    "partition": "int",
    "path": "str",
    "reason": "str",
    "size": "int",
    "snapshot_id": "str",
    "status": "str",
    "topic": "str",
    "updated_at": "int",
}
META = {  # meta.json as stored: a full snapshot's ancestor is all zeros
    "ancestor_snapshot_id": "str",
    "base_offset": "int",
    "compression": "str",
    "created_at": "str",
    "last_offset": "int",
    "last_stable_offset": "int",
    "last_term": "int",
    "leader_epoch": "int",
    "max_timestamp": "int",
    "partition": "int",
    "partition_count": "int",
    "segments": [
        {
            "base_offset": "int",
            "crc32c": "int",
            "file": "str",
            "last_offset": "int",
            "size": "int",
        }
    ],
    "size": "int",
    "snapshot_id": "str",
    "topic": "str",
    "topic_id": "str",
    "txn_indexes": [],  # no transaction aborted in this partition
    "version": "int",
}
