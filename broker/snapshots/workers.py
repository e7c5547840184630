"""Snapshot validation and staging in worker processes.

Each job runs ``python -m broker.snapshots.worker_main`` (at nice 19, sharing no GIL
with the event loop; started by broker.worker_process, which runs no Python between
fork and exec), sends its input on stdin and reads a one-line JSON reply:
``inspect`` validates a snapshot (every batch's CRC, dense offsets, checksums),
``stage`` writes a plan's batches into segments beside the log.
"""

from __future__ import annotations

import json
from typing import NamedTuple

from broker.worker_process import run_worker_process
from storage.errors import StorageError
from storage.snapshot import Snapshot, snapshot_from_json
from storage.snapshot_meta import SnapshotIncomplete, SnapshotInvalid
from storage.snapshot_stage import StageJob


class StageResult(NamedTuple):
    """What the staging worker reports."""

    written: int  # bytes staged
    nice: int  # the worker's CPU priority


async def run_worker(job: str, data: bytes) -> dict[str, object]:
    """Run broker/snapshots/worker_main.py's ``job`` on ``data``; its reply.

    Raises:
        SnapshotIncomplete, SnapshotInvalid: what the worker found.
        StorageError: the worker failed otherwise, or died (its message says why).
    """
    result = await run_worker_process(
        "broker.snapshots.worker_main", [job], data, what=f"snapshot {job}"
    )
    lines = result.stdout.decode(errors="replace").strip().splitlines()
    try:
        reply = json.loads(lines[-1]) if lines else {}
    except ValueError:
        reply = {}
    if not isinstance(reply, dict):
        reply = {}
    if result.returncode == 0 and "error" not in reply and reply:
        return reply
    kind, reason, detail = reply.get("kind"), reply.get("reason"), reply.get("detail")
    if kind in ("SnapshotIncomplete", "SnapshotInvalid"):
        cls = SnapshotIncomplete if kind == "SnapshotIncomplete" else SnapshotInvalid
        raise cls(str(reason), str(detail))
    error = reply.get("error") or result.stderr.decode(errors="replace").strip()[-500:]
    raise StorageError(
        f"snapshot {job} worker failed ({result.exit_text}): {error or 'no output'}"
    )


async def run_inspect_worker(path: str, root: str, settle_s: float) -> Snapshot:
    """Validate the snapshot at ``path`` in a worker process (inspect_snapshot)."""
    data = json.dumps({"path": path, "root": root, "settle_s": settle_s}).encode()
    reply = await run_worker("inspect", data)
    snap = reply.get("snapshot")
    if not isinstance(snap, dict):
        raise StorageError("snapshot inspect worker: no snapshot in its reply")
    return snapshot_from_json(snap)


async def run_stage_worker(job: StageJob) -> StageResult:
    """Stage ``job`` in a worker process (storage.snapshot_stage.stage_snapshot)."""
    reply = await run_worker("stage", job.to_json())
    written, nice = reply.get("written"), reply.get("nice", 0)
    if not isinstance(written, int) or not isinstance(nice, int):
        raise StorageError("snapshot stage worker: no byte count in its reply")
    return StageResult(written, nice)
