"""Offline snapshot commands (verify, restore, prune) and the append gate."""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

import anyio
import pytest
from click.testing import CliRunner

from broker.cli.main import _register_commands, cli
from broker.cli.snapshot import SnapshotCliError, _with_progress
from broker.snapshots.gate import AppendGate
from protocol.record_builder import RecordInput, build_batch
from storage.config import TopicConfig
from storage.fileops import FileOps
from storage.partition_log import PartitionLog
from storage.snapshot import CreateRequest, create_snapshot, inspect_snapshot

TOPIC_ID = "11111111-2222-4333-8444-555555555555"


@pytest.fixture(scope="module", autouse=True)
def _commands() -> None:
    _register_commands()


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def chain(tmp_path: Path, cuts: list[int]) -> list[Path]:
    """Snapshots of one log at each cut; each after the first is incremental."""
    cfg = TopicConfig.from_overrides({"segment.bytes": "500"}, {})
    log = PartitionLog.open(
        str(tmp_path / "src"),
        topic="t",
        partition=0,
        config=cfg,
        fileops=FileOps(),
        clean=True,
    )
    for i in range(max(cuts)):
        log.append(
            build_batch([RecordInput(value=b"v%d" % i, timestamp=1)]), leader_epoch=1
        )
    out: list[Path] = []
    ancestor = None
    for n, cut in enumerate(cuts):
        path, meta = create_snapshot(
            log,
            CreateRequest(
                snapshots_dir=str(tmp_path / "made"),
                dir_name=TOPIC_ID,
                snapshot_id=str(1_700_000_000_000_000_000 + n),
                topic="t",
                topic_id=TOPIC_ID,
                partition=0,
                partition_count=1,
                end_offset=cut,
                ancestor=ancestor,
            ),
        )
        ancestor = meta
        out.append(Path(path))
    log.close()
    return out


def test_verify_reports_valid_and_invalid(tmp_path: Path) -> None:
    """verify prints a summary for a good snapshot and exits 1 for a damaged one."""
    [snap] = chain(tmp_path, [10])
    code, out = run("--format", "json", "snapshot", "verify", str(snap))
    assert code == 0
    assert json.loads(out)["last_offset"] == 9
    seg = max(snap.glob("*.log"))
    seg.write_bytes(seg.read_bytes()[:-1])
    result = CliRunner().invoke(cli, ["snapshot", "verify", str(snap)])
    assert result.exit_code == 1
    assert "size-mismatch" in result.output


def test_restore_copies_a_chain_atomically_and_cuts_at_an_offset(
    tmp_path: Path,
) -> None:
    """restore places the chain under data/snapshots; --to-offset cuts the last one."""
    snaps = chain(tmp_path, [4, 9, 15])
    data = tmp_path / "data"
    code, out = run(
        "--format",
        "json",
        "snapshot",
        "restore",
        "--from",
        str(snaps[0].parent),
        "--data-dir",
        str(data),
        "--to-offset",
        "6",
    )
    assert code == 0, out
    placed = sorted((data / "snapshots" / TOPIC_ID).iterdir())
    assert [p.name for p in placed] == [snaps[0].name, snaps[1].name]
    cut = inspect_snapshot(str(placed[1]), str(placed[1].resolve()), settle_s=0)
    assert (cut.base_offset, cut.last_offset) == (4, 6)
    assert not [
        p for p in (data / "snapshots" / TOPIC_ID).iterdir() if p.name.startswith(".")
    ]


def test_restore_from_a_tar_archive(tmp_path: Path) -> None:
    """A tar archive of a snapshot directory restores like the directory."""
    [snap] = chain(tmp_path, [5])
    archive = tmp_path / "snap.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(snap, arcname=snap.name)
    data = tmp_path / "data"
    code, out = run(
        "snapshot", "restore", "--from", str(archive), "--data-dir", str(data)
    )
    assert code == 0, out
    assert (data / "snapshots" / TOPIC_ID / snap.name / "meta.json").is_file()


def test_prune_keeps_ancestors_of_retained_snapshots(tmp_path: Path) -> None:
    """prune --keep-last 1 keeps the newest incremental and the chain it depends on."""
    data = tmp_path / "data"
    snaps = chain(tmp_path, [3, 6, 9])
    full = chain(tmp_path / "other", [2])  # an unrelated full snapshot, older id
    target = data / "snapshots" / TOPIC_ID
    target.mkdir(parents=True)
    for s in snaps:
        os.rename(s, target / s.name)
    os.rename(full[0], target / "1600000000000000000")
    meta = json.loads((target / "1600000000000000000" / "meta.json").read_text())
    meta["snapshot_id"] = "1600000000000000000"
    (target / "1600000000000000000" / "meta.json").write_text(json.dumps(meta))
    code, out = run(
        "--format",
        "json",
        "snapshot",
        "prune",
        "--data-dir",
        str(data),
        "--keep-last",
        "1",
    )
    assert code == 0, out
    removed = json.loads(out)["removed"]
    assert removed == [str(target / "1600000000000000000")]
    assert sorted(p.name for p in target.iterdir()) == sorted(s.name for s in snaps)


def test_append_gate_queues_requests_and_runs_them_in_order_on_release() -> None:
    """While an ingest holds a partition, requests touching it (and later ones sharing
    a partition with a queued one) queue; on release they run in arrival order."""
    gate = AppendGate()
    order: list[str] = []

    async def main() -> None:
        a, b, c = object(), object(), object()
        async with gate.hold(a):
            assert gate.busy(a)
            assert not gate.busy(b)
            first = gate.enqueue([a, b], lambda: order.append("a+b") or 1)
            assert gate.busy(b)  # b now has a request queued behind the ingest
            second = gate.enqueue([b], lambda: order.append("b"))
            third = gate.enqueue([c], lambda: order.append("c"))
            assert third.done.is_set()
            order.append("ingest")
            assert not first.done.is_set()
            assert not second.done.is_set()
        assert first.done.is_set()
        assert first.result == 1
        assert second.done.is_set()
        assert not gate.active

    anyio.run(main)
    assert order == ["c", "ingest", "a+b", "b"]


def test_progress_wrapper_returns_the_result_or_raises_the_error() -> None:
    """``create``'s progress bar runs the admin call in a worker thread and hands
    back its result, or re-raises its error in the caller (one-line CLI errors)."""
    assert _with_progress("working", lambda: [{"partition": 0}]) == [{"partition": 0}]

    def fail() -> object:
        raise SnapshotCliError("admin API 404: unknown topic")

    with pytest.raises(SnapshotCliError, match="unknown topic"):
        _with_progress("working", fail)
