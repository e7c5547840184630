"""Snapshot directories of valid Kafka batches in the documented layout, for tests."""

from __future__ import annotations

import json
from pathlib import Path

import crc32c

from protocol.record_builder import RecordInput, build_batch

TOPIC_ID = "5b1c1a53-2d0f-4a1c-9a55-3c8a1e6f0a01"


def write_snapshot(
    root: Path,
    *,
    snapshot_id: int,
    base_offset: int,
    count: int,
    ancestor: int | None = None,
    topic_id: str = TOPIC_ID,
    partition: int = 0,
    batch_size: int = 5,
    value_size: int = 100,
    extra_files: dict[str, bytes] | None = None,
) -> Path:
    """A snapshot dir ``root/<topic_id>/<snapshot_id>/`` of valid v2 batches."""
    batches = []
    for start in range(base_offset, base_offset + count, batch_size):
        n = min(batch_size, base_offset + count - start)
        batches.append(
            build_batch(
                [
                    RecordInput(
                        key=b"k%d" % (start + i),
                        value=(b"v%d-" % (start + i)).ljust(value_size, b"x"),
                        timestamp=1_700_000_000_000 + start + i,
                    )
                    for i in range(n)
                ],
                base_offset=start,
                partition_leader_epoch=0,
            )
        )
    segment = b"".join(batches)
    name = f"{base_offset:020d}.log"
    snap = root / topic_id / str(snapshot_id)
    snap.mkdir(parents=True)
    (snap / name).write_bytes(segment)
    for extra, data in (extra_files or {}).items():
        (snap / extra).write_bytes(data)
    meta = {
        "version": 1,
        "last_offset": base_offset + count - 1,
        "last_term": 0,
        "ancestor_snapshot_id": str(ancestor) if ancestor else "0" * 36,
        "compression": "none",
        "size": len(segment),
        "topic": "orders",
        "topic_id": topic_id,
        "partition": partition,
        "partition_count": 1,
        "base_offset": base_offset,
        "max_timestamp": 1_700_000_000_000 + base_offset + count - 1,
        "created_at": snapshot_id // 1_000_000,
        "segments": [
            {
                "file": name,
                "base_offset": base_offset,
                "last_offset": base_offset + count - 1,
                "size": len(segment),
                "crc32c": crc32c.crc32c(segment),
            }
        ],
    }
    (snap / "meta.json").write_text(json.dumps(meta, indent=2))
    return snap


SNAP_IDS = (
    1_700_000_000_000_000_000,
    1_700_000_001_000_000_000,
    1_700_000_002_000_000_000,
)


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by relative path (dot-entries included)."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }
