"""snapshot status / show by topic name / human sizes against a real broker, and
restore / prune honouring AILURUS_DATA_DIR with the retention module's rules."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from broker.cli.main import _register_commands, cli
from storage.snapshot_ingest import STATE_DIR, STATE_FILE
from tests._broker import BrokerProcess, start_broker
from tests.cli.conftest import Target, invoke, unique


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    base = tmp_path_factory.mktemp("snapcli")
    b = start_broker(base / "data", "--set", "snapshot.settle.ms=100", log_dir=base)
    try:
        yield b
    finally:
        b.stop(timeout=10)


def _target(b: BrokerProcess) -> Target:
    return Target("ailurus", b.bootstrap, b.admin_url)


def test_status_show_by_name_and_human_sizes(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    """status counts what the watcher is doing and lists the invalid one with its
    reason; show takes a topic name; tables show KiB while JSON keeps bytes."""
    target = _target(broker)
    topic = unique("snapcmd")
    value = b"x" * 3000
    assert invoke(target, "topic", "produce", topic, stdin=value + b"\n").exit_code == 0
    made = invoke(target, "--format", "json", "snapshot", "create", "--topic", topic)
    assert made.exit_code == 0, made.stderr
    [created] = made.json()  # type: ignore[misc]
    assert isinstance(created["size"], int)
    assert created["size"] > 1024

    # a damaged snapshot dropped in for ingest: the watcher marks it invalid
    made_path = Path(created["path"])
    bad = made_path.parent / "1700000000000000000"
    staging = tmp_path / "copy"
    shutil.copytree(made_path, staging)
    seg = staging / "00000000000000000000.log"
    data = bytearray(seg.read_bytes())
    data[-3] ^= 0x55
    seg.write_bytes(bytes(data))
    os.rename(staging, bad)
    deadline = time.monotonic() + 20
    status: dict[str, object] = {}
    while time.monotonic() < deadline:
        res = invoke(target, "--format", "json", "snapshot", "status")
        assert res.exit_code == 0, res.stderr
        status = res.json()  # type: ignore[assignment]
        if status["counts"]["invalid"]:  # type: ignore[index]
            break
        time.sleep(0.2)
    assert status["counts"]["invalid"] == 1  # type: ignore[index]
    assert status["counts"]["created"] >= 1  # type: ignore[index]
    [row] = status["snapshots"]  # type: ignore[misc]
    assert row["path"] == f"{made_path.parent.name}/1700000000000000000"
    assert row["phase"] == "invalid"
    assert row["reason"]
    text = invoke(target, "snapshot", "status").stdout.decode()
    assert "invalid: 1" in text
    assert "1700000000000000000" in text

    shown = invoke(target, "--format", "json", "snapshot", "show", topic)
    assert shown.exit_code == 0, shown.stderr
    assert shown.json()["path"] == created["path"].split("snapshots/")[-1]  # type: ignore[index]
    sid = created["snapshot_id"]
    by_id = invoke(target, "--format", "json", "snapshot", "show", topic, sid)
    assert by_id.json()["snapshot_id"] == sid  # type: ignore[index]
    missing = invoke(target, "snapshot", "show", unique("nosnap"))
    assert missing.exit_code == 1
    assert b"no snapshot of topic" in missing.stderr

    listed = invoke(target, "snapshot", "list").stdout.decode()
    line = next(x for x in listed.splitlines() if topic in x)
    assert "KiB" in line
    raw = invoke(target, "--format", "json", "snapshot", "list").json()
    [mine] = [r for r in raw if r["topic"] == topic]  # type: ignore[union-attr]
    assert mine["size"] == created["size"]
    shutil.rmtree(bad)


def _run(*args: str, env: dict[str, str]) -> tuple[int, str]:
    _register_commands()
    result = CliRunner(env=env).invoke(cli, list(args))
    return result.exit_code, result.output


def test_restore_and_prune_use_ailurus_data_dir(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    """Without --data-dir, restore and prune work in AILURUS_DATA_DIR; prune keeps a
    snapshot still being ingested and a pinned one, and leaves no dot-directories."""
    target = _target(broker)
    topic = unique("prune")
    ids = []
    for i in range(4):
        assert (
            invoke(target, "topic", "produce", topic, stdin=b"v%d\n" % i).exit_code == 0
        )
        res = invoke(target, "--format", "json", "snapshot", "create", "--topic", topic)
        assert res.exit_code == 0, res.stderr
        [made] = res.json()  # type: ignore[misc]
        ids.append(made["snapshot_id"])
    topic_dir = Path(made["path"]).parent
    data = tmp_path / "data"
    env = {"AILURUS_DATA_DIR": str(data)}
    for sid in ids:
        code, out = _run("snapshot", "restore", "--from", str(topic_dir / sid), env=env)
        assert code == 0, out
    restored = data / "snapshots" / topic_dir.name
    assert sorted(p.name for p in restored.iterdir()) == sorted(ids)

    # the broker's ingest state says ids[1] is still being applied
    state = {
        "version": 1,
        "last_snapshot_id": "0",
        "snapshots": {f"{topic_dir.name}/{ids[1]}": {"status": "applying"}},
    }
    path = data / STATE_DIR / STATE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(state))
    code, out = _run(
        "--format", "json", "snapshot", "prune", "--keep-last", "1",
        "--pin", ids[0], env=env,
    )  # fmt: skip
    assert code == 0, out
    removed = json.loads(out)["removed"]
    assert removed == [str(restored / ids[2])]
    assert sorted(os.listdir(restored)) == sorted([ids[0], ids[1], ids[3]])
